"""Hostile inputs and faults at the command line (issue 22): each case is refused in one line before any work or
healed in one rerun, and nothing is written outside its outputs folder. `CASES` is the table the issue's closing
note lists.

Most cases call the entry point `python -m mia_nb` runs, `mia_nb.runner.cli.main(argv)`, in this process (`here`):
the same code, without the seconds of imports each new process spends; stdout and stderr are captured at the file
descriptors, so what kernels and workers write counts too. A process of its own is kept where the case is about
the process: SIGKILL and Ctrl-C of the runner (no worker left), a disk that fills while the runner runs, and a few
refusals that show the real command line prints one line (`APART`). They start when the module does and run while
the in-process cases do. The heal cases share one tiny finished run (a few dozen images, one epoch, three stand-in
notebooks that call the package as the real ones do), restored from its first run before each case; their reruns
execute the stand-ins in this process (`execute_here`) except the case whose heal happens inside a kernel."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from mia_nb.data.install import DEBIAN_FASHION_MNIST, FASHION_FILES, idx_problem
from mia_nb.models.engine import clean_stale_shared_memory
from mia_nb.runner import cli as cli_module
from mia_nb.runner import pipeline
from mia_nb.runner.chains import HealLines
from mia_nb.runner.cli import main
from mia_nb.store import Store

from conftest import loky_workers

pytestmark = pytest.mark.slow  # a few runner processes, some training, and kernels

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
TOKEN = "hostilecli"  # in every profile name of this file: a path holding it outside an outputs folder is a leak
KILL_GRACE_S = 5.0  # the bound: no worker of a SIGKILLed runner is left this long after
ENV = dict(os.environ)  # what the processes of this file start with (an in-process run changes it while it lasts)
# Held while an in-process run cleans /dev/shm (every `run` starts by removing a dead run's leftovers: `here`) and
# while the SIGKILL case looks for its dead runner's leftovers: a cleaning then would hide one.
SHM = threading.RLock()

TINY = f"""name: {TOKEN}_{{name}}
seed: 0
device: cpu
data:
  dataset: fashion_mnist
  root: {DATA}
splits:
  target_train: {{n_train}}
  target_heldout: 20
  shadow_train: {{n_train}}
  shadow_heldout: 20
  calibration: 10
  generator: 10
train:
  epochs: {{epochs}}
  batch_size: 16
  eval_every: 1
ood:
  max_pool_size: 100
  gan:
    n_images: 0
    supply_sizes: []
calibration:
  temperatures: []
  label_smoothing: []
  llla:
    arms: []
defenses:
  weight_decay: []
  dp_epsilons: []
engine:
  workers: {{workers}}
"""


def tiny(name: str, n_train: int = 20, epochs: int = 1, workers: int = 1, extra: str = "") -> str:
    """The tiny profile's text (one worker: the models train in the runner itself)."""
    return TINY.format(name=name, n_train=n_train, epochs=epochs, workers=workers) + extra


STAND_INS = {  # the stand-in notebooks: stage, code (after the parameters cell)
    "01_data.ipynb": ("data", "from mia_nb.study import open_study\nfrom mia_nb.data.splits import split_table\n"
                      "study = open_study(params_file, outputs_root, seed)\n"
                      "study.save_table(split_table(study.make_splits()), 'splits')"),
    "02_train.ipynb": ("per_seed", "import pandas as pd\nfrom mia_nb.models import jobs\n"
                       "from mia_nb.study import open_study\n"
                       "study = open_study(params_file, outputs_root, seed)\n"
                       "models = [jobs.trained(study, 'target'), jobs.trained(study, 'shadow')]\n"
                       "jobs.record_rows(study, models)\n"
                       "probe = study.store.get_or_make('labels', {'probe': study.seed}, lambda: list(range(3)))\n"
                       "gap = float(models[0].metrics.as_dict()['gap'])\n"
                       "study.save_table(pd.DataFrame([{'variant': 'vanilla', 'attack': 'gap', "
                       "'nonmember_set': 'heldout', 'value': gap}]), 'attacks')"),
    "03_summary.ipynb": ("summary", "from mia_nb.study import open_study\nfrom mia_nb.tables import read_csv\n"
                         "study = open_study(params_file, outputs_root, seed)\n"
                         "t = read_csv(study.results_dir / 'attacks.csv')\n"
                         "assert set(t.columns) >= {'variant', 'attack', 'value'}, list(t.columns)\n"
                         "study.save_table(t.assign(checked=True), 'checked')"),
}


def write_stand_ins(folder: Path) -> Path:
    """The three stand-in notebooks, with their roles in their metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (stage, code) in STAND_INS.items():
        nb = new_notebook(cells=[new_code_cell("params_file = ''\noutputs_root = ''\nseed = -1",
                                               metadata={"tags": ["parameters"]}), new_code_cell(code)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["mia_nb"] = {"stage": stage}
        nbformat.write(nb, folder / name)
    return folder


def execute_here(notebook: Path, out: Path, params: dict, cwd: Path, who: str = "") -> None:
    """`chains.execute` without a kernel: the notebook's cells run in this process in a namespace of their own,
    after its parameters (injected as papermill does); its stderr reaches the console as a kernel's does (only
    the heal lines), and the executed copy is written to `out`."""
    nb = nbformat.read(str(notebook), as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])) + 1
    nb.cells.insert(at, new_code_cell("\n".join(f"{k} = {v!r}" for k, v in params.items()),
                                      metadata={"tags": ["injected-parameters"]}))
    namespace: dict = {"__name__": "__main__"}
    kernel_stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(kernel_stderr):
            for cell in nb.cells:
                if cell.cell_type == "code":
                    exec(compile(cell.source, str(notebook), "exec"), namespace)  # noqa: S102 - the stand-ins
    finally:
        HealLines(f"{who} · {notebook.stem}" if who else notebook.stem).write(kernel_stderr.getvalue() + "\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(out))


@dataclass
class Run:
    """One finished command: exit status, its output, and how long it took."""

    args: list[str]
    rc: int
    out: str
    err: str
    seconds: float

    def lines(self) -> list[str]:
        """stderr's lines without progress bars (tqdm redraws with carriage returns)."""
        return [ln for ln in self.err.replace("\r", "\n").splitlines() if ln.strip() and "job/s" not in ln]


