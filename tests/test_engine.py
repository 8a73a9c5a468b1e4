"""The engine: parallel jobs through joblib (and Ray), in order, deterministic, failures named."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from mia_nb.data import datasets as data_mod
from mia_nb.config import ConfigError, EngineConfig, TrainConfig, parse_profile
from mia_nb.models.engine import JobFailed, check_ray, n_workers, run_jobs
from mia_nb.models.jobs import TrainJob, job_seed

INFO = data_mod.DatasetInfo("tiny", 1, 28, 10, (0.5,), (0.5,), tuple("abcdefghij"))


@dataclass
class Sleep:
    """A job that sleeps (later jobs finish first) and returns its index."""

    name: str
    seconds: float
    value: int

    def __call__(self) -> int:
        time.sleep(self.seconds)
        return self.value


@dataclass
class Boom:
    name: str

    def __call__(self) -> None:
        raise ValueError("bad batch size")


def tiny_job(seed: int, name: str = "m") -> TrainJob:
    """A two-epoch SimpleCNN job on 96 random images."""
    g = torch.Generator().manual_seed(123)
    x = torch.randint(0, 256, (96, 1, 28, 28), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (96,), generator=g)
    train = TrainConfig(epochs=2, batch_size=32)
    config = {"arch": "simple_cnn", "pretrained": False, "augment": False, "seed": seed, "role": "target"}
    return TrainJob(name, config, INFO, train, x, y, x[:16], y[:16], {"target_train": x[:8]})


@pytest.mark.slow  # starts worker processes (each imports torch)
def test_results_come_back_in_submission_order():
    jobs = [Sleep("slow", 0.6, 0), Sleep("fast", 0.0, 1), Sleep("mid", 0.2, 2)]
    seen = []
    out = run_jobs(jobs, EngineConfig(workers=2), progress=False, on_result=lambda i, r: seen.append((i, r)))
    assert out == [0, 1, 2]
    assert seen == [(0, 0), (1, 1), (2, 2)]


@pytest.mark.slow  # starts worker processes
def test_same_jobs_with_one_and_two_workers_give_identical_weights():
    jobs = [tiny_job(1, "a"), tiny_job(2, "b"), tiny_job(1, "a again")]
    one = run_jobs(jobs, EngineConfig(workers=1), progress=False)
    two = run_jobs(jobs, EngineConfig(workers=2), progress=False)
    for a, b in zip(one, two):
        assert a["state_dict"].keys() == b["state_dict"].keys()
        for k in a["state_dict"]:
            assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
        assert a["history"]["train_loss"] == b["history"]["train_loss"]
    # the result depends on the config's seed: same seed, same weights; another seed, other weights
    assert all(torch.equal(one[0]["state_dict"][k], one[2]["state_dict"][k]) for k in one[0]["state_dict"])
    assert any(not torch.equal(one[0]["state_dict"][k], one[1]["state_dict"][k]) for k in one[0]["state_dict"])


@pytest.mark.slow  # starts worker processes
def test_a_failed_job_is_named_and_earlier_results_are_kept():
    kept = []
    with pytest.raises(JobFailed, match=r"job 'second' failed: ValueError: bad batch size"):
        run_jobs([Sleep("first", 0.0, 7), Boom("second"), Sleep("third", 0.0, 9)], EngineConfig(workers=2),
                 progress=False, on_result=lambda i, r: kept.append(r))
    assert kept == [7]


def test_job_seeds_differ_per_role_and_variant():
    seeds = {job_seed(42, r, v) for r in ("target", "shadow") for v in ("vanilla", "ls_0.1")}
    assert len(seeds) == 4
    assert job_seed(42, "target", "vanilla") == job_seed(42, "target", "vanilla")
    assert job_seed(42, "target", "vanilla") != job_seed(43, "target", "vanilla")


def test_worker_count():
    assert n_workers(EngineConfig(workers=4), 2) == 2
    assert n_workers(EngineConfig(workers=1), 10) == 1
    assert n_workers(EngineConfig(), 100) >= 1


@pytest.mark.parametrize("engine, key", [
    ({"backend": "dask"}, "engine.backend"),
    ({"workers": 0}, "engine.workers"),
    ({"workers": -2}, "engine.workers"),
    ({"backend": "joblib", "address": "10.0.0.1:6379"}, "engine.address"),
])
def test_bad_engine_settings_fail_at_load(engine, key):
    with pytest.raises(ConfigError, match=key):
        parse_profile({"engine": engine})


def test_unreachable_ray_address_is_one_line():
    # a port on this machine that nothing listens on
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConfigError, match="engine.address: cannot reach") as err:
        check_ray(EngineConfig(backend="ray", address=f"127.0.0.1:{port}"))
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="engine.address: expected host:port"):
        check_ray(EngineConfig(backend="ray", address="nowhere"))


def test_missing_ray_extra_is_one_line(monkeypatch):
    import builtins
    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ConfigError, match=r"engine.backend: ray needs the Ray extra"):
        check_ray(EngineConfig(backend="ray"))


@pytest.mark.slow  # starts a local Ray instance
def test_the_same_call_runs_on_a_local_ray_instance():
    import ray  # the test extra installs it, so CI runs this test
    try:
        jobs = [tiny_job(1, "a"), tiny_job(2, "b")]
        on_ray = run_jobs(jobs, EngineConfig(backend="ray", workers=2), progress=False)
        local = run_jobs(jobs, EngineConfig(workers=1), progress=False)
        for a, b in zip(on_ray, local):
            for k in a["state_dict"]:
                assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    finally:
        ray.shutdown()


@pytest.mark.slow  # runs notebook 01 of a 64-model profile
def test_lira64_profile_validates_and_starts(tmp_path):
    """The 64-reference-model cluster profile: loads, passes the Ray checks, and runs its first notebook here."""
    import subprocess
    import sys
    from pathlib import Path

    from mia_nb.config import load_profile
    repo = Path(__file__).resolve().parents[1]
    p = load_profile(repo / "params" / "lira64.yaml")
    assert p.engine.backend == "ray" and p.reference_models.k == 64
    check_ray(p.engine)
    proc = subprocess.run([sys.executable, "-m", "mia_nb", "run", "--params", str(repo / "params" / "lira64.yaml"),
                           "--only", "01", "--outputs", str(tmp_path)], cwd=repo, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "lira64" / "seed_42" / "data" / "splits.npz").is_file()


def _pid() -> int:
    import os
    return os.getpid()


@pytest.mark.slow  # starts worker processes
def test_idle_workers_are_released_after_a_training_phase():
    """release_workers stops loky's workers at once (they would otherwise hold their memory for minutes)."""
    import os
    from mia_nb.models.engine import release_workers
    pids = set(run_jobs([_pid, _pid], EngineConfig(workers=2), progress=False))
    assert os.getpid() not in pids
    release_workers(EngineConfig())
    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False
    deadline = time.time() + 10
    while any(running(p) for p in pids) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(running(p) for p in pids)


