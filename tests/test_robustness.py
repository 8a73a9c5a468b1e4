"""Robustness: nothing written outside the outputs root, data checked before work, damaged artifacts
healed or named, Ctrl-C ends in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook

from mia_nb.data import datasets
from mia_nb.data import install
from mia_nb.data import splits
from mia_nb.config import ConfigError, parse_profile
from mia_nb.layout import OutsideRootError, inside
from mia_nb.models.engine import clean_stale_shared_memory
from mia_nb.runner import written
from mia_nb.runner.chains import HealLines
from mia_nb.runner.cli import main
from mia_nb.runner.outputs import OutputsError, check_outside_source
from mia_nb.runner.plan import select
from mia_nb.store import Store

REPO = Path(__file__).resolve().parents[1]


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")} if folder.exists() else set()


# ------------------------------------------------------------------------------ writes stay inside

@pytest.mark.parametrize("escape", ["../x", "../../x", "a/../../x", "/tmp/elsewhere", "."])
def test_inside_refuses_paths_that_leave_the_root(tmp_path, escape):
    root = tmp_path / "outputs"
    root.mkdir()
    if escape == ".":
        assert inside(root, escape) == root.resolve()  # the root itself is inside
        return
    with pytest.raises(OutsideRootError, match="outside"):
        inside(root, escape)


def test_inside_follows_symlinks_out(tmp_path):
    root, away = tmp_path / "outputs", tmp_path / "away"
    root.mkdir()
    away.mkdir()
    (root / "link").symlink_to(away)
    with pytest.raises(OutsideRootError):
        inside(root, "link/model.pt")
    assert inside(root, "smoke/store/model/k.pt") == root.resolve() / "smoke/store/model/k.pt"


def test_store_cannot_be_made_to_write_outside(tmp_path):
    store = Store(tmp_path / "store")
    with pytest.raises(OutsideRootError):
        store.put("../../escaped", {"x": 1}, {"w": 1})
    assert files_under(tmp_path) == set()


@pytest.mark.parametrize("name", ["../../x", "/tmp/mia_nb_escape", "a/b", "''"])
def test_a_profile_name_cannot_escape_the_outputs_root(tmp_path, name, capsys):
    params = tmp_path / "p.yaml"
    params.write_text(f"name: {name}\n")
    out = tmp_path / "work" / "outputs"
    assert main(["run", "--params", str(params), "--outputs", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "name:" in err and err.count("\n") == 1
    assert not (tmp_path / "work").exists() and not (tmp_path / "x").exists()
    assert not Path("/tmp/mia_nb_escape").exists()


# --------------------------------------------------------------------------- data checked first

def fake_fashion(root: Path) -> Path:
    """Just enough of data/FashionMNIST/raw for the data checks: four idx files of two images, sizes as their
    headers say."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in datasets.FASHION_FILES:
        head = b"\x00\x00\x08\x03" + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 if "images" in name \
            else b"\x00\x00\x08\x01" + (2).to_bytes(4, "big")
        (raw / name).write_bytes(head + bytes(2 * 28 * 28 if "images" in name else 2))
    return raw


def test_mistyped_data_root_is_refused_and_nothing_written(tmp_path):
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    p = parse_profile({"data": {"root": "dtaa"}})
    with pytest.raises(ConfigError, match=r"data.root: folder .*dtaa does not exist.*expected .*repo/data"):
        datasets.check_data_available(p, repo)
    with pytest.raises(ConfigError, match=r"--root: folder .*typo does not exist.*expected .*repo/data"):
        install.install_fashion_mnist(repo / "typo", repo_root=repo, debian_dir=tmp_path / "no-debian", download=False)
    assert files_under(repo) == {repo / "data"}


