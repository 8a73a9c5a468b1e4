"""The engine: independent jobs (training a model, a GAN) run in parallel through joblib or Ray.

A job is a picklable callable taking no argument (a dataclass holding its config and data, with a
`__call__` that runs it in the worker). Locally the jobs run in joblib's loky worker
processes, one torch thread each, as many workers as cores; on a cluster the same call runs through
Ray's joblib backend (`engine: {backend: ray, address: ...}` in a profile, `pip install -e .[ray]`).
Results come back in submission order; `on_result` sees each one as soon as it and all jobs before it
are done, so a caller can store it at once (a run killed mid-way keeps every model stored so far).
A job's result depends only on its argument: each job runs with one torch thread and seeds itself.
"""

from __future__ import annotations

import os
import socket
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from .config import ConfigError, EngineConfig

THREADS_PER_JOB = 1


class JobFailed(RuntimeError):
    """A job raised; the message names the job (its description) and the error, in one line."""


@dataclass(frozen=True)
class Failure:
    """What a failed job sends back instead of raising through the worker pool."""

    error: str
    trace: str


def default_workers() -> int:
    """One worker per CPU core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def n_workers(cfg: EngineConfig, n_jobs: int) -> int:
    """Workers to start: the profile's `engine.workers`, else one per core; never more than jobs."""
    wanted = cfg.workers if cfg.workers is not None else default_workers()
    return max(1, min(wanted, n_jobs))


def _call(job: Callable[[], Any]) -> Any:
    """Run one job with one torch thread; return its result or a Failure (never raise into the pool)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS_PER_JOB)
    try:
        return job()
    except Exception as err:  # reported by the parent with the job's description
        return Failure(f"{type(err).__name__}: {err}", traceback.format_exc())
    finally:
        torch.set_num_threads(threads)


def check_ray(cfg: EngineConfig) -> None:
    """For `engine.backend: ray`: Ray importable and the address reachable; a one-line ConfigError if not."""
    if cfg.backend != "ray":
        return
    try:
        import ray  # noqa: F401  (the import is the check)
    except ImportError:
        raise ConfigError("engine.backend: ray needs the Ray extra: pip install -e '.[ray]'") from None
    address = cfg.address
    if address in (None, "auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"engine.address: expected host:port or ray://host:port, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as err:
        raise ConfigError(f"engine.address: cannot reach the Ray cluster at {address!r} ({err.strerror or err})") from None


def _ray_context(cfg: EngineConfig, workers: int) -> Any:
    """joblib's parallel_config for Ray's backend, connecting to (or starting) Ray first."""
    import joblib
    import ray
    from ray.util.joblib import register_ray

    check_ray(cfg)
    if not ray.is_initialized():
        if cfg.address in (None, "local"):
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        else:
            ray.init(address=cfg.address, log_to_driver=False)
    register_ray()
    return joblib.parallel_config(backend="ray", n_jobs=workers)


def _stream(jobs: list[Callable[[], Any]], workers: int, backend: str) -> Iterator[Any]:
    """Results in submission order as they become available.

    loky streams them (joblib's generator output); Ray's joblib backend returns lists only, so there
    the jobs go in rounds of `workers` jobs, each round's results handed on when it ends.
    """
    import joblib

    if backend != "ray":
        yield from joblib.Parallel(return_as="generator")(joblib.delayed(_call)(j) for j in jobs)
        return
    for start in range(0, len(jobs), workers):
        yield from joblib.Parallel()(joblib.delayed(_call)(j) for j in jobs[start:start + workers])


def run_jobs(jobs: Sequence[Callable[[], Any]], cfg: EngineConfig | None = None, *,
             names: Sequence[str] | None = None, desc: str = "models",
             on_result: Callable[[int, Any], None] | None = None, progress: bool = True) -> list[Any]:
    """Run every job (`job()`) in parallel; results in submission order.

    `names` describe the jobs in errors (default: the job's `name` attribute or its index).
    `on_result(i, result)` is called for each result in order, as soon as it is available.
    A failed job raises JobFailed naming it, after the jobs before it were handed to `on_result`.
    """
    import joblib

    cfg = cfg or EngineConfig()
    jobs = list(jobs)
    if not jobs:
        return []
    names = list(names) if names is not None else [str(getattr(j, "name", i)) for i, j in enumerate(jobs)]
    workers = n_workers(cfg, len(jobs))
    if cfg.backend == "ray":
        context = _ray_context(cfg, workers)
    else:
        context = joblib.parallel_config(backend="loky", n_jobs=workers, inner_max_num_threads=THREADS_PER_JOB)
    results: list[Any] = []
    bar = tqdm(total=len(jobs), desc=f"{desc} ({workers} worker{'s' if workers > 1 else ''})", unit="job",
               disable=not progress)
    try:
        with context, warnings.catch_warnings():
            # loky replaces a worker whose memory grew (torch's allocator caches): harmless, but it would
            # print a warning per replacement into the progress bar
            warnings.filterwarnings("ignore", message="A worker stopped while some jobs were given")
            for i, result in enumerate(_stream(jobs, workers, cfg.backend)):
                if isinstance(result, Failure):
                    raise JobFailed(f"job {names[i]!r} failed: {result.error}")
                if on_result is not None:
                    on_result(i, result)
                results.append(result)
                bar.update(1)
    finally:
        bar.close()
    return results


def release_workers(cfg: EngineConfig | None = None) -> None:
    """Stop joblib's idle loky workers now instead of after their 5-minute idle timeout: after a big
    training phase each still holds its copy of the data (about 1 GB on the default profile)."""
    if (cfg or EngineConfig()).backend != "joblib":
        return
    from joblib.externals.loky import get_reusable_executor
    get_reusable_executor().shutdown(wait=True)
