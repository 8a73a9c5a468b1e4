"""Hostile inputs and faults at the command line (issue 22): every case runs `python -m mia_nb run` (or `data`) in a
subprocess, and is refused in one line before any work or healed in one rerun; nothing is written outside its
outputs folder.

The cases run concurrently (each process spends seconds importing the runner): the refusals one process each,
the cases that need a trained run in lanes, each lane a run of a tiny profile (a few dozen images, one epoch,
three stand-in notebooks that call the package as the real ones do) damaged and rerun case after case in the
same outputs folder, restored from its first run in between. Results are collected once per module; each test
reads its case. `CASES` is the table the issue's closing note lists."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from mia_nb.data.install import DEBIAN_FASHION_MNIST, FASHION_FILES, idx_problem

pytestmark = pytest.mark.slow  # about sixty processes of the whole runner, a few of them training

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
TOKEN = "hostilecli"  # in every profile name of this file: a path holding it outside an outputs folder is a leak
AT_ONCE = 3  # processes at a time (2 cores: more only adds memory)
KILL_GRACE_S = 5.0  # the bound: no worker of a SIGKILLed runner is left this long after

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


def cli(args: list[str], cwd: Path, timeout: float = 600, **popen) -> Run:
    """`python -m mia_nb <args>` in `cwd`, its output in files (a worker left behind cannot hold a pipe open)."""
    logs = cwd.parent / f"{cwd.name}.logs"
    logs.mkdir(exist_ok=True)
    n = len(list(logs.glob("*.out")))
    out, err = logs / f"{n}.out", logs / f"{n}.err"
    t0 = time.perf_counter()
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen([sys.executable, "-m", "mia_nb", *args], cwd=cwd, stdout=fo, stderr=fe, **popen)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    return Run(args, rc, out.read_text(), err.read_text(), time.perf_counter() - t0)


def files_under(folder: Path) -> set[Path]:
    """Every path under `folder`."""
    return set(folder.rglob("*")) if folder.exists() else set()


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


def _mount(where: Path, options: str) -> bool:
    """Mount a small tmpfs at `where` (root only); whether it worked."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True).returncode == 0


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


def run_refusal(name: str, case: Path, mounts: list[Path], stand_ins: Path) -> dict:
    """Set up and run one refusal case; what the test checks."""
    spec = REFUSALS[name]
    case.mkdir(parents=True)
    if spec.setup:
        spec.setup(case)
    skipped = _special_outputs(name, case, mounts)
    if skipped:
        return {"skipped": skipped}
    fill = {"case": str(case), "port": (case / "port").read_text() if (case / "port").exists() else ""}
    params = case / "profile.yaml"
    if isinstance(spec.profile, bytes):
        params.write_bytes(spec.profile)
    elif isinstance(spec.profile, str):
        params.write_text(spec.profile.replace("{case}", fill["case"]).replace("{port}", fill["port"]), encoding="utf-8")
    args = [a.format(**fill) for a in spec.args]
    if spec.command == "data":
        argv = ["data", *args]
    else:
        argv = ["run", *([] if "--params" in args else ["--params", str(params)]), *args]
        argv += [] if "--outputs" in args else ["--outputs", str(case / "out")]
        argv += ["--notebooks", str(stand_ins)]
    before = files_under(case)
    run = cli(argv, case)
    return {"run": run, "before": before, "after": files_under(case)}


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
    [path] = [p for p in (base / "store" / "labels").glob("*.pt")]
    path.write_bytes(path.read_bytes()[:100])


def _edited_summary(base: Path) -> None:
    path = base / "results" / "checked.csv"
    path.write_text(path.read_text().replace("True", "False"))


LANES: dict[str, dict[str, Heal]] = {
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
        "entry-healed-in-a-kernel": Heal(_truncated_probe, "02_train: store: ", only="02", force=True, kind="damage"),
    },
}


def _args(params: Path, out: Path, stand_ins: Path, only: str | None = None, force: bool = False) -> list[str]:
    return (["run", "--params", str(params), "--outputs", str(out), "--notebooks", str(stand_ins)]
            + (["--force"] if force else []) + (["--only", only] if only else []))