def _log_files(cwd: Path) -> tuple[Path, Path]:
    """Two new files for a command's stdout and stderr, next to its folder `cwd`."""
    logs = cwd.parent / f"{cwd.name}.logs"
    logs.mkdir(exist_ok=True)
    n = len(list(logs.glob("*.out")))
    return logs / f"{n}.out", logs / f"{n}.err"


def cli(args: list[str], cwd: Path, timeout: float = 600) -> Run:
    """`python -m mia_nb <args>` in `cwd`, its output in files (a worker left behind cannot hold a pipe open)."""
    out, err = _log_files(cwd)
    t0 = time.perf_counter()
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen([sys.executable, "-m", "mia_nb", *args], cwd=cwd, stdout=fo, stderr=fe, env=ENV)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    return Run(args, rc, out.read_text(), err.read_text(), time.perf_counter() - t0)


@contextlib.contextmanager
def captured(out: Path, err: Path) -> Iterator[None]:
    """stdout and stderr into two files while the block runs, at the file descriptors too (kernels and workers
    started inside inherit them)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(out, "w", buffering=1) as fo, open(err, "w", buffering=1) as fe:
        try:
            os.dup2(fo.fileno(), 1)
            os.dup2(fe.fileno(), 2)
            with contextlib.redirect_stdout(fo), contextlib.redirect_stderr(fe):
                yield
        finally:
            for fd, old in zip((1, 2), saved):
                os.dup2(old, fd)
                os.close(old)


def _clean_in_turn(folders: list[Path] | None = None) -> list[Path]:
    """`clean_stale_shared_memory` as the runner calls it, but never while `SHM` is held elsewhere."""
    with SHM:
        return clean_stale_shared_memory(folders)


def here(args: list[str], cwd: Path) -> Run:
    """`main(args)` in this process, as `python -m mia_nb <args>` runs it in `cwd`: the exit status the interpreter
    would give (1 and the traceback for an exception main lets out); the environment is restored after."""
    out, err = _log_files(cwd)
    env, back, t0 = dict(os.environ), os.getcwd(), time.perf_counter()
    with pytest.MonkeyPatch.context() as mp, captured(out, err):
        mp.setattr(cli_module, "clean_stale_shared_memory", _clean_in_turn)
        os.chdir(cwd)
        try:
            rc = main(args)
        except SystemExit as exc:  # argparse's usage errors
            rc = exc.code if isinstance(exc.code, int) else 1
        except Exception:  # noqa: BLE001 - what the interpreter prints before it exits with 1
            traceback.print_exc()
            rc = 1
        finally:
            os.chdir(back)
            os.environ.clear()
            os.environ.update(env)
    return Run(args, rc, out.read_text(), err.read_text(), time.perf_counter() - t0)


def files_under(folder: Path) -> set[Path]:
    """Every path under `folder`."""
    return set(folder.rglob("*")) if folder.exists() else set()


def leaked() -> list[Path]:
    """Paths holding TOKEN outside any outputs folder: in the repository, in /tmp, in /dev/shm."""
    found = []
    for where in (REPO / "notebooks", REPO / "params", REPO / "mia_nb", REPO / "tests", REPO / "docs", REPO,
                  Path("/tmp"), Path("/dev/shm")):
        try:
            found += [p for p in where.iterdir() if TOKEN in p.name]
        except OSError:
            continue
    return found


def _args(params: Path, out: Path, stand_ins: Path, only: str | None = None, force: bool = False) -> list[str]:
    return (["run", "--params", str(params), "--outputs", str(out), "--notebooks", str(stand_ins)]
            + (["--force"] if force else []) + (["--only", only] if only else []))


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> Path:
    """The stand-in notebooks every run of this file executes."""
    return write_stand_ins(tmp_path_factory.mktemp("stand_ins"))


# ------------------------------------------------------------------------------------ refused before work

def _bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


@dataclass
class Refusal:
    """A case refused in one line before any work: the profile (text, bytes or a special path), extra
    arguments (`{case}`: the case's folder), what the line says, and a setup run before the command."""

    profile: str | bytes | None
    expected: str
    args: tuple[str, ...] = ()
    setup: Callable[[Path], None] | None = None
    command: str = "run"
    kind: str = "yaml"


def _non_empty(case: Path) -> None:
    (case / "elsewhere").mkdir()
    (case / "elsewhere" / "passwd").write_text("keep me\n")


def _data_file(case: Path) -> None:
    (case / "datafile").write_text("not a folder\n")


def _plain_file(case: Path) -> None:
    (case / "plain").write_text("a file\n")


def _fashion_copy(case: Path, damage: Callable[[Path], None]) -> None:
    """data/FashionMNIST/raw of the case: links to the real files, the damaged one a real file."""
    raw = case / "fm" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FASHION_FILES:
        (raw / name).symlink_to(DATA / "FashionMNIST" / "raw" / name)
    damage(raw)


def _cut(name: str, keep: int | None) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        blob = (raw / name).read_bytes()
        (raw / name).unlink()
        (raw / name).write_bytes(b"" if keep is None else blob[:keep])
    return damage


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _plant_shm(case: Path) -> None:
    """Leftovers of a killed run in /dev/shm (named after a process that is gone), for the next start to clean."""
    pid = _dead_pid()
    shm = Path("/dev/shm")
    (shm / f"sem.loky-{pid}-{TOKEN}").write_bytes(b"\0" * 32)
    (shm / f"joblib_memmapping_folder_{pid}_{TOKEN}_0").mkdir()
    (case / "planted").write_text(str(pid))


def _listener(case: Path) -> None:
    """Something other than Ray listening on a port: it answers HTTP, as a web server would."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
                conn.close()
            except OSError:
                return
    threading.Thread(target=serve, daemon=True).start()
    (case / "port").write_text(str(srv.getsockname()[1]))
    LISTENERS.append(srv)


LISTENERS: list[socket.socket] = []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


REFUSALS: dict[str, Refusal] = {
    # hostile YAML: the loader (item 2)
    "self-alias": Refusal("x: &a [*a]\n", "YAML anchors and aliases"),
    "merge-key-alias": Refusal("base: &b {epochs: 2}\ntrain:\n  <<: *b\n", "YAML anchors and aliases"),
    "billion-laughs-12": Refusal(_bomb().replace("a9", "a12"), "YAML anchors and aliases"),
    "deep-flow-5000": Refusal("seeds: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than"),
    "esc-byte": Refusal("name: run\nseed: \x1b[31m4\n", "line 2, column 7: ESC"),
    "python-tag": Refusal("name: !!python/object/apply:os.system ['touch pwned']\n", "YAML tags"),
    "sexagesimal-seed": Refusal("seed: 1:00\n", "seed: expected an integer, got '1:00'"),
    "yaml11-yes": Refusal("data:\n  download: yes\n", "data.download: expected true or false"),
    "huge-int": Refusal("seed: " + "9" * 5000 + "\n", "an integer of 5000 digits"),
    "two-documents": Refusal("name: a\n---\nname: b\n", "not valid YAML"),
    "duplicate-key": Refusal("train:\n  epochs: 2\n  epochs: 3\n", "train.epochs: given twice"),
    "ten-megabytes": Refusal(b"name: big\n" + b"# padding\n" * 1_000_000, "too large for a profile"),
    "1.3M-seeds": Refusal(b"seeds: [" + b", ".join(str(i).encode() for i in range(1_300_000)) + b"]\n",
                          "too large for a profile"),
    "latin1": Refusal("name: caf\xe9\n".encode("latin-1"), "not UTF-8"),
    "empty-file": Refusal(b"", "the profile is empty"),
    "not-a-mapping": Refusal("- a\n- b\n", "expected a mapping"),
    "params-dev-null": Refusal(None, "not a regular file", ("--params", os.devnull)),
    "unknown-key": Refusal("trian:\n  epochs: 2\n", "trian: unknown key"),
    # counts (item 3)
    "n-boot-1e12": Refusal("attacks:\n  n_boot: 1000000000000\n", "attacks.n_boot: too large", kind="count"),
    "gan-images-1e12": Refusal("ood:\n  gan:\n    n_images: 1000000000000\n", "ood.gan.n_images: too large", kind="count"),
    "reference-k-1e12": Refusal("reference_models:\n  k: 1000000000000\n", "reference_models.k: too large", kind="count"),
    "llla-grid-1e12": Refusal("calibration:\n  llla:\n    grid: [-4.0, 4.0, 1000000000000.0]\n",
                              "calibration.llla.grid: too large", kind="count"),
    "seeds-101": Refusal("seeds: [" + ", ".join(map(str, range(101))) + "]\n", "seeds: too large", kind="count"),
    "seeds-20000": Refusal("seeds: [" + ", ".join(map(str, range(20000))) + "]\n", "too large for a profile", kind="count"),
    "batch-size-huge": Refusal("train:\n  batch_size: 100000000\n", "train.batch_size: too large", kind="count"),
    "temperatures-51": Refusal("calibration:\n  temperatures: [" + ", ".join(str(1.0 + i) for i in range(51)) + "]\n",
                               "calibration.temperatures: too large", kind="count"),
    "target-train-5": Refusal("splits:\n  target_train: 5\n", "splits.target_train: too small", kind="count"),
    "splits-over-dataset": Refusal("splits:\n  generator: 60000\n", "splits.generator", kind="count"),
    "salem-k-11": Refusal("attacks:\n  salem_k: 11\n", "attacks.salem_k: too large", kind="count"),
    # writes where they do not belong (item 4)
    "data-root-not-empty": Refusal(tiny("dataroot").replace(f"root: {DATA}", "root: {case}/elsewhere"),
                                   "holds other files (passwd) and no FashionMNIST/ folder", setup=_non_empty,
                                   kind="writes"),
    "data-root-dotdot": Refusal(tiny("dotdot").replace(f"root: {DATA}", "root: ../../../../../../../../{case}/elsewhere"),
                                "and no FashionMNIST/ folder", setup=_non_empty, kind="writes"),
    "data-root-typo": Refusal(tiny("typo").replace(f"root: {DATA}", "root: {case}/dtaa"), "does not exist", kind="writes"),
    "data-root-a-file": Refusal(tiny("afile").replace(f"root: {DATA}", "root: {case}/datafile"), "is a file",
                                setup=_data_file, kind="writes"),
    "data-command-not-empty": Refusal(None, "holds other files (passwd) and no FashionMNIST/ folder",
                                      ("--root", "{case}/elsewhere"), setup=_non_empty, command="data", kind="writes"),
    "outputs-notebooks": Refusal(tiny("nbs"), "lies inside the source tree", ("--outputs", str(REPO / "notebooks")),
                                 kind="writes"),
    "outputs-repo-root": Refusal(tiny("root"), "lies inside the source tree", ("--outputs", str(REPO)), kind="writes"),
    "outputs-params-sub": Refusal(tiny("params"), "lies inside the source tree",
                                  ("--outputs", str(REPO / "params" / TOKEN)),
                                  kind="writes"),
    "outputs-tests-dotdot": Refusal(tiny("tests"), "lies inside the source tree",
                                    ("--outputs", str(REPO / "outputs" / ".." / "tests" / TOKEN)), kind="writes"),
    "name-newline": Refusal(tiny("x").replace(f"name: {TOKEN}_x", f'name: "{TOKEN}\\n"'), "name: not a plain folder name",
                            kind="writes"),
    "name-dotdot": Refusal(tiny("x").replace(f"name: {TOKEN}_x", "name: ../escaped"), "name:", kind="writes"),
    "name-absolute": Refusal(tiny("x").replace(f"name: {TOKEN}_x", f"name: /tmp/{TOKEN}"), "name:", kind="writes"),
    # truncated data files (item 5)
    "fashion-truncated": Refusal(tiny("fmcut").replace(f"root: {DATA}", "root: {case}/fm"),
                                 "train-labels-idx1-ubyte is damaged (30,000 bytes, its header (60,000) says 60,008",
                                 setup=lambda c: _fashion_copy(c, _cut("train-labels-idx1-ubyte", 30000)), kind="damage"),
    "fashion-zero-bytes": Refusal(tiny("fmzero").replace(f"root: {DATA}", "root: {case}/fm"),
                                  "t10k-images-idx3-ubyte is damaged (0 bytes, too short",
                                  setup=lambda c: _fashion_copy(c, _cut("t10k-images-idx3-ubyte", None)), kind="damage"),
    # outputs folders that cannot take the run (item 6)
    "outputs-proc": Refusal(tiny("proc"), "--outputs: cannot write into /proc/x", ("--outputs", "/proc/x"), kind="outputs"),
    "outputs-dev-null": Refusal(tiny("devnull"), "--outputs: /dev/null is a file", ("--outputs", os.devnull),
                                kind="outputs"),
    "outputs-a-file": Refusal(tiny("file"), "is a file, not a folder", ("--outputs", "{case}/plain"), setup=_plain_file,
                              kind="outputs"),
    "outputs-read-only": Refusal(tiny("ro"), "--outputs: cannot write into", ("--outputs", "{case}/ro"), kind="outputs"),
    "outputs-disk-full": Refusal(tiny("full"), "needs about", ("--outputs", "{case}/full"), kind="outputs"),
    # smaller (item 7, 8)
    "stale-shared-memory": Refusal("x: &a [*a]\n", "YAML anchors and aliases", setup=_plant_shm, kind="orphans"),
    "ray-not-ray-listening": Refusal(tiny("ray").replace("  workers: 1", "  backend: ray\n  address: 127.0.0.1:{port}"),
                                     "engine.address: no Ray cluster answered", setup=_listener, kind="ray"),
    "ray-closed-port": Refusal(tiny("rayclosed").replace("  workers: 1",
                                                         f"  backend: ray\n  address: 127.0.0.1:{_closed_port()}"),
                               "engine.address: cannot reach the Ray cluster", kind="ray"),
    "ray-bad-address": Refusal(tiny("raybad").replace("  workers: 1", "  backend: ray\n  address: http://head:6379"),
                               "engine.address: expected host:port", kind="ray"),
    "only-reversed": Refusal(tiny("only"), "--only: the range '03-01' is reversed", ("--only", "03-01"), kind="smaller"),
}

# refused by a `python -m mia_nb` process of their own: the real command line prints the one line (one per class)
APART = ("billion-laughs-12", "n-boot-1e12", "outputs-notebooks", "data-command-not-empty")


def _mount(where: Path, options: str) -> bool:
    """Mount a small tmpfs at `where` (root only); whether it worked."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True).returncode == 0


def _unmount(mounts: list[Path]) -> None:
    for m in reversed(mounts):
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


def _special_outputs(case_name: str, case: Path, mounts: list[Path]) -> str | None:
    """Make the read-only or full outputs folder of a case; the reason when this machine cannot."""
    if case_name == "outputs-read-only":
        if _mount(case / "ro", "ro,size=1m"):
            mounts.append(case / "ro")
        elif os.geteuid() != 0:
            (case / "ro").chmod(0o555)
        else:
            return "root and no tmpfs mount: a read-only folder cannot be made"
    if case_name == "outputs-disk-full":
        if not _mount(case / "full", "size=4m"):
            return "no tmpfs mount: a full disk cannot be made"
        mounts.append(case / "full")
    return None


def run_refusal(name: str, case: Path, stand_ins: Path, runner: Callable[[list[str], Path], Run]) -> dict:
    """Set up and run one refusal case with `runner` (`here` or `cli`); what the test checks."""
    spec = REFUSALS[name]
    case.mkdir(parents=True)
    mounts: list[Path] = []
    try:
        if spec.setup:
            spec.setup(case)
        skipped = _special_outputs(name, case, mounts)
        if skipped:
            return {"skipped": skipped, "case": case}
        fill = {"case": str(case), "port": (case / "port").read_text() if (case / "port").exists() else ""}
        params = case / "profile.yaml"
        if isinstance(spec.profile, bytes):
            params.write_bytes(spec.profile)
        elif isinstance(spec.profile, str):
            params.write_text(spec.profile.replace("{case}", fill["case"]).replace("{port}", fill["port"]),
                              encoding="utf-8")
        args = [a.format(**fill) for a in spec.args]
        if spec.command == "data":
            argv = ["data", *args]
        else:
            argv = ["run", *([] if "--params" in args else ["--params", str(params)]), *args]
            argv += [] if "--outputs" in args else ["--outputs", str(case / "out")]
            argv += ["--notebooks", str(stand_ins)]
        before = files_under(case)
        run = runner(argv, case)
        return {"run": run, "before": before, "after": files_under(case), "case": case}
    finally:
        _unmount(mounts)


@pytest.fixture(scope="module")
def refused(background, stand_ins, tmp_path_factory) -> Iterator[Callable[[str], dict]]:
    """A refusal case's outcome, run on first use: in this process, or read from its own process (`APART`)."""
    root = tmp_path_factory.mktemp("cases")
    done: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in done:
            if name in APART:
                done[name] = background.result(name)
            else:
                if name == "stale-shared-memory":  # no process of this file starts (and cleans) after planting
                    assert background.all_started.wait(600), "the processes of this file did not start"
                with SHM:  # a case that planted a dead run's leftovers must be the one that finds them
                    done[name] = run_refusal(name, root / name, stand_ins, here)
        return done[name]

    yield get
    for s in LISTENERS:
        s.close()


# ------------------------------------------------------------------------------------ healed in one rerun

@dataclass
class Heal:
    """A case that damages a finished run and reruns it: the damage, the rerun's arguments, and its checks."""

    damage: Callable[[Path], None]
    expected: str  # on the console (stderr)
    only: str | None = None  # the rerun's --only; a refusal naming `--force --only <fix>` then that command
    fix: str | None = None
    force: bool = False  # the rerun forces the notebooks (a store entry is checked when a notebook reads it)
    kind: str = "heal"
    kernel: bool = False  # the notebooks run in kernels (the heal happens inside one), not in this process
    extra: dict = field(default_factory=dict)


def _store_file(base: Path, role: str) -> Path:
    """The stored model of a role (from results/models.csv, which names its key)."""
    models = pd.read_csv(base / "results" / "models.csv")
    key = models.loc[models.role == role, "key"].iloc[0]
    return base / "store" / "model" / f"{key}.pt"


class Planted:
    """Unpickling it touches a file: what a crafted store file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _crafted_model(base: Path) -> None:
    path = _store_file(base, "target")
    path.write_bytes(pickle.dumps({"format": 2, "config": {}, "payload": Planted(base.parent.parent / "pwned")}))


def _truncated_model(base: Path) -> None:
    path = _store_file(base, "shadow")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zero_byte_model(base: Path) -> None:
    _store_file(base, "target").write_bytes(b"")


def _garbage_splits(base: Path) -> None:
    (base / "data" / "splits.npz").write_bytes(b"\x00garbage" * 40)


def _damaged_table(base: Path) -> None:
    (base / "results" / "attacks.csv").write_text("variant,attack\ngarb")


def _deleted_table(base: Path) -> None:
    (base / "results" / "models.csv").unlink()


def _truncated_probe(base: Path) -> None:
    """The store entry notebook 02 reads itself (the runner never does): only its kernel can heal it."""
    path = Store(base / "store").path("labels", {"probe": 0})  # the tiny profile's seed
    assert path.is_file(), path
    path.write_bytes(path.read_bytes()[:100])


def _edited_summary(base: Path) -> None:
    path = base / "results" / "checked.csv"
    path.write_text(path.read_text().replace("True", "False"))


LANES: dict[str, dict[str, Heal]] = {  # two lanes of cases (their ids), both on the same finished run
    "a": {
        "crafted-pickle-model": Heal(_crafted_model, "could not be loaded", kind="store"),
        "truncated-model": Heal(_truncated_model, "could not be loaded", kind="damage"),
        "zero-byte-model": Heal(_zero_byte_model, "could not be loaded", kind="damage"),
        "garbage-splits": Heal(_garbage_splits, "splits.npz changed", kind="damage"),
        "garbage-splits-only-02": Heal(_garbage_splits, "", only="02", fix="01", kind="damage"),
    },
    "b": {
        "damaged-results-table": Heal(_damaged_table, "attacks.csv changed", kind="damage"),
        "deleted-results-table": Heal(_deleted_table, "models.csv is missing", kind="damage"),
        "damaged-table-only-03": Heal(_damaged_table, "", only="03", fix="02", kind="damage"),
        "edited-summary-table": Heal(_edited_summary, "checked.csv changed", kind="damage"),
        "entry-healed-in-a-kernel": Heal(_truncated_probe, "02_train: store: ", only="02", force=True, kind="damage",
                                         kernel=True),
    },
}


@pytest.fixture(scope="module")
def healed(stand_ins, tmp_path_factory) -> dict:
    """A tiny run, then each heal case: restore the first run, damage it, rerun it. The same folder each time: an
    executed notebook is up to date only for the same profile and outputs paths."""
    folder = tmp_path_factory.mktemp("heal")
    params = folder / "profile.yaml"
    params.write_text(tiny("heal"))
    out = folder / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "execute", execute_here)
        first = here(_args(params, out, stand_ins), folder)
    results: dict = {"first": first, "folder": folder}
    if first.rc != 0:
        return results
    base = out / f"{TOKEN}_heal"
    pristine = folder / "pristine"
    shutil.copytree(out, pristine, symlinks=True)
    for name, heal in (item for lane in LANES.values() for item in lane.items()):
        shutil.rmtree(out)
        shutil.copytree(pristine, out, symlinks=True)
        heal.damage(base)
        before = files_under(folder)
        with pytest.MonkeyPatch.context() as mp:
            if not heal.kernel:
                mp.setattr(pipeline, "execute", execute_here)
            runs = [here(_args(params, out, stand_ins, heal.only, heal.force), folder)]
            if heal.fix is not None and runs[0].rc == 2:
                line = runs[0].lines()[-1]
                command = line.split("rebuild it with: ", 1)[-1].split()
                runs.append(here([*command[3:], "--notebooks", str(stand_ins)], folder))  # drop "python -m mia_nb"
        aside = sorted(p.relative_to(base).as_posix() for p in base.rglob("*.corrupt"))
        results[name] = {"runs": runs, "before": before, "after": files_under(folder), "base": base, "aside": aside,
                         "pristine": pristine / base.name}
    return results


# ------------------------------------------------------------------------------------ processes of their own

def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    found, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _workers(pid: int) -> list[int]:
    """The loky workers below `pid`."""
    return loky_workers(_descendants(pid))


def _runner(args: list[str], folder: Path, stem: str, **popen) -> tuple[subprocess.Popen, Path, Path]:
    """A `python -m mia_nb` process in `folder`, its output in <stem>.out and <stem>.err there."""
    out, err = folder / f"{stem}.out", folder / f"{stem}.err"
    with open(err, "w") as fe, open(out, "w") as fo:
        proc = subprocess.Popen([sys.executable, "-m", "mia_nb", *args], cwd=folder, stdout=fo, stderr=fe, env=ENV,
                                **popen)
    return proc, out, err


def _past_start(proc: subprocess.Popen, out: Path) -> bool:
    """Whether a runner has passed its start (where it cleans /dev/shm): its first notebook began, or it ended."""
    return proc.poll() is not None or "[1/" in out.read_text()


def run_sigkill(folder: Path, stand_ins: Path, others: list[threading.Event], all_started: threading.Event) -> dict:
    """SIGKILL the runner while its two workers train; which of its processes are alive 5 s later. The kill waits
    for the other processes of this file to pass their start, and `SHM` is held from the kill to the look at
    /dev/shm: no start cleans the dead runner's leftovers meanwhile."""
    folder.mkdir(parents=True)
    params = folder / "profile.yaml"
    params.write_text(tiny("killed", n_train=1000, epochs=2, workers=2))
    args = _args(params, folder / "out", stand_ins)
    try:
        proc, out, logs = _runner(args, folder, "killed")
        deadline, workers = time.time() + 300, []
        while time.time() < deadline and proc.poll() is None:
            workers = _workers(proc.pid)
            if len(workers) >= 2:
                break
            time.sleep(0.2)
        for event in others:  # they started with this one: by now past their start
            event.wait(300)
    finally:
        all_started.set()
    time.sleep(1.5)  # the workers are past their start and training
    with SHM:
        below = _descendants(proc.pid)
        started = proc.poll() is None and len(workers) >= 2
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        time.sleep(KILL_GRACE_S)
        left = [p for p in below if _alive(p)]
        shm = [p.name for p in Path("/dev/shm").iterdir() if str(proc.pid) in p.name] if Path("/dev/shm").is_dir() else []
    for p in left:  # the test fails on them; do not leave them running
        os.kill(p, signal.SIGKILL)
    return {"started": started, "workers": workers, "below": below, "left": left, "shm": shm, "args": args,
            "folder": folder, "stderr": logs.read_text(), "pid": proc.pid}


def run_sigint(folder: Path, stand_ins: Path, started_event: threading.Event) -> dict:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while two workers train."""
    folder.mkdir(parents=True)
    params = folder / "profile.yaml"
    params.write_text(tiny("interrupted", n_train=1000, epochs=2, workers=2))
    try:
        proc, out, logs = _runner(_args(params, folder / "out", stand_ins), folder, "interrupted",
                                  start_new_session=True,
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline, workers = time.time() + 300, []
        while time.time() < deadline and proc.poll() is None and len(workers) < 2:
            if _past_start(proc, out):
                started_event.set()
            workers = _workers(proc.pid)
            time.sleep(0.2)
    finally:
        started_event.set()
    time.sleep(1.5)
    below = _descendants(proc.pid)
    started = proc.poll() is None and len(workers) >= 2
    os.killpg(proc.pid, signal.SIGINT)
    try:
        rc = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    time.sleep(KILL_GRACE_S)
    left = [p for p in below if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    return {"started": started, "rc": rc, "left": left, "stderr": logs.read_text()}


def run_disk_fills(folder: Path, stand_ins: Path, mounts: list[Path], started_event: threading.Event) -> dict:
    """A run whose disk fills up after the checks: the run ends in one line naming --outputs and no space."""
    try:
        folder.mkdir(parents=True)
        if not _mount(folder / "disk", "size=48m"):
            return {"skipped": "no tmpfs mount: a disk cannot be filled"}
        mounts.append(folder / "disk")
        params = folder / "profile.yaml"
        params.write_text(tiny("fills"))
        out = folder / "disk"
        proc, stdout, stderr = _runner(_args(params, out, stand_ins), folder, "fills")
        deadline = time.time() + 120
        while time.time() < deadline and not _past_start(proc, stdout):
            time.sleep(0.1)
    finally:
        started_event.set()
    try:  # fill the disk: every later write of the run fails with ENOSPC
        with open(out / "ballast", "wb") as f:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
    except OSError:
        pass
    rc = proc.wait(timeout=600)
    return {"rc": rc, "err": stderr.read_text(), "out": stdout.read_text(), "started": "[1/" in stdout.read_text()}


def run_apart(name: str, case: Path, stand_ins: Path, done: threading.Event) -> dict:
    """A refusal case in a `python -m mia_nb` process of its own."""
    try:
        return run_refusal(name, case, stand_ins, cli)
    finally:
        done.set()


@dataclass
class Background:
    """The cases in processes of their own, running: their outcomes once done, and whether every process of
    this file has passed its start."""

    futures: dict[str, Future]
    all_started: threading.Event

    def result(self, name: str) -> dict:
        """The outcome of a case (waiting for it)."""
        return self.futures[name].result(timeout=900)


@pytest.fixture(scope="module", autouse=True)
def background(stand_ins, tmp_path_factory) -> Iterator[Background]:
    """Start the cases that need processes of their own when the module starts; they run while the in-process
    cases do."""
    root = tmp_path_factory.mktemp("apart")
    mounts: list[Path] = []
    events = {name: threading.Event() for name in (*APART, "sigint", "disk-fills")}
    all_started = threading.Event()
    pool = ThreadPoolExecutor(len(events) + 1)
    futures = {name: pool.submit(run_apart, name, root / "cases" / name, stand_ins, events[name]) for name in APART}
    futures["sigint"] = pool.submit(run_sigint, root / "sigint", stand_ins, events["sigint"])
    futures["disk-fills"] = pool.submit(run_disk_fills, root / "fills", stand_ins, mounts, events["disk-fills"])
    futures["sigkill"] = pool.submit(run_sigkill, root / "sigkill", stand_ins, list(events.values()), all_started)
    try:
        yield Background(futures, all_started)
    finally:
        pool.shutdown(wait=True)
        _unmount(mounts)


# ------------------------------------------------------------------------------------ the tests

@pytest.mark.parametrize("lane, name", [(lane, name) for lane in LANES for name in LANES[lane]])
def test_damage_is_healed_in_one_rerun_or_named_with_a_command_that_fixes_it(healed, lane, name):
    assert healed["first"].rc == 0, healed["first"].err[-3000:]
    case, heal = healed[name], LANES[lane][name]
    runs, base, pristine = case["runs"], case["base"], case["pristine"]
    if heal.fix is None:
        assert len(runs) == 1 and runs[0].rc == 0, runs[0].err[-3000:]
        assert heal.expected in runs[0].err, runs[0].err[-3000:]  # the heal line reached the console
        assert "Traceback" not in runs[0].err
    else:
        first = runs[0]
        assert first.rc == 2 and len(first.lines()) == 1, first.err
        assert f"--force --only {heal.fix}" in first.lines()[0], first.lines()[0]
        assert "[1/" not in first.out  # refused before work
        assert len(runs) == 2 and runs[1].rc == 0, runs[1].err[-3000:]  # the named command fixes it
    for table in ("attacks.csv", "checked.csv", "splits.csv"):
        assert (base / "results" / table).read_bytes() == (pristine / "results" / table).read_bytes(), table
    models, first_models = (pd.read_csv(b / "results" / "models.csv") for b in (base, pristine))
    timing = [c for c in models.columns if c.endswith("_seconds")]  # a model trained again took its own time
    pd.testing.assert_frame_equal(models.drop(columns=timing), first_models.drop(columns=timing))
    assert not (healed["folder"] / "pwned").exists()  # the crafted pickle ran nothing
    parts = np.load(base / "data" / "splits.npz", allow_pickle=False)
    again = np.load(pristine / "data" / "splits.npz", allow_pickle=False)
    assert sorted(parts.files) == sorted(again.files) and all(np.array_equal(parts[k], again[k]) for k in parts.files)
    new = case["after"] - case["before"]
    out = healed["folder"] / "out"
    assert not [p for p in new if not str(p).startswith(str(out)) and ".logs" not in str(p)], sorted(new)


def test_a_crafted_pickle_is_moved_aside_not_run(healed):
    case = healed["crafted-pickle-model"]
    assert [p for p in case["aside"] if p.startswith("store/model/")], case["aside"]
    assert "UserWarning" not in case["runs"][0].err  # the refusal of the pickle is the one heal line
    assert not (healed["folder"] / "pwned").exists()
    assert not Path("pwned").exists()


# in this process first, then the case that waits for every process of this file to start, then those processes
ORDER = [n for n in REFUSALS if n not in APART and n != "stale-shared-memory"] + ["stale-shared-memory", *APART]


@pytest.mark.parametrize("name", ORDER)
def test_refused_in_one_line_before_any_work(refused, name):
    got = refused(name)
    if "skipped" in got:
        pytest.skip(got["skipped"])
    run, case = got["run"], got["case"]
    lines = run.lines()
    assert run.rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), run.err[-2000:]
    assert REFUSALS[name].expected in lines[0], lines[0]
    assert "Traceback" not in run.err and "[1/" not in run.out, run.out
    new = got["after"] - got["before"]
    assert not [p for p in new if not str(p).startswith(str(case / "out"))], sorted(new)  # nothing outside outputs
    assert not (case / "out").exists() or not any((case / "out").rglob("*.ipynb"))  # and no work inside
    assert not [p for p in leaked() if name in p.name or "escaped" in p.name]


def test_the_data_command_reinstalls_a_truncated_file_it_names(refused):
    """The command the truncated-file line names works: it moves the file aside and installs it again."""
    if not all((DEBIAN_FASHION_MNIST / f"{n}.gz").is_file() for n in FASHION_FILES):
        pytest.skip("no Debian dataset-fashion-mnist to reinstall from")
    got = refused("fashion-truncated")
    case, line = got["case"], got["run"].lines()[0]
    command = line.split("reinstall it with: ", 1)[1].split()
    assert command[:4] == ["python", "-m", "mia_nb", "data"]
    run = here(command[3:], case)
    raw = case / "fm" / "FashionMNIST" / "raw"
    assert run.rc == 0 and "moved aside to train-labels-idx1-ubyte.corrupt" in run.err, run.err
    assert all(idx_problem(raw / n) is None for n in FASHION_FILES)
    original = DATA / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte"
    assert (raw / "train-labels-idx1-ubyte").read_bytes() == original.read_bytes()
    assert (DATA / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte").stat().st_size == 60008  # the original untouched


def test_a_data_root_that_holds_something_else_is_left_as_it_was(refused):
    for name in ("data-root-not-empty", "data-root-dotdot", "data-command-not-empty"):
        folder = refused(name)["case"] / "elsewhere"
        assert sorted(p.name for p in folder.iterdir()) == ["passwd"], name


def test_a_killed_runs_shared_memory_is_cleaned_at_the_next_start(refused):
    pid = (refused("stale-shared-memory")["case"] / "planted").read_text()
    prefixes = (f"sem.loky-{pid}-", f"joblib_memmapping_folder_{pid}_")
    left = [p.name for p in Path("/dev/shm").iterdir() if p.name.startswith(prefixes)]
    assert not left


def test_the_ray_handshake_is_bounded(refused):
    run = refused("ray-not-ray-listening")["run"]
    assert run.seconds < 60, run.seconds  # it was over 200 s of ray.init retries


def test_sigkill_during_training_leaves_no_worker_and_the_rerun_finishes(background, monkeypatch):
    got = background.result("sigkill")
    assert got["started"], got["stderr"][-2000:]
    assert not got["left"], f"{len(got['left'])} of {len(got['below'])} processes alive {KILL_GRACE_S:g} s after SIGKILL"
    assert not got["shm"], got["shm"]
    assert "leaked" not in got["stderr"] and "Traceback" not in got["stderr"]
    monkeypatch.setattr(pipeline, "execute", execute_here)
    rerun = here(got["args"], got["folder"])
    assert rerun.rc == 0, rerun.err[-3000:]
    assert "leaked" not in rerun.err


def test_ctrl_c_during_training_ends_in_one_line_without_a_leak_warning(background):
    got = background.result("sigint")
    assert got["started"], got["stderr"][-2000:]
    lines = [ln for ln in got["stderr"].replace("\r", "\n").splitlines() if ln.strip() and "job/s" not in ln]
    assert got["rc"] == 130 and lines[-1].startswith("interrupted"), got["stderr"][-3000:]
    assert "leaked" not in got["stderr"] and "Traceback" not in got["stderr"] and "Warning" not in got["stderr"]
    assert not got["left"], got["left"]


def test_a_disk_that_fills_mid_run_ends_in_one_line(background):
    got = background.result("disk-fills")
    if "skipped" in got:
        pytest.skip(got["skipped"])
    assert got["started"], got["out"]
    lines = [ln for ln in got["err"].replace("\r", "\n").splitlines() if ln.strip() and "job/s" not in ln]
    assert got["rc"] == 2 and len(lines) == 1 and lines[-1].startswith("error: "), got["err"][-3000:]
    assert "--outputs: no space left" in lines[-1], lines[-1]
    assert "Traceback" not in got["err"]


def test_nothing_holding_the_token_leaked_outside_the_outputs_folders(background):
    for name in background.futures:  # every process of this file has ended
        background.result(name)
    assert not leaked()


CASES = {**{name: spec.kind for name, spec in REFUSALS.items()},
         **{name: heal.kind for lane in LANES.values() for name, heal in lane.items()},
         "sigkill-during-training": "orphans", "sigint-during-training": "orphans", "disk-fills-mid-run": "outputs"}


def test_the_table_has_sixty_cases_with_the_untrusted_ones():
    from test_untrusted import CLI_CASES
    assert len(CASES) + len(CLI_CASES) >= 60
    assert {"yaml", "count", "writes", "damage", "outputs", "orphans", "ray", "store"} <= set(CASES.values())