def test_installer_writes_only_the_raw_folder_of_a_checked_root(tmp_path):
    import gzip
    debian = tmp_path / "debian"
    debian.mkdir()
    for name in datasets.FASHION_FILES:
        with gzip.open(debian / f"{name}.gz", "wb") as f:
            f.write(b"idx")
    repo = tmp_path / "repo"
    repo.mkdir()
    raw = install.install_fashion_mnist(repo / "data", repo_root=repo, debian_dir=debian, download=False)
    assert raw == repo / "data" / "FashionMNIST" / "raw"  # the default folder may be created
    assert {p.relative_to(repo).as_posix() for p in files_under(repo) if p.is_file()} == {
        f"data/FashionMNIST/raw/{n}" for n in datasets.FASHION_FILES}


def test_data_root_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(ConfigError, match="data.root: .* is a file") as info:
        parse_profile({"data": {"root": str(tmp_path / "data")}})
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="is a file"):
        install.check_data_root(tmp_path / "data", tmp_path)


@pytest.mark.parametrize("extra, index", [(["svhn"], 0), (["stl10", "cifar100"], 0), (["stanford_dogs"], 0)])
def test_missing_extra_dataset_is_named_by_its_entry(tmp_path, extra, index):
    fake_fashion(tmp_path / "data")
    p = parse_profile({"data": {"root": str(tmp_path / "data")}, "ood": {"extra_datasets": extra}})
    with pytest.raises(ConfigError, match=rf"ood.extra_datasets\[{index}\]: {extra[index]} not found") as info:
        datasets.check_data_available(p, tmp_path)
    assert "\n" not in str(info.value)


def test_missing_afhq_and_fake_folders_are_named(tmp_path):
    fake_fashion(tmp_path / "data")
    base = {"data": {"root": str(tmp_path / "data")}}
    p = parse_profile({**base, "ood": {"extra_datasets": ["afhq_dog"], "afhq_root": str(tmp_path / "afhq")}})
    with pytest.raises(ConfigError, match=r"ood.extra_datasets\[0\]: afhq_dog not found.*afhq/dog"):
        datasets.check_data_available(p, tmp_path)
    p = parse_profile({**base, "ood": {"fake_folder": str(tmp_path / "fakes")}})
    with pytest.raises(ConfigError, match="ood.fake_folder: folder .*fakes not found"):
        datasets.check_data_available(p, tmp_path)


def test_reversed_only_range_says_so():
    nbs = [Path(f"{i:02d}_x.ipynb") for i in range(1, 9)]
    with pytest.raises(ConfigError, match=r"--only: the range '05-03' is reversed.*03-05"):
        select(nbs, "05-03")


# -------------------------------------------------------------------------------------- healing

def test_truncated_store_file_is_moved_aside_and_recomputed(tmp_path, capsys):
    store = Store(tmp_path / "store")
    cfg = {"model": "simple_cnn", "epochs": 2}
    path = store.put("model", cfg, {"state_dict": {"w": torch.arange(1000.0)}})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a disk that filled up, a copy cut short
    assert store.get("model", cfg) is None
    aside = path.with_name(path.name + ".corrupt")
    assert aside.is_file() and not path.exists()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "recomputing" in err
    calls = []
    again = store.get_or_make("model", cfg, lambda: calls.append(1) or {"state_dict": {"w": torch.ones(3)}})
    assert calls == [1] and torch.equal(again["state_dict"]["w"], torch.ones(3))
    assert torch.equal(store.get("model", cfg)["state_dict"]["w"], torch.ones(3))  # healed: loads again
    assert aside.is_file()  # kept for inspection, never deleted


def test_a_file_that_is_not_a_store_record_is_healed_too(tmp_path, capsys):
    store = Store(tmp_path)
    path = store.path("logits", {"a": 1})
    path.parent.mkdir(parents=True)
    torch.save([1, 2, 3], path)
    assert store.get("logits", {"a": 1}) is None and path.with_name(path.name + ".corrupt").is_file()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "pickled", "overlap"])
