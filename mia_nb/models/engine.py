"""The engine: independent jobs (training a model, a GAN) run in parallel through joblib or Ray.

A job is a picklable callable taking no argument (a dataclass holding its config and data, with a
`__call__` that runs it in the worker). Locally the jobs run in joblib's loky worker
processes, one torch thread each, as many workers as cores; on a cluster the same call runs through
Ray's joblib backend (`engine: {backend: ray, address: ...}` in a profile, `pip install -e .[ray]`).
Results come back in submission order; `on_result` sees each one as soon as it and all jobs before it
are done, so a caller can store it at once (a run killed mid-way keeps every model stored so far).
A job's result depends only on its argument: each job runs with one torch thread and seeds itself.

No orphans: each loky worker watches the process that started it and ends within a second of its death,
SIGKILL included (`mia_nb.models.orphans`); what a killed run leaves in shared memory (loky's named semaphores,
joblib's memmapping folders) is removed at the next start (`clean_stale_shared_memory`). A Ray address is
checked by asking the cluster for its id, with a timeout (`check_ray`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import joblib
import torch
from joblib.externals.loky import reusable_executor
from tqdm.auto import tqdm

from mia_nb.config import ConfigError, EngineConfig
from mia_nb.models.orphans import QUIET_START, end_with_parent

THREADS_PER_JOB = 1
HEADLESS = "MIA_NB_HEADLESS"  # set by `python -m mia_nb run` for its kernels: no per-epoch bars, no widgets
RAY_HANDSHAKE_S = 5.0  # how long the Ray check waits for the cluster's answer
RAY_IMPORT_S = 20.0  # and, on top, for the handshake's child process to import Ray's client
RAY_TOKEN_HELP = ("set RAY_AUTH_MODE=token and give this machine the cluster's token: RAY_AUTH_TOKEN=<token> "
                  "(print it on the head node with `ray get-auth-token`), RAY_AUTH_TOKEN_PATH=<file> or the file "
                  "~/.ray/auth_token")
# the warnings filters (PYTHONWARNINGS) that silence loky's and multiprocessing's resource trackers
QUIET_TRACKERS = ("ignore::UserWarning:joblib.externals.loky.backend.resource_tracker",
                  "ignore::UserWarning:multiprocessing.resource_tracker")
# what a loky run leaves in shared memory when it is killed: named semaphores and memmapping folders, each named
# after the process that made it
STALE_SHM = (re.compile(r"sem\.loky-(\d+)-\w+"), re.compile(r"joblib_memmapping_folder_(\d+)_\w+"))


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


def interactive() -> bool:
    """Whether a person runs this process (a notebook opened in JupyterLab, a script), not `python -m mia_nb run`
    (whose kernels get `MIA_NB_HEADLESS`)."""
    return not os.environ.get(HEADLESS)


def runs_here(cfg: EngineConfig, n_jobs: int) -> bool:
    """Whether `run_jobs` runs these jobs in this process, one after the other (joblib with one worker): a job's
    own progress bar then shows where the caller sees it."""
    return cfg.backend != "ray" and n_workers(cfg, n_jobs) == 1


def quiet_resource_trackers() -> None:
    """Keep the resource trackers of this process and its children (kernels, workers) from warning about the
    semaphores and folders of a stopped or killed run: they still remove them, which is all that is left to
    do, but their note would follow the run's one-line message on the console. Set before the trackers start."""
    filters = [w for w in os.environ.get("PYTHONWARNINGS", "").split(",") if w]
    os.environ["PYTHONWARNINGS"] = ",".join(dict.fromkeys(filters + list(QUIET_TRACKERS)))