@dataclass
class SigintState:
    """A job that reports how its worker treats SIGINT: its handler and whether it is blocked."""

    name: str = "sigint-state"

    def __call__(self) -> tuple[bool, bool]:
        import signal
        return signal.getsignal(signal.SIGINT) == signal.SIG_IGN, signal.SIGINT in signal.pthread_sigmask(
            signal.SIG_BLOCK, [])


def test_a_worker_ignores_ctrl_c_once_started():
    """The runner stops its workers on Ctrl-C; a worker itself ignores it (and does not leave it blocked)."""
    assert run_jobs([SigintState(), SigintState()], EngineConfig(workers=2), progress=False) == [(True, False)] * 2


@pytest.mark.parametrize("quiet", [True, False])
def test_ctrl_c_while_a_worker_imports_does_not_reach_it(quiet):
    """A SIGINT sent while a worker process still starts (the terminal's Ctrl-C reaches the whole group) is held
    back until its initializer ignores it; a plain loky process dies of it. The plain case shows the test can
    fail."""
    import os
    import signal

    from joblib.externals.loky.backend.process import LokyProcess

    from mia_nb.models.orphans import _QuietStartProcess
    cls = _QuietStartProcess if quiet else LokyProcess
    proc = cls(target=time.sleep, args=(1.0,))
    proc.start()
    for _ in range(20):  # during the exec and the imports
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(0.01)
    proc.join(timeout=30)
    assert (proc.exitcode == 0) is quiet, proc.exitcode