def run_lane(lane: str, folder: Path, stand_ins: Path) -> dict:
    """A tiny run, then each case of the lane: restore the first run, damage it, rerun it."""
    folder.mkdir(parents=True)
    params = folder / "profile.yaml"
    params.write_text(tiny(f"lane_{lane}"))
    out = folder / "out"
    first = cli(_args(params, out, stand_ins), folder)
    results: dict = {"first": first}
    if first.rc != 0:
        return results
    base = out / f"{TOKEN}_lane_{lane}"
    pristine = folder / "pristine"
    shutil.copytree(out, pristine, symlinks=True)
    for name, heal in LANES[lane].items():
        shutil.rmtree(out)
        shutil.copytree(pristine, out, symlinks=True)
        heal.damage(base)
        before = files_under(folder)
        runs = [cli(_args(params, out, stand_ins, heal.only, heal.force), folder)]
        if heal.fix is not None and runs[0].rc == 2:
            line = runs[0].lines()[-1]
            command = line.split("rebuild it with: ", 1)[-1].split()
            runs.append(cli([*command[3:], "--notebooks", str(stand_ins)], folder))  # drop "python -m mia_nb"
        aside = sorted(p.relative_to(base).as_posix() for p in base.rglob("*.corrupt"))
        results[name] = {"runs": runs, "before": before, "after": files_under(folder), "base": base, "aside": aside,
                         "pristine": pristine / base.name, "command": runs[0].lines()[-1] if heal.fix else ""}
    return results


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


def run_sigkill(folder: Path, stand_ins: Path) -> dict:
    """SIGKILL the runner while its two workers train; which of its processes are alive 5 s later; then rerun."""
    folder.mkdir(parents=True)
    params = folder / "profile.yaml"
    params.write_text(tiny("killed", n_train=1000, epochs=2, workers=2))
    out = folder / "out"
    logs = folder / "killed.err"
    with open(logs, "w") as err, open(folder / "killed.out", "w") as so:
        proc = subprocess.Popen([sys.executable, "-m", "mia_nb", *_args(params, out, stand_ins)], cwd=folder,
                                stdout=so, stderr=err)
    deadline, workers = time.time() + 300, []
    while time.time() < deadline and proc.poll() is None:
        workers = [p for p in _descendants(proc.pid) if b"popen_loky" in Path(f"/proc/{p}/cmdline").read_bytes()]
        if len(workers) >= 2:
            break
        time.sleep(0.2)
    time.sleep(1.5)  # the workers are past their start and training
    below = _descendants(proc.pid)
    started = proc.poll() is None and len(workers) >= 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(KILL_GRACE_S)
    left = [p for p in below if _alive(p)]
    for p in left:  # the test fails on them; do not leave them running
        os.kill(p, signal.SIGKILL)
    shm = [p.name for p in Path("/dev/shm").iterdir() if str(proc.pid) in p.name] if Path("/dev/shm").is_dir() else []
    rerun = cli(_args(params, out, stand_ins), folder)
    return {"started": started, "workers": workers, "below": below, "left": left, "shm": shm, "rerun": rerun,
            "stderr": logs.read_text(), "pid": proc.pid}