def _alive(pid: int) -> bool:
    """Whether a process with this id exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def shared_memory_folders() -> list[Path]:
    """Where loky and joblib keep their shared files: /dev/shm and the temporary folder."""
    return [p for p in dict.fromkeys([Path("/dev/shm"), Path(tempfile.gettempdir())]) if p.is_dir()]


def clean_stale_shared_memory(folders: Sequence[Path] | None = None) -> list[Path]:
    """Remove the named semaphores and memmapping folders of loky runs whose process is gone (a killed run's
    leftovers); those of running processes are kept. Returns what was removed."""
    removed = []
    for folder in shared_memory_folders() if folders is None else folders:
        try:
            entries = list(Path(folder).iterdir())
        except OSError:
            continue
        for entry in entries:
            match = next((m for m in (p.fullmatch(entry.name) for p in STALE_SHM) if m), None)
            if match is None or _alive(int(match.group(1))):
                continue
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry)
            except OSError:  # another user's, or removed meanwhile
                continue
    return removed


def _ray_target(address: str) -> tuple[str, bool]:
    """host:port of a Ray address and whether it is a Ray Client address (ray://); a one-line error if malformed."""
    client = address.startswith("ray://")
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or ("://" in address and not client):
        raise ConfigError(f"engine.address: expected host:port or ray://host:port, got {address!r}")
    return hostport, client


# The handshake runs in a child process: Ray's GCS client retries inside C++ and logs to stderr while it does,
# so a child that is killed at the deadline is the only hard timeout, and its log lines stay out of the console.
# It asks the cluster's GCS for its id (host:port), or a Ray Client server for a ping (ray://host:port), through
# Ray's own client code, so Ray's TLS and token settings (RAY_AUTH_MODE, RAY_AUTH_TOKEN, ...) apply as in ray.init.
RAY_HANDSHAKE = """
import json, sys
address, client, timeout = sys.argv[1], sys.argv[2] == "1", float(sys.argv[3])
try:
    if client:
        from ray._private.grpc_utils import init_grpc_channel
        from ray.core.generated import ray_client_pb2, ray_client_pb2_grpc
        request = ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING)
        ray_client_pb2_grpc.RayletDriverStub(init_grpc_channel(address)).ClusterInfo(request, timeout=timeout)
    else:
        from ray._raylet import InnerGcsClient
        InnerGcsClient.standalone(address, None, int(timeout * 1000))
    result = {"status": "OK", "detail": ""}
except ImportError as err:
    result = {"status": "NO_CLIENT", "detail": str(err)}
except Exception as err:
    code = getattr(err, "code", None)
    code = code() if callable(code) else None
    result = {"status": getattr(code, "name", None) or type(err).__name__, "detail": str(err)}
print(json.dumps(result))
"""


def _ray_handshake(hostport: str, client: bool, timeout: float) -> tuple[str, str]:
    """(status, detail) of the handshake with a Ray cluster at host:port; ("TIMEOUT", "") past the deadline."""
    deadline = timeout + RAY_IMPORT_S
    connect = max(1, int(timeout // 3))  # Ray's client waits this long to connect, twice, then `rest` for the id
    rest = max(1.0, timeout - 2 * connect)
    env = {**os.environ, "RAY_gcs_rpc_server_connect_timeout_s": str(connect)}
    try:
        proc = subprocess.run([sys.executable, "-c", RAY_HANDSHAKE, hostport, "1" if client else "0", str(rest)],
                              capture_output=True, text=True, timeout=deadline, env=env)
    except subprocess.TimeoutExpired:
        return "TIMEOUT", f"no answer within {deadline:g} s"
    lines = proc.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
        return str(answer["status"]), str(answer["detail"])
    except (IndexError, ValueError, KeyError, TypeError):
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return "FAILED", last[:200]


def _refused_by_auth(status: str, detail: str) -> bool:
    """Whether a failed handshake was the cluster refusing a missing or wrong token."""
    text = f"{status} {detail}".lower()
    return status in ("UNAUTHENTICATED", "PERMISSION_DENIED", "AuthenticationError") or any(
        word in text for word in ("unauthenticated", "invalidauthtoken", "authentication token", "auth token"))


def check_ray(cfg: EngineConfig, timeout: float = RAY_HANDSHAKE_S) -> None:
    """For `engine.backend: ray`: Ray importable and a Ray cluster answering at the address: a refused connection
    fails at once; otherwise a real handshake, bounded by `timeout` (plus Ray's import). A one-line ConfigError
    if not, saying how to pass Ray's token when the cluster refuses the connection for want of it."""
    if cfg.backend != "ray":
        return
    try:
        import ray  # noqa: F401  (the import is the check; Ray is an optional extra)
    except ImportError:
        raise ConfigError("engine.backend: ray needs the Ray extra: pip install -e '.[ray]'") from None
    address = cfg.address
    if address in (None, "auto", "local"):
        return
    hostport, client = _ray_target(address)
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=min(3.0, timeout)).close()
    except OSError as err:
        raise ConfigError(f"engine.address: cannot reach the Ray cluster at {address!r} "
                          f"({err.strerror or err})") from None
    status, detail = _ray_handshake(hostport, client, timeout)
    if status == "OK":
        return
    detail = re.split(r"(?<=\w)\. ", (detail.strip().splitlines() or [""])[0])[0][:200]  # its first sentence
    if _refused_by_auth(status, detail):
        raise ConfigError(f"engine.address: the Ray cluster at {address!r} refused the connection ({detail}); "
                          f"it uses token authentication: {RAY_TOKEN_HELP}")
    if status == "NO_CLIENT":
        raise ConfigError(f"engine.address: a ray:// address needs Ray Client: pip install 'ray[client]' ({detail})")
    if status in ("TIMEOUT", "DEADLINE_EXCEEDED", "UNAVAILABLE") or "timed out" in detail.lower():
        raise ConfigError(f"engine.address: no Ray cluster answered at {address!r} within {timeout:g} s (something "
                          f"else listens there?); use the address `ray status` prints on the head node")
    raise ConfigError(f"engine.address: the Ray handshake with {address!r} failed ({status}: {detail}); use the "
                      f"address `ray status` prints on the head node")


def _ray_context(cfg: EngineConfig, workers: int) -> Any:
    """joblib's parallel_config for Ray's backend, connecting to (or starting) Ray first."""
    # Ray is an optional extra (engine.backend: ray): imported only when a profile uses it
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
    cfg = cfg or EngineConfig()
    jobs = list(jobs)
    if not jobs:
        return []
    names = list(names) if names is not None else [str(getattr(j, "name", i)) for i, j in enumerate(jobs)]
    workers = n_workers(cfg, len(jobs))
    if cfg.backend == "ray":
        context = _ray_context(cfg, workers)
    else:
        context = joblib.parallel_config(backend="loky", n_jobs=workers, inner_max_num_threads=THREADS_PER_JOB,
                                         initializer=end_with_parent, initargs=(os.getpid(),),
                                         context=QUIET_START)
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


def stop_workers() -> None:
    """Ctrl-C: end loky's workers now, so that their semaphores are released before this process exits."""
    executor = getattr(reusable_executor, "_executor", None)  # the pool this process started, if any (asking
    if executor is None:                                      # get_reusable_executor would start one)
        return
    try:
        executor.shutdown(wait=True, kill_workers=True)
    except Exception:  # noqa: BLE001 - a pool broken by the interrupt has nothing left to stop
        pass


def release_workers(cfg: EngineConfig | None = None) -> None:
    """Stop joblib's idle loky workers now instead of after their 5-minute idle timeout: after a big
    training phase each still holds its copy of the data (about 1 GB on the default profile). Starts none when
    this process has no pool."""
    executor = getattr(reusable_executor, "_executor", None)  # as in stop_workers: asking would start a pool
    if (cfg or EngineConfig()).backend != "joblib" or executor is None:
        return
    executor.shutdown(wait=True)
