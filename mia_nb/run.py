"""Headless runner: execute the numbered notebooks in order with papermill.

    python -m mia_nb run --params params/default.yaml [--only 01-03] [--outputs DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from .config import ConfigError, Profile, load_profile, seeds_of
from .paths import OutsideRootError, inside

from . import REPO_ROOT
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NB_PATTERN = re.compile(r"^(\d\d)_.+\.ipynb$")


def list_notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered notebooks NN_name.ipynb in order."""
    return sorted(p for p in Path(folder).iterdir() if NB_PATTERN.match(p.name))


def select(notebooks: list[Path], only: str | None) -> list[Path]:
    """Filter by `--only`: '03', '01-03' or '01,04-05'; a one-line error for a bad selection."""
    if not only:
        return notebooks
    wanted: set[int] = set()
    for chunk in only.split(","):
        m = re.fullmatch(r"\s*(\d{1,2})\s*(?:-\s*(\d{1,2})\s*)?", chunk)
        if not m:
            raise ConfigError(f"--only: cannot read {chunk!r}; use e.g. 03, 01-03 or 01,04-05")
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        if hi < lo:
            raise ConfigError(f"--only: the range {chunk.strip()!r} is reversed, got {only!r} "
                              f"(write the lower number first: {hi:02d}-{lo:02d})")
        wanted.update(range(lo, hi + 1))
    picked = [p for p in notebooks if int(p.name[:2]) in wanted]
    if not picked:
        raise ConfigError(f"--only: {only!r} matches no notebook")
    return picked


def preflight(profile: Profile) -> None:
    """Checks that need data but no computation: data root, dataset, extra datasets and fake folder
    present, split sizes fit. Runs before any notebook; every failure is one line naming the key."""
    from . import data, splits
    data.check_data_available(profile, REPO_ROOT)
    info = data.dataset_info(profile)
    if info.n_images:
        splits.check_split_sizes(splits.split_sizes(profile), info.n_images, profile.data.dataset)


def execute(notebook: Path, out: Path, params: dict, cwd: Path) -> None:
    """Run one notebook with papermill, writing the executed copy to `out`."""
    import papermill as pm
    out.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(notebook), str(out), parameters=params, cwd=str(cwd), kernel_name="python3",
                        progress_bar=False, log_output=False, extra_arguments=KERNEL_ARGS)


FINGERPRINT_KEY = "mia_nb_fingerprint"  # in an executed copy's metadata, written only after it ran through


def fingerprint(notebook: Path, params: dict, profile_file: Path) -> str:
    """What an executed notebook is a function of, apart from the store: the notebook's source, its
    parameters, the profile file and every module of `mia_nb` (a sha256)."""
    import hashlib
    import json
    from .versions import package_version
    h = hashlib.sha256()
    h.update(Path(notebook).read_bytes())
    h.update(json.dumps(params, sort_keys=True).encode())
    h.update(Path(profile_file).read_bytes())
    h.update(package_version().encode())
    return h.hexdigest()[:16]


def up_to_date(out: Path, print_: str) -> bool:
    """Whether the executed copy `out` ran through with this fingerprint."""
    import json
    try:
        return json.loads(Path(out).read_text(encoding="utf-8"))["metadata"].get(FINGERPRINT_KEY) == print_
    except (OSError, ValueError, KeyError):
        return False


def mark_up_to_date(out: Path, print_: str) -> None:
    """Record the fingerprint in the executed copy's metadata (atomically)."""
    import nbformat
    from .store import write_text
    nb = nbformat.read(str(out), as_version=4)
    nb.metadata[FINGERPRINT_KEY] = print_
    write_text(out, nbformat.writes(nb))


# the kernel logs only critical messages: no "running over TCP without encryption" warning per notebook and
# no "KeyboardInterrupt caught" line when it is shut down (cell errors still reach the runner)
KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL"]
SUMMARY = ("08",)  # notebooks that summarise a run: once, over all seeds, after every per-seed notebook
TRAIN_BEFORE = 2  # after the notebooks before this one (data prep) ran for every seed, the runner trains