def run_sigint(folder: Path, stand_ins: Path) -> dict:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while two workers train."""
    folder.mkdir(parents=True)
    params = folder / "profile.yaml"
    params.write_text(tiny("interrupted", n_train=1000, epochs=2, workers=2))
    logs = folder / "interrupted.err"
    with open(logs, "w") as err, open(folder / "interrupted.out", "w") as so:
        proc = subprocess.Popen([sys.executable, "-m", "mia_nb", *_args(params, folder / "out", stand_ins)],
                                cwd=folder, stdout=so, stderr=err, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline, workers = time.time() + 300, []
    while time.time() < deadline and proc.poll() is None and len(workers) < 2:
        workers = [p for p in _descendants(proc.pid) if b"popen_loky" in Path(f"/proc/{p}/cmdline").read_bytes()]
        time.sleep(0.2)
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


def run_disk_fills(folder: Path, stand_ins: Path, mounts: list[Path]) -> dict:
    """A run whose disk fills up after the checks: the run ends in one line naming --outputs and no space."""
    folder.mkdir(parents=True)
    if not _mount(folder / "disk", "size=48m"):
        return {"skipped": "no tmpfs mount: a disk cannot be filled"}
    mounts.append(folder / "disk")
    params = folder / "profile.yaml"
    params.write_text(tiny("fills"))
    out = folder / "disk"
    with open(folder / "fills.err", "w") as err, open(folder / "fills.out", "w") as so:
        proc = subprocess.Popen([sys.executable, "-m", "mia_nb", *_args(params, out, stand_ins)], cwd=folder,
                                stdout=so, stderr=err)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and "[1/" not in (folder / "fills.out").read_text():
        time.sleep(0.1)
    try:  # fill the disk: every later write of the run fails with ENOSPC
        with open(out / "ballast", "wb") as f:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
    except OSError:
        pass
    rc = proc.wait(timeout=600)
    return {"rc": rc, "err": (folder / "fills.err").read_text(), "out": (folder / "fills.out").read_text(),
            "started": "[1/" in (folder / "fills.out").read_text()}


# ------------------------------------------------------------------------------------ everything, once

@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every case of this file, run at most AT_ONCE processes at a time; the lanes' cases in turn."""
    root = tmp_path_factory.mktemp("hostile")
    stand_ins = write_stand_ins(root / "stand_ins")
    mounts: list[Path] = []
    tasks: dict[str, Callable[[], dict]] = {
        f"lane-{lane}": (lambda lane=lane: run_lane(lane, root / f"lane_{lane}", stand_ins)) for lane in LANES}
    tasks["sigkill"] = lambda: run_sigkill(root / "sigkill", stand_ins)
    tasks["sigint"] = lambda: run_sigint(root / "sigint", stand_ins)
    tasks["disk-fills"] = lambda: run_disk_fills(root / "fills", stand_ins, mounts)
    tasks.update({name: (lambda name=name: run_refusal(name, root / "cases" / name, mounts, stand_ins))
                  for name in REFUSALS})
    try:
        with ThreadPoolExecutor(AT_ONCE) as pool:
            futures = {name: pool.submit(task) for name, task in tasks.items()}
            done = {name: f.result() for name, f in futures.items()}
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", str(m)], capture_output=True)
        for s in LISTENERS:
            s.close()
    done["root"] = root
    return done


def leaked(root: Path) -> list[Path]:
    """Paths holding TOKEN outside any outputs folder: in the repository, in /tmp, in /dev/shm."""
    found = []
    for where in (REPO / "notebooks", REPO / "params", REPO / "mia_nb", REPO / "tests", REPO / "docs", REPO,
                  Path("/tmp"), Path("/dev/shm")):
        try:
            found += [p for p in where.iterdir() if TOKEN in p.name]
        except OSError:
            continue
    return found


# ------------------------------------------------------------------------------------ the tests

@pytest.mark.parametrize("name", list(REFUSALS))
def test_refused_in_one_line_before_any_work(results, name):
    got = results[name]
    if "skipped" in got:
        pytest.skip(got["skipped"])
    run, case = got["run"], results["root"] / "cases" / name
    lines = run.lines()
    assert run.rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), run.err[-2000:]
    assert REFUSALS[name].expected in lines[0], lines[0]
    assert "Traceback" not in run.err and "[1/" not in run.out, run.out
    new = got["after"] - got["before"]
    assert not [p for p in new if not str(p).startswith(str(case / "out"))], sorted(new)  # nothing outside outputs
    assert not (case / "out").exists() or not any((case / "out").rglob("*.ipynb"))  # and no work inside
    assert not [p for p in leaked(results["root"]) if name in p.name or "escaped" in p.name]


