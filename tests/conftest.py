"""Shared fixtures (a tiny study, the smoke run), a one-thread torch, and the test tiers.

Tiers: `pytest -m "not slow"` is the edit-test loop (under 2 minutes on 2 cores); plain `pytest` (`make test`)
runs everything. A test that uses the smoke run is a `notebooks` test, and every `notebooks` test is `slow`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m selection sees the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the smoke run's tests `notebooks`, and every `notebooks` test `slow`."""
    for item in items:
        if "smoke_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.notebooks)
        if item.get_closest_marker("notebooks"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def write_profile(tmp_path):
    """Write a YAML profile (text) to a temp file and return its path."""
    def write(text: str, name: str = "p.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path
    return write


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """Run every notebook on the smoke profile once (into a temp outputs folder)."""
    out = tmp_path_factory.mktemp("outputs")
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-m", "mia_nb", "run", "--params", str(REPO / "params" / "smoke.yaml"),
                           "--outputs", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / "smoke"


TINY_PROFILE = {
    "name": "tiny", "seed": 3, "device": "cpu",
    "splits": {"target_train": 64, "target_heldout": 64, "shadow_train": 64, "shadow_heldout": 64,
               "calibration": 40, "generator": 0},
    "train": {"epochs": 1, "batch_size": 32},
    "attacks": {"n_boot": 1000, "salem_max_epochs": 5},
    "ood": {"max_pool_size": 32, "corruption_severities": [1], "gan": {"n_images": 0, "supply_sizes": []}},
    "engine": {"workers": 1},
}


@pytest.fixture
def tiny_profile_file(tmp_path) -> Path:
    """TINY_PROFILE written as a YAML profile (tmp_path/tiny.yaml), for code that loads a profile from disk."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_PROFILE, sort_keys=False))
    return path


@pytest.fixture
def tiny_study(tmp_path):
    """A real Study on Fashion-MNIST (from data/) with tiny splits drawn and saved; nothing trained yet."""
    from mia_nb.config import parse_profile
    from mia_nb.study import Study
    study = Study(parse_profile(TINY_PROFILE), outputs_root=tmp_path, seed=3)
    study.make_splits()
    return study


def loky_workers(pids) -> list[int]:
    """The processes among `pids` that are joblib's loky workers (their command line says so; Linux /proc)."""
    found = []
    for pid in pids:
        try:
            if b"popen_loky" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found