def applies(notebook: Path, profile: Profile, seed: int) -> bool:
    """Whether a per-seed notebook runs for a seed: 09 only where the profile gives reference models."""
    if notebook.name[:2] != "09":
        return True
    r = profile.reference_models
    return r.k > 0 and seed in (r.seeds or (seeds_of(profile)[0],))


def train_models(profile: Profile, outputs_root: Path, seeds: tuple[int, ...], quiet: bool = False) -> int:
    """Train every model the per-seed notebooks will ask for (all seeds, and the GAN) in one engine call.

    The notebooks then load them from the store; one bar shows models done / total and the ETA.
    Seeds whose splits are not drawn yet are skipped (their notebooks train what they need).
    Returns the number of jobs run.
    """
    from . import gan, trained, variants
    from .splits import assert_same_shared_parts
    from .study import Study
    studies = [Study(profile, outputs_root, seed) for seed in seeds]
    studies = [st for st in studies if (st.dir / "data" / "splits.npz").is_file()]
    if not studies:
        return 0
    assert_same_shared_parts({st.seed: st.splits for st in studies})
    from . import refmodels
    models = [item for st in studies
              for item in trained.missing(st, variants.all_model_requests(st) + refmodels.requests(st))]
    models.sort(key=lambda item: not item[0].config.get("dp"))  # the slowest jobs first
    items = gan.missing_gan(studies[0]) + models
    if items and not quiet:
        print(f"training {len(items)} models through the engine ({profile.engine.backend})", flush=True)
    t0 = time.perf_counter()
    trained.run_missing(items, profile.engine, desc="models", progress=not quiet)
    if items:
        from .engine import release_workers
        release_workers(profile.engine)  # the notebooks' kernels need the memory the idle workers hold
    if items and not quiet:
        print(f"    trained {len(items)} models in {time.perf_counter() - t0:.0f} s", flush=True)
    return len(items)


Job = tuple[Path, int, Path]  # (notebook, seed or -1 for the summary notebooks, run folder)


def side_by_side(profile: Profile, n_chains: int) -> int:
    """How many seeds' notebook chains run at once: one per core (never more than chains); 1 when the
    profile's joblib engine asks for a single worker."""
    from .engine import default_workers
    e = profile.engine
    cap = e.workers if e.backend == "joblib" and e.workers is not None else default_workers()
    return max(1, min(cap, n_chains))


class _KernelThreads:
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


def _label(seed: int) -> str:
    """How a job's seed reads in the runner's lines (-1: the summary notebooks)."""
    return f"seed {seed}" if seed >= 0 else "all seeds"


class _Progress:
    """Numbered start / done lines shared by the chains (one lock, whole lines)."""

    def __init__(self, total: int, profile: str, quiet: bool):
        self.total, self.profile, self.quiet = total, profile, quiet
        self.started, self.lock = 0, threading.Lock()
        self.finished: list[Job] = []

    def start(self, nb: Path, seed: int) -> None:
        with self.lock:
            self.started += 1
            if not self.quiet:
                print(f"[{self.started}/{self.total}] {self.profile} · {_label(seed)} · {nb.stem} …", flush=True)

    def skip(self, job: Job) -> None:
        with self.lock:
            self.started += 1
            self.finished.append(job)
            if not self.quiet:
                print(f"[{self.started}/{self.total}] {self.profile} · {_label(job[1])} · {job[0].stem}: up to date "
                      f"(unchanged notebook, profile and code; --force reruns it)", flush=True)

    def done(self, job: Job, out: Path, seconds: float, named: bool) -> None:
        with self.lock:
            self.finished.append(job)
            if not self.quiet:
                who = f"{_label(job[1])} · {job[0].stem} " if named else ""
                print(f"    {who}done in {seconds:.0f} s → {out}", flush=True)


