"""`make lab`: notebooks saved under notebooks/ through the Jupyter server keep their committed form (no outputs),
others keep what they hold; the runner's fingerprint sees a notebook's sources and role, not its outputs."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from jupyter_server.services.contents.filemanager import FileContentsManager
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from traitlets.config.loader import PyFileConfigLoader

from mia_nb.runner.lab import is_committed, pre_save_hook, strip_outputs
from mia_nb.runner.plan import ROLE_KEY, fingerprint, list_notebooks

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "jupyter_server_config.py"
COMMITTED = list_notebooks()[-1]  # any committed notebook: outputs-free, nbformat 4.4 without cell ids


def as_jupyterlab_saves(nb: dict) -> dict:
    """The notebook as JupyterLab 4 sends it after Run All: outputs, execution counts, cell ids (format 4.5),
    the kernel's language_info and display name, timings and widget state."""
    nb = copy.deepcopy(nb)
    nb["nbformat_minor"] = 5
    for i, cell in enumerate(nb["cells"]):
        cell["id"] = f"cell-{i}"
        if cell["cell_type"] == "code":
            cell["execution_count"] = i + 1
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hello\n"},
                               {"output_type": "display_data", "metadata": {},
                                "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}}]
            cell["metadata"]["execution"] = {"iopub.status.busy": "2025-01-01T00:00:00.000000Z"}
            cell["metadata"]["scrolled"] = True
    nb["metadata"]["language_info"] = {"name": "python", "version": "3.11.2", "mimetype": "text/x-python",
                                       "codemirror_mode": {"name": "ipython", "version": 3}}
    nb["metadata"]["kernelspec"] = {**nb["metadata"]["kernelspec"], "display_name": "Python 3 (ipykernel)"}
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


def has_outputs(nb: dict) -> bool:
    """Whether any code cell of the notebook JSON holds outputs or an execution count."""
    return any(c.get("outputs") or c.get("execution_count") is not None
               for c in nb["cells"] if c["cell_type"] == "code")


@pytest.fixture
def server_root(tmp_path, monkeypatch):
    """A server root holding notebooks/ with a copy of a committed notebook; Jupyter's data (the notebook
    signatures) kept inside tmp_path."""
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    root = tmp_path / "root"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(COMMITTED, root / "notebooks" / COMMITTED.name)
    return root


def manager(cls: type, root: Path) -> FileContentsManager:
    """A Jupyter server ContentsManager of class `cls` on `root`, configured by the repository's config file."""
    config = PyFileConfigLoader(CONFIG.name, path=str(CONFIG.parent)).load_config()
    return cls(root_dir=str(root), config=config)


def save(cm: FileContentsManager, nb: dict, path: str) -> None:
    """Save a notebook model through the manager as the server's PUT /api/contents does (sync or async)."""
    result = cm.save({"type": "notebook", "format": "json", "content": nb}, path)
    if asyncio.iscoroutine(result):
        asyncio.run(result)


@pytest.mark.parametrize("cls", [FileContentsManager, AsyncLargeFileManager], ids=["sync", "jupyterlab_default"])
def test_saving_a_run_notebook_leaves_the_committed_file_unchanged(server_root, cls):
    """Run All then save: the file on disk has no outputs and is byte for byte the committed one (`git status`
    stays clean), through the server's own contents managers configured by jupyter_server_config.py."""
    cm = manager(cls, server_root)
    assert cm.pre_save_hook is pre_save_hook
    path = f"notebooks/{COMMITTED.name}"
    ran = as_jupyterlab_saves(json.loads(COMMITTED.read_text(encoding="utf-8")))
    assert has_outputs(ran)
    save(cm, ran, path)
    on_disk = (server_root / path).read_text(encoding="utf-8")
    assert not has_outputs(json.loads(on_disk))
    assert on_disk == COMMITTED.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", list_notebooks(), ids=[p.stem for p in list_notebooks()])
def test_committed_notebooks_are_written_as_jupyter_writes_them(path):
    """The server writes nbformat's form (keys sorted, one-space indent): a committed notebook in any other form
    would change on its first save in JupyterLab, outputs or not."""
    canonical = nbformat.writes(nbformat.read(path, as_version=4)) + "\n"
    assert path.read_text(encoding="utf-8") == canonical, (
        f"{path.name}: write it with json.dumps(json.loads(json.dumps(nb, sort_keys=True)), indent=1, "
        f"ensure_ascii=False) + '\\n' (keys sorted)")


def test_an_edit_is_kept_and_the_outputs_go(server_root):
    cm = manager(FileContentsManager, server_root)
    path = f"notebooks/{COMMITTED.name}"
    ran = as_jupyterlab_saves(json.loads(COMMITTED.read_text(encoding="utf-8")))
    code = next(c for c in ran["cells"] if c["cell_type"] == "code")
    code["source"] = "x = 2  # edited in JupyterLab"
    save(cm, ran, path)
    saved = json.loads((server_root / path).read_text(encoding="utf-8"))
    assert not has_outputs(saved)
    assert "x = 2  # edited in JupyterLab" in ["".join(c["source"]) for c in saved["cells"]]
    assert saved["nbformat_minor"] == 4 and not any("id" in c for c in saved["cells"])  # the file's own format
    assert saved["metadata"]["language_info"] == {"name": "python"}
    assert "widgets" not in saved["metadata"]


def test_a_new_notebook_under_notebooks_is_saved_without_outputs(server_root):
    cm = manager(FileContentsManager, server_root)
    ran = as_jupyterlab_saves(json.loads(COMMITTED.read_text(encoding="utf-8")))
    (server_root / "notebooks" / "sub").mkdir()
    save(cm, ran, "notebooks/sub/10_new.ipynb")
    saved = json.loads((server_root / "notebooks" / "sub" / "10_new.ipynb").read_text(encoding="utf-8"))
    assert not has_outputs(saved)
    assert saved["nbformat_minor"] == 5 and all("id" in c for c in saved["cells"])  # no file to follow: stays 4.5


def test_notebooks_outside_notebooks_keep_their_outputs(server_root):
    """The executed copies under outputs/ are a run's record (the report renders them; git ignores outputs/),
    and a notebook of one's own elsewhere is one's own: both are saved as they are."""
    cm = manager(FileContentsManager, server_root)
    ran = as_jupyterlab_saves(json.loads(COMMITTED.read_text(encoding="utf-8")))
    for path in ("outputs/default/seed_42/notebooks/04_attacks.ipynb", "scratch.ipynb", "notebooks.ipynb"):
        (server_root / path).parent.mkdir(parents=True, exist_ok=True)
        save(cm, ran, path)
        assert has_outputs(json.loads((server_root / path).read_text(encoding="utf-8"))), path


def test_is_committed(tmp_path):
    root = tmp_path / "root"
    assert is_committed("notebooks/04_attacks.ipynb", root, repo_root=tmp_path / "elsewhere")
    assert is_committed("/notebooks/a/b.ipynb", root, repo_root=tmp_path / "elsewhere")
    assert not is_committed("notebooks", root, repo_root=tmp_path / "elsewhere")
    assert not is_committed("outputs/default/notebooks/04_attacks.ipynb", root, repo_root=tmp_path / "elsewhere")
    assert not is_committed("notebooks/../x.ipynb", root, repo_root=tmp_path / "elsewhere")
    # a server started inside the repository's notebooks/ still protects them
    assert is_committed("04_attacks.ipynb", REPO / "notebooks")


def test_strip_outputs_keeps_sources_and_tags():
    ran = as_jupyterlab_saves(json.loads(COMMITTED.read_text(encoding="utf-8")))
    sources = [(c["source"], c["metadata"].get("tags")) for c in ran["cells"]]
    strip_outputs(ran)
    assert not has_outputs(ran)
    assert [(c["source"], c["metadata"].get("tags")) for c in ran["cells"]] == sources
    assert not any({"execution", "scrolled"} & set(c["metadata"]) for c in ran["cells"])


def test_pre_save_hook_leaves_other_models_alone(tmp_path):
    model = {"type": "file", "format": "text", "content": "hello"}
    pre_save_hook(model=copy.deepcopy(model), path="notebooks/readme.txt", contents_manager=None)
    ran = as_jupyterlab_saves(json.loads(COMMITTED.read_text(encoding="utf-8")))
    notebook = {"type": "notebook", "content": ran}
    pre_save_hook(model=notebook, path="notebooks/x.ipynb", contents_manager=FileContentsManager(root_dir=str(tmp_path)))
    assert not has_outputs(notebook["content"])


def test_fingerprint_sees_sources_and_role_not_outputs(tmp_path):
    """A notebook saved with outputs (and what JupyterLab adds) fingerprints as the clean one; a changed source,
    tag, role or kernel does not."""
    clean = json.loads(COMMITTED.read_text(encoding="utf-8"))
    params, profile = {"seed": 42}, REPO / "params" / "smoke.yaml"

    def print_of(nb: dict, folder: str) -> str:
        path = tmp_path / folder / COMMITTED.name
        path.parent.mkdir()
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return fingerprint(path, params, profile)

    reference = print_of(clean, "clean")
    assert print_of(as_jupyterlab_saves(clean), "ran") == reference
    edited = copy.deepcopy(clean)
    code = next(c for c in edited["cells"] if c["cell_type"] == "code")
    code["source"] = list(code["source"]) + ["\n# edited"]
    untagged = copy.deepcopy(clean)
    next(c for c in untagged["cells"] if c["metadata"].get("tags"))["metadata"]["tags"] = []
    moved = copy.deepcopy(clean)
    stage = clean["metadata"][ROLE_KEY]["stage"]
    moved["metadata"][ROLE_KEY] = {"stage": "per_seed" if stage == "summary" else "summary"}
    other_kernel = copy.deepcopy(clean)
    other_kernel["metadata"]["kernelspec"]["name"] = "python-other"
    changed = {name: print_of(nb, name) for name, nb in (("edited", edited), ("untagged", untagged),
                                                          ("moved", moved), ("kernel", other_kernel))}
    assert all(p != reference for p in changed.values()), changed


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # starts a real JupyterLab server process (a few seconds)
def test_jupyterlab_started_as_make_lab_does_saves_clean_notebooks(server_root, tmp_path):
    """`jupyter lab --config=jupyter_server_config.py` (the Makefile's `lab` command) on a root holding notebooks/:
    a notebook with outputs PUT through the REST API, as JupyterLab's autosave does, lands on disk without them."""
    make = shutil.which("make")
    if make:  # the command the test starts is the one `make lab` runs
        dry = subprocess.run([make, "-n", "-s", "lab"], cwd=REPO, capture_output=True, text=True, timeout=60).stdout
        assert f"--config={CONFIG}" in dry and "jupyter lab" in dry, dry
    port, token = free_port(), "mia-nb-test"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter"), "lab", f"--config={CONFIG}", f"--ServerApp.root_dir={server_root}",
         "--no-browser", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", "--ServerApp.ip=127.0.0.1",
         *(["--allow-root"] if os.geteuid() == 0 else [])],  # a container's root user
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        path = f"notebooks/{COMMITTED.name}"
        ran = as_jupyterlab_saves(json.loads(COMMITTED.read_text(encoding="utf-8")))
        body = json.dumps({"type": "notebook", "format": "json", "content": ran}).encode()
        url = f"http://127.0.0.1:{port}/api/contents/{path}"
        request = urllib.request.Request(url, data=body, method="PUT",
                                         headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    assert answer.status == 200
                break
            except urllib.error.HTTPError as err:  # the server answered: no retry
                raise AssertionError(f"PUT {url}: {err.code} {err.read()[:500]!r}") from None
            except OSError:  # not listening yet
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"jupyter lab did not answer: {server.stderr.read()[-2000:]}") from None
                time.sleep(0.5)
        on_disk = (server_root / path).read_text(encoding="utf-8")
        assert not has_outputs(json.loads(on_disk))
        assert on_disk == COMMITTED.read_text(encoding="utf-8")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