def test_the_data_command_reinstalls_a_truncated_file_it_names(results, tmp_path):
    """The command the truncated-file line names works: it moves the file aside and installs it again."""
    if not all((DEBIAN_FASHION_MNIST / f"{n}.gz").is_file() for n in FASHION_FILES):
        pytest.skip("no Debian dataset-fashion-mnist to reinstall from")
    case = results["root"] / "cases" / "fashion-truncated"
    line = results["fashion-truncated"]["run"].lines()[0]
    command = line.split("reinstall it with: ", 1)[1].split()
    assert command[:4] == ["python", "-m", "mia_nb", "data"]
    run = cli(command[3:], case)
    raw = case / "fm" / "FashionMNIST" / "raw"
    assert run.rc == 0 and "moved aside to train-labels-idx1-ubyte.corrupt" in run.err, run.err
    assert all(idx_problem(raw / n) is None for n in FASHION_FILES)
    original = DATA / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte"
    assert (raw / "train-labels-idx1-ubyte").read_bytes() == original.read_bytes()
    assert (DATA / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte").stat().st_size == 60008  # the original untouched


def test_a_data_root_that_holds_something_else_is_left_as_it_was(results):
    for name in ("data-root-not-empty", "data-root-dotdot", "data-command-not-empty"):
        folder = results["root"] / "cases" / name / "elsewhere"
        assert sorted(p.name for p in folder.iterdir()) == ["passwd"], name


def test_a_killed_runs_shared_memory_is_cleaned_at_the_next_start(results):
    pid = (results["root"] / "cases" / "stale-shared-memory" / "planted").read_text()
    prefixes = (f"sem.loky-{pid}-", f"joblib_memmapping_folder_{pid}_")
    left = [p.name for p in Path("/dev/shm").iterdir() if p.name.startswith(prefixes)]
    assert not left


def test_the_ray_handshake_is_bounded(results):
    run = results["ray-not-ray-listening"]["run"]
    assert run.seconds < 60, run.seconds  # it was over 200 s of ray.init retries


@pytest.mark.parametrize("lane, name", [(lane, name) for lane in LANES for name in LANES[lane]])
def test_damage_is_healed_in_one_rerun_or_named_with_a_command_that_fixes_it(results, lane, name):
    got = results[f"lane-{lane}"]
    assert got["first"].rc == 0, got["first"].err[-3000:]
    case, heal = got[name], LANES[lane][name]
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
    assert not (results["root"] / f"lane_{lane}" / "pwned").exists()  # the crafted pickle ran nothing
    parts = np.load(base / "data" / "splits.npz", allow_pickle=False)
    again = np.load(pristine / "data" / "splits.npz", allow_pickle=False)
    assert sorted(parts.files) == sorted(again.files) and all(np.array_equal(parts[k], again[k]) for k in parts.files)
    new = case["after"] - case["before"]
    out = results["root"] / f"lane_{lane}" / "out"
    assert not [p for p in new if not str(p).startswith(str(out)) and ".logs" not in str(p)], sorted(new)


def test_a_crafted_pickle_is_moved_aside_not_run(results):
    case = results["lane-a"]["crafted-pickle-model"]
    assert [p for p in case["aside"] if p.startswith("store/model/")], case["aside"]
    assert "UserWarning" not in case["runs"][0].err  # the refusal of the pickle is the one heal line
    assert not (results["root"] / "lane_a" / "pwned").exists()
    assert not Path("pwned").exists()


def test_sigkill_during_training_leaves_no_worker_and_the_rerun_finishes(results):
    got = results["sigkill"]
    assert got["started"], got["stderr"][-2000:]
    assert not got["left"], f"{len(got['left'])} of {len(got['below'])} processes alive {KILL_GRACE_S:g} s after SIGKILL"
    assert not got["shm"], got["shm"]
    assert "leaked" not in got["stderr"] and "Traceback" not in got["stderr"]
    rerun = got["rerun"]
    assert rerun.rc == 0, rerun.err[-3000:]
    assert "leaked" not in rerun.err


def test_ctrl_c_during_training_ends_in_one_line_without_a_leak_warning(results):
    got = results["sigint"]
    assert got["started"], got["stderr"][-2000:]
    lines = [ln for ln in got["stderr"].replace("\r", "\n").splitlines() if ln.strip() and "job/s" not in ln]
    assert got["rc"] == 130 and lines[-1].startswith("interrupted"), got["stderr"][-3000:]
    assert "leaked" not in got["stderr"] and "Traceback" not in got["stderr"] and "Warning" not in got["stderr"]
    assert not got["left"], got["left"]


def test_a_disk_that_fills_mid_run_ends_in_one_line(results):
    got = results["disk-fills"]
    if "skipped" in got:
        pytest.skip(got["skipped"])
    assert got["started"], got["out"]
    lines = [ln for ln in got["err"].replace("\r", "\n").splitlines() if ln.strip() and "job/s" not in ln]
    assert got["rc"] == 2 and len(lines) == 1 and lines[-1].startswith("error: "), got["err"][-3000:]
    assert "--outputs: no space left" in lines[-1], lines[-1]
    assert "Traceback" not in got["err"]


def test_nothing_holding_the_token_leaked_outside_the_outputs_folders(results):
    assert not leaked(results["root"])


CASES = {**{name: spec.kind for name, spec in REFUSALS.items()},
         **{name: heal.kind for lane in LANES.values() for name, heal in lane.items()},
         "sigkill-during-training": "orphans", "sigint-during-training": "orphans", "disk-fills-mid-run": "outputs"}


def test_the_table_has_sixty_cases_with_the_untrusted_ones():
    from test_untrusted import CLI_CASES
    assert len(CASES) + len(CLI_CASES) >= 60
    assert {"yaml", "count", "writes", "damage", "outputs", "orphans", "ray", "store"} <= set(CASES.values())