def run_chains(chains: list[list[Job]], parallel: int, run_one: Callable[[Job, bool], None]) -> None:
    """Run each chain's notebooks in order, up to `parallel` chains at once, and wait for all of them.

    Each notebook runs in its own kernel process; a chain's thread only waits on it, so threads suffice
    (a ThreadPoolExecutor: unlike joblib's threading backend it can wait for the other chains after one
    fails). After a failure the other chains finish the notebook they are in and stop; then the first
    error is raised. Ctrl-C while waiting: every chain stops after its current cell (the kernels are
    interrupted), and the interrupt is raised once they have."""
    from concurrent.futures import ThreadPoolExecutor, wait
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
        from .engine import default_workers
        with _KernelThreads(max(1, default_workers() // parallel)), ThreadPoolExecutor(parallel) as pool:
            futures = [pool.submit(chain, c) for c in chains]
            try:
                wait(futures)
            except BaseException:  # Ctrl-C in this thread (no kernel to pass it to, or a second one)
                abort.set()
                STOP.set()
                _interrupt_kernels()
                wait(futures)
                raise
    if errors:
        raise errors[0]


def run_study(params_file: str | Path, only: str | None = None, outputs_root: str | Path | None = None,
              quiet: bool = False, notebook_dir: Path = NOTEBOOK_DIR, report: bool = True,
              force: bool = False) -> list[Path]:
    """Execute the selected notebooks for every seed of the profile, then the summary notebooks once.

    A notebook whose executed copy ran through with the same fingerprint (`fingerprint`: its source,
    parameters, profile file and the package's code) is up to date and skipped, unless an earlier
    notebook of its seed ran in this call, models were trained, or `force`; the summary notebooks run
    when anything else did. Everything a notebook computes comes from the store, so a skip changes no
    result; `force` (`--force`) reruns every selected notebook.

    Seeds are independent until the summary: each seed's notebooks run in order, and the seeds' chains
    run side by side, one per core (`side_by_side`). With several seeds, per-seed tables are aggregated
    (mean, 95% interval) into results/ before the summary notebooks run. Returns the executed copies;
    writes report/index.html when `report`.
    """
    import papermill as pm
    params_file = Path(params_file).resolve()
    profile = load_profile(params_file)
    notebooks = select(list_notebooks(notebook_dir), only)
    from .engine import check_ray
    check_ray(profile.engine)
    preflight(profile)
    outputs_root = Path(outputs_root).resolve() if outputs_root else REPO_ROOT / "outputs"
    if outputs_root.exists() and not outputs_root.is_dir():
        raise ConfigError(f"--outputs: {outputs_root} is a file, got {str(outputs_root)!r} (name a folder)")
    per_seed = [nb for nb in notebooks if nb.name[:2] not in SUMMARY]
    summary = [nb for nb in notebooks if nb.name[:2] in SUMMARY]
    seeds = seeds_of(profile)
    base = inside(outputs_root, profile.name)  # the name is checked at load; this guards the guard
    first = [nb for nb in per_seed if int(nb.name[:2]) < TRAIN_BEFORE]
    later = [nb for nb in per_seed if int(nb.name[:2]) >= TRAIN_BEFORE]
    run_dir = {seed: base / f"seed_{seed}" if len(seeds) > 1 else base for seed in seeds}
    before: list[list[Job]] = [[(nb, seed, run_dir[seed]) for nb in first] for seed in seeds]
    after: list[list[Job]] = [[(nb, seed, run_dir[seed]) for nb in later if applies(nb, profile, seed)]
                              for seed in seeds]
    after.sort(key=len, reverse=True)  # the longest chain (the seed with reference models) starts first
    last: list[Job] = [(nb, -1, base) for nb in summary]
    every = [j for c in before for j in c] + [j for c in after for j in c] + last
    progress = _Progress(len(every), profile.name, quiet)
    from .report import page_prefix, render_notebook  # imported once, before the chains' threads start
    os.environ["MIA_NB_HEADLESS"] = "1"  # kernels inherit it: widgets are skipped, static figures stay
    parallel = side_by_side(profile, len(seeds))
    if not quiet and parallel > 1:
        print(f"{len(seeds)} seeds: their notebooks run {parallel} at a time", flush=True)

    ran: set[int] = set()  # seeds (-1: the summary) with a notebook executed in this call
    lock = threading.Lock()

    def run_one(job: Job, named: bool) -> None:
        nb, seed, folder = job
        out = folder / "notebooks" / nb.name
        params = {"params_file": str(params_file), "outputs_root": str(outputs_root), "seed": int(seed)}
        print_ = fingerprint(nb, params, params_file)
        with lock:
            must = force or seed in ran or (seed < 0 and bool(ran))
        if not must and up_to_date(out, print_):
            progress.skip(job)
            return
        with lock:
            ran.add(seed)
        t0 = time.perf_counter()
        progress.start(nb, seed)
        try:
            execute(nb, out, params, notebook_dir)
        except pm.PapermillExecutionError as err:
            if err.ename == "KeyboardInterrupt" or STOP.is_set():  # Ctrl-C, passed on to the kernel by main
                raise _interrupted(nb, seed) from None
            raise NotebookFailed(nb.name, err.exec_count, f"{err.ename}: {err.evalue}", out) from None
        except KeyboardInterrupt:
            raise _interrupted(nb, seed) from None
        except Exception:
            if STOP.is_set():  # e.g. a kernel that got the Ctrl-C while starting
                raise _interrupted(nb, seed) from None
            raise
        mark_up_to_date(out, print_)
        progress.done(job, out, time.perf_counter() - t0, named)
        if report:  # rendered now, while the other chains' kernels run; the report at the end links it
            try:
                render_notebook(out, base / "report", page_prefix(base, folder))
            except Exception as err:  # noqa: BLE001 - write_report tries again at the end
                print(f"    (could not render {out.name} to HTML yet: {type(err).__name__}: {err})", flush=True)

    def _interrupted(nb: Path, seed: int) -> Interrupted:
        left = [j for j in every if j not in progress.finished]
        return Interrupted(nb.name, seed, base, _remaining(left, notebooks, only))

    def stop_if_asked() -> None:  # Ctrl-C reached a kernel between two cells: stop after its notebook
        left = [j for j in every if j not in progress.finished]
        if STOP.is_set() and left:
            raise _interrupted(*left[0][:2])

    run_chains(before, parallel, run_one)
    stop_if_asked()
    if later and train_models(profile, outputs_root, seeds, quiet):
        ran.update(seeds)  # new models: every later notebook of every seed runs
    run_chains(after, parallel, run_one)
    stop_if_asked()
    if last and len(seeds) > 1:
        from .results import aggregate_seed_tables
        aggregate_seed_tables(base / "results", seeds)
    run_chains([last], 1, run_one)
    stop_if_asked()
    done = [j[2] / "notebooks" / j[0].name for j in every if j in progress.finished]
    if report and done:
        from .report import write_report
        index = write_report(base, title=f"mia-nb · {profile.name}")
        from .summary import write_summary
        summary_file = write_summary(base, profile)
        if not quiet:
            print(f"report: {index}\nsummary: {summary_file} (into the README: python -m mia_nb readme)")
    return done


class NotebookFailed(RuntimeError):
    """A notebook raised; names the notebook, the cell and the kept executed copy."""

    def __init__(self, name: str, cell: int | None, error: str, copy: Path):
        self.name, self.cell, self.error, self.copy = name, cell, error, copy
        super().__init__(f"{name} failed in cell [{cell}]: {error} (executed copy: {copy})")


STOP = threading.Event()  # set by the Ctrl-C handler of `main` once it has interrupted the kernel


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


def _on_sigint(signum: int, frame: object) -> None:
    """First Ctrl-C: interrupt the running kernel, so its cell stops cleanly and papermill returns
    (the kernel runs in its own session and does not see the terminal's Ctrl-C). Later ones, or
    no kernel: a KeyboardInterrupt here."""
    if not STOP.is_set() and _kernel_pids():
        STOP.set()
        _interrupt_kernels()
        return
    raise KeyboardInterrupt


def _interrupt_kernels() -> None:
    """Send SIGINT to every kernel this process started: each stops after its current cell."""
    for pid in _kernel_pids():
        try:
            os.kill(pid, signal.SIGINT)
        except OSError:
            pass


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a notebook; names it and what a rerun must cover (`only`, None = the same selection)."""

    def __init__(self, name: str, seed: int, base: Path, only: str | None):
        self.name, self.seed, self.base, self.only = name, seed, base, only
        super().__init__(name)


def _remaining(jobs: list[tuple[Path, int, Path]], selected: list[Path], only: str | None) -> str | None:
    """An --only value covering the notebooks of the jobs not yet finished (None: keep `only` as it was)."""
    numbers = sorted({int(nb.name[:2]) for nb, _, _ in jobs})
    if len(numbers) == len(selected):
        return only
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ",".join(f"{r[0]:02d}" if len(r) == 1 else f"{r[0]:02d}-{r[-1]:02d}" for r in runs)


def _command(params: str, outputs: str | None, only: str | None) -> str:
    """The `python -m mia_nb run ...` line for these arguments, quoted for a shell."""
    import shlex
    cmd = ["python", "-m", "mia_nb", "run", "--params", params]
    cmd += ["--outputs", outputs] if outputs else []
    cmd += ["--only", only] if only else []
    return " ".join(shlex.quote(c) for c in cmd)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(prog="python -m mia_nb", description="Run the mia-nb study headless.")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="execute the numbered notebooks in order with papermill")
    r.add_argument("--params", default=str(REPO_ROOT / "params" / "default.yaml"), help="profile YAML")
    r.add_argument("--only", default=None, help="notebooks to run, e.g. 01-03 or 04,06")
    r.add_argument("--force", action="store_true", help="rerun notebooks that are up to date too")
    r.add_argument("--outputs", default=None, help="outputs root (default: ./outputs)")
    r.add_argument("--notebooks", default=str(NOTEBOOK_DIR), help=argparse.SUPPRESS)  # tests: a folder of stand-ins
    d = sub.add_parser("data", help="install the default dataset (Fashion-MNIST) when it is missing")
    d.add_argument("--root", default=str(REPO_ROOT / "data"), help="data folder (default: ./data)")
    m = sub.add_parser("readme", help="refresh the README's findings section from a run's report/summary.md")
    m.add_argument("--params", default=str(REPO_ROOT / "params" / "default.yaml"), help="profile YAML of the run")
    m.add_argument("--outputs", default=None, help="outputs root of the run (default: ./outputs)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.command == "readme":
        from .paths import inside
        from .summary import refresh_readme
        try:
            profile = load_profile(args.params)
            root = Path(args.outputs).resolve() if args.outputs else REPO_ROOT / "outputs"
            n = refresh_readme(REPO_ROOT / "README.md", inside(root, profile.name), REPO_ROOT / "docs" / "figures")
        except (ConfigError, FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"README.md findings refreshed from {profile.name}'s report/summary.md; {n} figures copied to docs/figures")
        return 0
    if args.command == "data":
        from .install import install_fashion_mnist
        try:
            raw = install_fashion_mnist(Path(args.root))
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted: files are written whole or not at all, so nothing half-written is kept; "
                  f"rerun: python -m mia_nb data --root {args.root}", file=sys.stderr)
            return 130
        print(f"Fashion-MNIST ready in {raw}")
        return 0
    STOP.clear()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        run_study(args.params, args.only, args.outputs, notebook_dir=Path(args.notebooks), force=args.force)
    except (ConfigError, FileNotFoundError, OutsideRootError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except NotebookFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Interrupted as err:
        print(f"interrupted: {Path(err.name).stem} ({_label(err.seed)}) stopped; everything stored so far in {err.base} is kept "
              f"and will be reused; resume with: {_command(args.params, args.outputs, err.only)}",
              file=sys.stderr, flush=True)
        return 130
    except KeyboardInterrupt:
        print(f"interrupted outside a notebook; everything stored so far is kept; resume with: "
              f"{_command(args.params, args.outputs, args.only)}", file=sys.stderr, flush=True)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    print(f"study finished in {time.perf_counter() - t0:.0f} s")
    return 0
