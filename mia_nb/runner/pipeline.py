"""A whole study run: preflight checks (the profile's data and machine, the outputs folder, damaged files),
the `data` chains, the training phase, the `per_seed` chains, the seed aggregation, the `summary` chain, and
the report and summary pages."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import papermill as pm

from mia_nb import REPO_ROOT
from mia_nb.config import Profile, load_profile, seeds_of
from mia_nb.data import datasets, splits
from mia_nb.layout import REPORT, RESULTS, inside, run_folder
from mia_nb.models.engine import HEADLESS, check_ray
from mia_nb.models.device import resolve_device
from mia_nb.models.privacy import check_secure_mode
from mia_nb.report.html import page_prefix, render_notebook, write_report
from mia_nb.report.summary import write_summary
from mia_nb.runner import written
from mia_nb.runner.chains import (STOP, Interrupted, NotebookFailed, Progress, execute, label, run_chains,
                                  side_by_side)
from mia_nb.runner.outputs import OutputsError, check_outputs, check_outside_source, full_message, os_error_message
from mia_nb.runner.plan import (NOTEBOOK_DIR, Job, Plan, executed_copy, fingerprint, list_notebooks,
                                mark_up_to_date, only_value, plan, remaining_only, role, select, up_to_date)
from mia_nb.runner.training import train_models
from mia_nb.tables import aggregate_seed_tables


def preflight(profile: Profile) -> None:
    """Checks that need data or the machine but no computation: data root, dataset, extra datasets and fake
    folder present, split sizes fit, the device and DP's secure RNG available. Runs before any notebook;
    every failure is one line naming the key."""
    resolve_device(profile.device)
    check_secure_mode(profile.defenses.dp_secure_mode)
    datasets.check_data_available(profile, REPO_ROOT)
    info = datasets.dataset_info(profile)
    if info.n_images:
        splits.check_split_sizes(splits.split_sizes(profile), info.n_images, profile.data.dataset)


def run_study(params_file: str | Path, only: str | None = None, outputs_root: str | Path | None = None,
              quiet: bool = False, notebook_dir: Path = NOTEBOOK_DIR, report: bool = True,
              force: bool = False) -> list[Path]:
    """Execute the selected notebooks for every seed of the profile, then the summary notebooks once.

    A notebook whose executed copy ran through with the same fingerprint (`plan.fingerprint`: its source,
    parameters, profile file and the package's code) is up to date and skipped, unless an earlier
    notebook of its seed ran in this call, models were trained, or `force`; the summary notebooks run
    when anything else did. Everything a notebook computes comes from the store, so a skip changes no
    result; `force` (`--force`) reruns every selected notebook. A file a notebook wrote that is missing or
    changed since (`written`), or splits that cannot be read, make their notebooks rerun (`heal_damaged_files`).

    Seeds are independent until the summary: each seed's notebooks run in order (their stages from the
    notebooks' metadata, `plan.role`), and the seeds' chains run side by side, one per core
    (`side_by_side`). With several seeds, per-seed tables are aggregated (mean, 95% interval) into
    results/ before the summary notebooks run. Returns the executed copies; writes report/index.html
    when `report`.
    """
    params_file = Path(params_file).resolve()
    profile = load_profile(params_file)
    available = list_notebooks(notebook_dir)
    notebooks = select(available, only)
    outputs_root = Path(outputs_root).resolve() if outputs_root else REPO_ROOT / "outputs"
    check_outside_source(outputs_root)
    check_ray(profile.engine)
    preflight(profile)
    seeds = seeds_of(profile)
    base = inside(outputs_root, profile.name)  # the name is checked at load; this guards the guard
    check_outputs(outputs_root, base, profile)
    jobs = plan(notebooks, profile, base)
    every = jobs.jobs()
    data_stage = [nb.name for nb in available if role(nb).stage == "data"]
    stale = heal_damaged_files(base, seeds, jobs, data_stage)
    progress = Progress(len(every), profile.name, quiet)
    os.environ[HEADLESS] = "1"  # kernels inherit it: widgets and per-epoch bars are skipped, static figures stay
    parallel = side_by_side(profile, len(seeds))
    if not quiet and parallel > 1:
        print(f"{len(seeds)} seeds: their notebooks run {parallel} at a time", flush=True)

    ran: set[int] = set()  # seeds (-1: the summary) with a notebook executed in this call
    lock = threading.Lock()

    def run_one(job: Job, named: bool) -> None:
        nb, seed, folder = job
        out = executed_copy(job)
        params = {"params_file": str(params_file), "outputs_root": str(outputs_root)}
        if seed >= 0:  # a summary notebook has no seed: it reads every seed's folder
            params["seed"] = int(seed)
        print_ = fingerprint(nb, params, params_file)
        with lock:
            must = force or seed in ran or (seed < 0 and bool(ran)) or (nb.name, folder) in stale
        if not must and up_to_date(out, print_):
            progress.skip(job)
            return
        with lock:
            ran.add(seed)
        t0, started = time.perf_counter(), time.time()
        progress.start(nb, seed)
        try:
            execute(nb, out, params, notebook_dir, label(seed) if named else "")
        except pm.PapermillExecutionError as err:
            if err.ename == "KeyboardInterrupt" or STOP.is_set():  # Ctrl-C, passed on to the kernel by main
                raise interrupted(nb, seed) from None
            if "[Errno 28]" in str(err.evalue) or "No space left" in str(err.evalue):
                raise OutputsError(f"{nb.stem}: {full_message(outputs_root, profile, base)}") from None
            raise NotebookFailed(nb.name, err.exec_count, f"{err.ename}: {err.evalue}", out) from None
        except KeyboardInterrupt:
            raise interrupted(nb, seed) from None
        except Exception:
            if STOP.is_set():  # e.g. a kernel that got the Ctrl-C while starting
                raise interrupted(nb, seed) from None
            raise
        finally:  # what it wrote is its own, whether it ran through or not: only later changes count as damage
            try:
                written.record(base, folder, seed, nb.name, started)
            except OSError:
                pass
        mark_up_to_date(out, print_)
        progress.done(job, out, time.perf_counter() - t0, named)
        if report:  # rendered now, while the other chains' kernels run; the report at the end links it
            try:
                render_notebook(out, base / REPORT, page_prefix(base, folder))
            except Exception as err:  # noqa: BLE001 - write_report tries again at the end
                print(f"    (could not render {out.name} to HTML yet: {type(err).__name__}: {err})", flush=True)

    def interrupted(nb: Path, seed: int) -> Interrupted:
        left = [j for j in every if j not in progress.finished]
        return Interrupted(nb.name, seed, base, remaining_only(left, notebooks, only))

    def stop_if_asked() -> None:  # Ctrl-C reached a kernel between two cells: stop after its notebook
        left = [j for j in every if j not in progress.finished]
        if STOP.is_set() and left:
            raise interrupted(*left[0][:2])

    try:
        run_chains(jobs.data, parallel, run_one)
        stop_if_asked()
        if jobs.train and train_models(profile, outputs_root, seeds, quiet):
            ran.update(seeds)  # new models: every later notebook of every seed runs
        run_chains(jobs.per_seed, parallel, run_one)
        stop_if_asked()
        if jobs.summary and len(seeds) > 1:
            aggregate_seed_tables(base / RESULTS, seeds)
        run_chains([jobs.summary], 1, run_one)
        stop_if_asked()
        done = [executed_copy(j) for j in every if j in progress.finished]
        if report and done:
            index = write_report(base, title=f"mia-nb · {profile.name}")
            summary_file = write_summary(base, profile)
            if not quiet:
                print(f"report: {index}\nsummary: {summary_file} (into the README: python -m mia_nb readme)")
    except OSError as err:  # a full disk, or a folder made read-only mid-run: one line naming --outputs
        message = os_error_message(err, outputs_root, profile, base)
        if message is None:
            raise
        raise OutputsError(message) from None
    return done


def heal_damaged_files(base: Path, seeds: tuple[int, ...], jobs: Plan,
                       data_stage: list[str]) -> set[tuple[str, Path]]:
    """Before any work: find the files notebooks wrote that are missing or changed since (`written.check`) and
    the splits that cannot be read; move each aside and return the (notebook, run folder) pairs that must rerun
    to rebuild them. When a rebuilding notebook is not selected, nothing is moved and `written.NeedsRerun`
    names the file and the notebooks a `--force --only` run must cover."""
    folders = [base] + [run_folder(base, s, seeds) for s in seeds]
    selected = {(nb.name, folder) for nb, _, folder in jobs.jobs()}
    damage = written.check(base, folders)
    for folder in dict.fromkeys(folders[1:]):
        reason = written.damaged_splits(folder)
        if reason and not any(d.path.name == "splits.npz" and d.folder == folder for d in damage):
            splits_file = folder / "data" / "splits.npz"
            damage.append(written.Damage(splits_file, reason.removeprefix(f"{splits_file} "), folder,
                                         tuple(data_stage)))
    for d in damage:
        if not d.by or not {(name, d.folder) for name in d.by} <= selected:
            writers = list(d.by) or data_stage
            names = ", ".join(w.removesuffix(".ipynb") for w in writers)
            raise written.NeedsRerun(f"{d.path} {d.reason} since {names} wrote it, and this selection does not "
                                     f"rerun {names}", only_value(writers))
    stale: set[tuple[str, Path]] = set()
    for d in damage:
        written.move_aside(d, base)
        stale.update((name, d.folder) for name in d.by)
    return stale
