"""Running notebooks: one kernel per notebook through papermill, chains of them on threads side by side,
the progress lines, and Ctrl-C passed on to the kernels (found through Linux /proc)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable

import papermill as pm

from mia_nb.config import Profile
from mia_nb.models.engine import default_workers
from mia_nb.runner.plan import Job

# the kernel logs only critical messages: no "running over TCP without encryption" warning per notebook and
# no "KeyboardInterrupt caught" line when it is shut down (cell errors still reach the runner)
KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL"]
STOP = threading.Event()  # set by the Ctrl-C handler (`on_sigint`) once it has interrupted the kernels
HEAL_MARK = "moved aside to"  # every heal line says it (`mia_nb.store.Store.quarantine`, `mia_nb.tables`)


class NotebookFailed(RuntimeError):
    """A notebook raised; names the notebook, the cell and the kept executed copy."""

    def __init__(self, name: str, cell: int | None, error: str, copy: Path):
        self.name, self.cell, self.error, self.copy = name, cell, error, copy
        super().__init__(f"{name} failed in cell [{cell}]: {error} (executed copy: {copy})")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a notebook; names it and what a rerun must cover (`only`, None = the same selection)."""

    def __init__(self, name: str, seed: int, base: Path, only: str | None):
        self.name, self.seed, self.base, self.only = name, seed, base, only
        super().__init__(name)


class HealLines:
    """A kernel's stderr as papermill streams it: the lines that say something was healed (a damaged file
    "moved aside to" its `.corrupt` name and recomputed: the store, the tables) go on to the console, prefixed
    with the notebook; everything else stays in the executed copy only."""

    def __init__(self, who: str):
        self.who, self.pending = who, ""

    def write(self, text: str) -> int:
        """Take a piece of the stream; pass on each completed heal line."""
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if HEAL_MARK in line:
                print(f"    {self.who}: {line.strip()}", file=sys.stderr, flush=True)
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered but an unfinished line."""


def execute(notebook: Path, out: Path, params: dict, cwd: Path, who: str = "") -> None:
    """Run one notebook with papermill, writing the executed copy to `out`; its heal lines reach the console."""
    out.parent.mkdir(parents=True, exist_ok=True)
    heal = HealLines(f"{who} · {notebook.stem}" if who else notebook.stem)
    pm.execute_notebook(str(notebook), str(out), parameters=params, cwd=str(cwd), kernel_name="python3",
                        progress_bar=False, log_output=False, extra_arguments=KERNEL_ARGS, stderr_file=heal)


def side_by_side(profile: Profile, n_chains: int) -> int:
    """How many seeds' notebook chains run at once: one per core (never more than chains); 1 when the
    profile's joblib engine asks for a single worker."""
    e = profile.engine
    cap = e.workers if e.backend == "joblib" and e.workers is not None else default_workers()
    return max(1, min(cap, n_chains))


class KernelThreads:
    """Kernels started inside get `threads` threads (torch via OMP_NUM_THREADS, numpy's BLAS), so
    side-by-side kernels share the cores instead of oversubscribing them; the environment is restored
    on exit."""

    KEYS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

    def __init__(self, threads: int):
        self.threads, self.saved = threads, {k: os.environ.get(k) for k in self.KEYS}

    def __enter__(self) -> None:
        for k, v in self.saved.items():  # a smaller setting of the user's is kept
            os.environ[k] = str(min(self.threads, int(v)) if v and v.isdigit() and int(v) > 0 else self.threads)

    def __exit__(self, *exc: object) -> None:
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def label(seed: int) -> str:
    """How a job's seed reads in the runner's lines (-1: the summary notebooks)."""
    return f"seed {seed}" if seed >= 0 else "all seeds"


class Progress:
    """Numbered start / done lines shared by the chains (one lock, whole lines)."""

    def __init__(self, total: int, profile: str, quiet: bool):
        self.total, self.profile, self.quiet = total, profile, quiet
        self.started, self.lock = 0, threading.Lock()
        self.finished: list[Job] = []

    def start(self, nb: Path, seed: int) -> None:
        """A notebook starts."""
        with self.lock:
            self.started += 1
            if not self.quiet:
                print(f"[{self.started}/{self.total}] {self.profile} · {label(seed)} · {nb.stem} …", flush=True)

    def skip(self, job: Job) -> None:
        """A notebook is up to date and skipped."""
        with self.lock:
            self.started += 1
            self.finished.append(job)
            if not self.quiet:
                print(f"[{self.started}/{self.total}] {self.profile} · {label(job[1])} · {job[0].stem}: up to date "
                      f"(unchanged notebook, profile and code; --force reruns it)", flush=True)

    def done(self, job: Job, out: Path, seconds: float, named: bool) -> None:
        """A notebook ran through."""
        with self.lock:
            self.finished.append(job)
            if not self.quiet:
                who = f"{label(job[1])} · {job[0].stem} " if named else ""
                print(f"    {who}done in {seconds:.0f} s → {out}", flush=True)


def run_chains(chains: list[list[Job]], parallel: int, run_one: Callable[[Job, bool], None]) -> None:
    """Run each chain's notebooks in order, up to `parallel` chains at once, and wait for all of them.

    Each notebook runs in its own kernel process; a chain's thread only waits on it, so threads suffice
    (a ThreadPoolExecutor: unlike joblib's threading backend it can wait for the other chains after one
    fails). After a failure the other chains finish the notebook they are in and stop; then the first
    error is raised. Ctrl-C while waiting: every chain stops after its current cell (the kernels are
    interrupted), and the interrupt is raised once they have."""
    chains = [c for c in chains if c]
    if not chains:
        return
    parallel = max(1, min(parallel, len(chains)))
    abort = threading.Event()
    errors: list[BaseException] = []

    def chain(jobs: list[Job]) -> None:
        for job in jobs:
            if abort.is_set() or STOP.is_set():
                return
            try:
                run_one(job, parallel > 1)
            except BaseException as err:  # noqa: BLE001 - kept and raised by the caller, after every chain
                errors.append(err)
                abort.set()
                return

    if parallel == 1:
        for c in chains:
            chain(c)
    else:
        with KernelThreads(max(1, default_workers() // parallel)), ThreadPoolExecutor(parallel) as pool:
            futures = [pool.submit(chain, c) for c in chains]
            try:
                wait(futures)
            except BaseException:  # Ctrl-C in this thread (no kernel to pass it to, or a second one)
                abort.set()
                STOP.set()
                interrupt_kernels()
                wait(futures)
                raise
    if errors:
        raise errors[0]


def _kernel_pids() -> list[int]:
    """Process ids of the Jupyter kernels this process started (Linux /proc; [] elsewhere)."""
    me, pids = os.getpid(), []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == me and b"ipykernel" in (d / "cmdline").read_bytes():
                pids.append(int(d.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def interrupt_kernels() -> None:
    """Send SIGINT to every kernel this process started: each stops after its current cell."""
    for pid in _kernel_pids():
        try:
            os.kill(pid, signal.SIGINT)
        except OSError:
            pass


def on_sigint(signum: int, frame: object) -> None:
    """First Ctrl-C: interrupt the running kernel, so its cell stops cleanly and papermill returns
    (the kernel runs in its own session and does not see the terminal's Ctrl-C). Later ones, or
    no kernel: a KeyboardInterrupt here."""
    if not STOP.is_set() and _kernel_pids():
        STOP.set()
        interrupt_kernels()
        return
    raise KeyboardInterrupt