def test_damaged_splits_name_notebook_01_and_never_unpickle(tmp_path, damage, monkeypatch):
    pool = datasets.Pool(torch.zeros(10, 1, 4, 4, dtype=torch.uint8), torch.arange(10) % 2,
                     datasets.DATASET_INFO["fashion_mnist"], {"dataset": "x"})
    path = splits.save_splits(tmp_path, {"target_train": np.arange(5), "target_heldout": np.arange(5, 10)}, pool, 0)
    if damage == "garbage":
        path.write_bytes(b"\x00garbage" * 50)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "pickled":
        with open(path, "wb") as f:
            np.savez(f, target_train=np.array([object()], dtype=object))
    else:
        with open(path, "wb") as f:
            np.savez(f, a=np.arange(5), b=np.arange(3, 8))
    real_load = np.load

    def load(*args, **kwargs):
        assert kwargs.get("allow_pickle") is False, "splits must never be loaded with pickle"
        return real_load(*args, **kwargs)
    monkeypatch.setattr(np, "load", load)
    with pytest.raises(splits.DamagedFile, match="damaged.*rerun notebook 01") as info:
        splits.load_splits(tmp_path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert "allow_pickle" not in str(info.value)


# ----------------------------------------------------------------------------------------- Ctrl-C

@pytest.mark.slow  # a headless run in a subprocess, interrupted
def test_ctrl_c_ends_the_run_in_one_line(tmp_path):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    slow = "import pathlib, time\npathlib.Path(outputs_root, 'started').touch()\nfor _ in range(600):\n    time.sleep(0.1)"
    for name, src in (("01_quick.ipynb", "x = 1"), ("02_slow.ipynb", slow), ("03_after.ipynb", "y = 2")):
        nb = new_notebook(cells=[new_code_cell("params_file = ''\noutputs_root = ''\nseed = -1",
                                               metadata={"tags": ["parameters"]}), new_code_cell(src)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["mia_nb"] = {"stage": "data" if name.startswith("01") else "per_seed"}  # the runner's role
        nbformat.write(nb, nbdir / name)
    fake_fashion(tmp_path / "data")
    params = tmp_path / "tiny.yaml"
    params.write_text(f"name: tiny\ndevice: cpu\ndata:\n  root: {tmp_path / 'data'}\n")
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mia_nb", "run", "--params", str(params), "--outputs", str(out), "--notebooks", str(nbdir)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal, even under nohup
    try:
        deadline = time.time() + 120
        while not (out / "started").exists():
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() is not None else "slow"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert "02_slow" in last and "kept" in last, last
    assert f"python -m mia_nb run --params {params} --outputs {out} --only 02-03" in last
    assert "Traceback" not in stderr and "Traceback" not in stdout
    assert (out / "tiny" / "notebooks" / "01_quick.ipynb").is_file()  # what finished is kept
    assert not (out / "tiny" / "notebooks" / "03_after.ipynb").exists()


# ------------------------------------------------------------------------------- issue 22: unit level

def test_a_fashion_file_cut_short_or_empty_is_named_with_the_command_that_reinstalls_it(tmp_path):
    raw = fake_fashion(tmp_path / "data")
    (raw / "train-labels-idx1-ubyte").write_bytes((raw / "train-labels-idx1-ubyte").read_bytes()[:9])
    with pytest.raises(ConfigError) as info:
        install.ensure_fashion_mnist(tmp_path / "data", debian_dir=tmp_path / "no-debian")
    msg = str(info.value)
    assert "train-labels-idx1-ubyte is damaged (9 bytes, its header (2) says 10" in msg and "\n" not in msg
    assert msg.endswith(f"python -m mia_nb data --root {tmp_path / 'data'}")
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"")
    assert "0 bytes, too short" in install.damaged_files(raw)[raw / "t10k-images-idx3-ubyte"]


def test_the_installer_fills_only_an_empty_folder_or_one_that_holds_the_dataset(tmp_path):
    busy = tmp_path / "etc"
    busy.mkdir()
    (busy / "passwd").write_text("x")
    with pytest.raises(ConfigError, match=r"holds other files \(passwd\) and no FashionMNIST/ folder"):
        install.check_install_target(busy, tmp_path / "repo")
    (tmp_path / "empty").mkdir()
    install.check_install_target(tmp_path / "empty", tmp_path / "repo")
    (busy / "FashionMNIST").mkdir()
    install.check_install_target(busy, tmp_path / "repo")


def test_has_moves_a_damaged_artifact_aside_so_it_is_recomputed_at_once(tmp_path, capsys):
    store = Store(tmp_path)
    path = store.put("model", {"a": 1}, {"w": torch.ones(100)})
    path.write_bytes(path.read_bytes()[:50])
    assert not store.has("model", {"a": 1})  # the existence check no longer passes a file that fails to load
    assert path.with_name(path.name + ".corrupt").is_file() and "moved aside to" in capsys.readouterr().err


def test_stale_shared_memory_of_dead_runs_is_removed_and_that_of_live_ones_kept(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    me = os.getpid()
    for pid in (dead.pid, me):
        (tmp_path / f"sem.loky-{pid}-abc_12").write_bytes(b"x")
        (tmp_path / f"joblib_memmapping_folder_{pid}_ab12_cd34").mkdir()
    (tmp_path / f"sem.other-{dead.pid}").write_bytes(b"x")
    removed = clean_stale_shared_memory([tmp_path])
    assert sorted(p.name for p in removed) == sorted([f"sem.loky-{dead.pid}-abc_12",
                                                      f"joblib_memmapping_folder_{dead.pid}_ab12_cd34"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"sem.loky-{me}-abc_12", f"sem.other-{dead.pid}",
                                                                 f"joblib_memmapping_folder_{me}_ab12_cd34"])


@pytest.mark.parametrize("where, refused", [("notebooks", True), (".", True), ("params/x", True),
                                            ("outputs", False), ("outputs/a/b", False), ("../elsewhere", False)])
def test_outputs_inside_the_source_tree_are_refused(tmp_path, where, refused):
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    if refused:
        with pytest.raises(OutputsError, match=r"^--outputs: .* lies inside the source tree"):
            check_outside_source(repo / where, repo)
    else:
        check_outside_source(repo / where, repo)


def test_what_a_notebook_wrote_is_recorded_and_damage_found(tmp_path):
    base = tmp_path / "run"
    (base / "results").mkdir(parents=True)
    t0 = time.time()
    (base / "results" / "attacks.csv").write_text("a,b\n1,2\n")
    assert written.record(base, base, 0, "04_attacks.ipynb", t0) == [base / "results" / "attacks.csv"]
    t1 = time.time()
    (base / "results" / "attacks.csv").write_text("a,b\n1,2\n3,4\n")
    written.record(base, base, 0, "06_calibration.ipynb", t1)  # upserted rows: one entry, both writers
    assert written.check(base, [base]) == []
    (base / "results" / "attacks.csv").write_text("a,b\n1,9\n3,4\n")
    [damage] = written.check(base, [base])
    assert damage.by == ("04_attacks.ipynb", "06_calibration.ipynb") and "sha256 differs" in damage.reason
    (base / "results" / "attacks.csv").unlink()
    assert written.check(base, [base])[0].reason == "is missing"


def test_heal_lines_from_a_kernel_reach_the_console(capsys):
    sink = HealLines("seed 0 · 04_attacks")
    sink.write("store: /x/model/k.pt could not be loaded (EOFError); moved aside")
    sink.write(" to k.pt.corrupt, recomputing\nsome other warning\n")
    err = capsys.readouterr().err
    assert err == "    seed 0 · 04_attacks: store: /x/model/k.pt could not be loaded (EOFError); moved aside to " \
                  "k.pt.corrupt, recomputing\n"
