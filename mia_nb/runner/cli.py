"""The command line: `python -m mia_nb run | data | readme` (also the `mia-nb` script).

    python -m mia_nb run --params params/default.yaml [--only 01-03] [--outputs DIR] [--force]

Every failure ends in one line: `error: ...` (exit 2 for bad input, a damaged file or an outputs folder that
cannot take the run, 1 for a failed notebook) or `interrupted: ...` with the command that resumes the run (exit
130). A run starts by removing what killed runs left in shared memory; its worker processes end with it.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

from mia_nb import REPO_ROOT
from mia_nb.config import ConfigError, load_profile
from mia_nb.data.install import install_fashion_mnist
from mia_nb.data.splits import DamagedFile
from mia_nb.layout import OutsideRootError, inside
from mia_nb.models.engine import clean_stale_shared_memory, quiet_resource_trackers, stop_workers
from mia_nb.report.summary import refresh_readme
from mia_nb.runner.chains import STOP, Interrupted, NotebookFailed, label, on_sigint
from mia_nb.runner.pipeline import run_study
from mia_nb.runner.plan import NOTEBOOK_DIR
from mia_nb.runner.written import NeedsRerun
from mia_nb.tables import DamagedTable


def _command(params: str, outputs: str | None, only: str | None, force: bool = False) -> str:
    """The `python -m mia_nb run ...` line for these arguments, quoted for a shell."""
    cmd = ["python", "-m", "mia_nb", "run", "--params", params]
    cmd += ["--outputs", outputs] if outputs else []
    cmd += ["--force"] if force else []
    cmd += ["--only", only] if only else []
    return " ".join(shlex.quote(c) for c in cmd)


def parser() -> argparse.ArgumentParser:
    """The argument parser of the three subcommands."""
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
    return ap


def readme(args: argparse.Namespace) -> int:
    """`readme`: copy a run's report/summary.md into the README's findings section."""
    try:
        profile = load_profile(args.params)
        root = Path(args.outputs).resolve() if args.outputs else REPO_ROOT / "outputs"
        n = refresh_readme(REPO_ROOT / "README.md", inside(root, profile.name), REPO_ROOT / "docs" / "figures")
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"README.md findings refreshed from {profile.name}'s report/summary.md; {n} figures copied to docs/figures")
    return 0


def data(args: argparse.Namespace) -> int:
    """`data`: install Fashion-MNIST into `--root` when it is missing."""
    try:
        raw = install_fashion_mnist(Path(args.root))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a read-only or full data folder
        print(f"error: --root: cannot write Fashion-MNIST into {args.root} ({err.strerror or err})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: files are written whole or not at all, so nothing half-written is kept; "
              f"rerun: python -m mia_nb data --root {args.root}", file=sys.stderr)
        return 130
    print(f"Fashion-MNIST ready in {raw}")
    return 0


def run(args: argparse.Namespace) -> int:
    """`run`: the study, with Ctrl-C passed on to the running kernels while it lasts."""
    t0 = time.perf_counter()
    STOP.clear()
    quiet_resource_trackers()  # before any worker pool or kernel starts: they inherit it
    clean_stale_shared_memory()  # what a killed run left in /dev/shm
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        run_study(args.params, args.only, args.outputs, notebook_dir=Path(args.notebooks), force=args.force)
    except NeedsRerun as err:
        print(f"error: {err}; rebuild it with: {_command(args.params, args.outputs, err.only, force=True)}",
              file=sys.stderr)
        return 2
    except (ConfigError, FileNotFoundError, OutsideRootError, DamagedFile, DamagedTable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except NotebookFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # outside the outputs folder (those are OutputsError, a ConfigError)
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Interrupted as err:
        stop_workers()
        print(f"interrupted: {Path(err.name).stem} ({label(err.seed)}) stopped; everything stored so far in "
              f"{err.base} is kept and will be reused; resume with: {_command(args.params, args.outputs, err.only)}",
              file=sys.stderr, flush=True)
        return 130
    except KeyboardInterrupt:
        stop_workers()
        print(f"interrupted outside a notebook; everything stored so far is kept; resume with: "
              f"{_command(args.params, args.outputs, args.only)}", file=sys.stderr, flush=True)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    print(f"study finished in {time.perf_counter() - t0:.0f} s")
    return 0


COMMANDS = {"run": run, "data": data, "readme": readme}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    args = parser().parse_args(argv)
    return COMMANDS[args.command](args)
