"""JupyterLab for the study (`make lab`): a notebook saved under notebooks/ keeps its committed form.

The repository's `jupyter_server_config.py` sets `pre_save_hook` as the server's ContentsManager pre-save hook.
On every save (autosave included) of a notebook inside notebooks/, the file written has no outputs, no
execution counts and none of what the editor records on its own (widget state, timings, the kernel's display
name and language version, cell ids the committed file does not have): running cells in JupyterLab never
dirties the repository, and the runner's fingerprint (`mia_nb.runner.plan.source_of`) sees only real edits.
The browser keeps showing the outputs. Notebooks elsewhere are saved as they are: the executed copies under
outputs/ are a run's record (the report renders them) and git ignores that folder.

Imports nothing heavy (no torch): the server process imports this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mia_nb import REPO_ROOT

COMMITTED = "notebooks"  # the folder, under the server's root or the repository, whose notebooks are committed
EDITOR_CELL_KEYS = ("execution", "collapsed", "scrolled")  # cell metadata an editor writes about a run or a view
EDITOR_NOTEBOOK_KEYS = ("widgets",)  # notebook metadata holding widget state: outputs by another name


def strip_outputs(nb: dict[str, Any]) -> None:
    """Remove, in place, every code cell's outputs and execution count and the run / view state an editor
    records in cell and notebook metadata."""
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {})
        for key in EDITOR_CELL_KEYS:
            meta.pop(key, None)
        jupyter = meta.get("jupyter")
        if isinstance(jupyter, dict):
            jupyter.pop("outputs_hidden", None)
            if not jupyter:
                del meta["jupyter"]
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    for key in EDITOR_NOTEBOOK_KEYS:
        nb.get("metadata", {}).pop(key, None)


def keep_committed_form(nb: dict[str, Any], on_disk: dict[str, Any] | None) -> None:
    """Undo, in place, what opening a notebook in JupyterLab changes without an edit: `language_info` shrinks to
    the language's name; the kernelspec is the file's while it names the same kernel; cell ids go, and the
    format's minor version is the file's, when the file on disk has none (nbformat 4.4)."""
    meta = nb.setdefault("metadata", {})
    language = meta.get("language_info")
    if isinstance(language, dict) and "name" in language:
        meta["language_info"] = {"name": language["name"]}
    if not on_disk:
        return
    old_meta = on_disk.get("metadata", {})
    old_kernel, kernel = old_meta.get("kernelspec"), meta.get("kernelspec")
    if isinstance(old_kernel, dict) and isinstance(kernel, dict) and old_kernel.get("name") == kernel.get("name"):
        meta["kernelspec"] = old_kernel
    if on_disk.get("nbformat") == nb.get("nbformat") and not any("id" in c for c in on_disk.get("cells", [])):
        for cell in nb.get("cells", []):
            cell.pop("id", None)
        nb["nbformat_minor"] = min(int(nb.get("nbformat_minor", 4)), int(on_disk.get("nbformat_minor", 4)))


def is_committed(path: str, root_dir: str | Path, repo_root: Path = REPO_ROOT) -> bool:
    """Whether the server path `path` (relative to the server's `root_dir`) is a file inside notebooks/: the
    server root's or the repository's."""
    target = (Path(root_dir) / path.lstrip("/")).resolve()
    folders = {(Path(root_dir) / COMMITTED).resolve(), (Path(repo_root) / COMMITTED).resolve()}
    return any(target.is_relative_to(folder) and target != folder for folder in folders)


def read_on_disk(file: Path) -> dict[str, Any] | None:
    """The notebook JSON at `file`, or None when there is none or it cannot be read (a new or damaged file)."""
    try:
        found = json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def pre_save_hook(model: dict[str, Any], path: str, contents_manager: Any = None, **kwargs: Any) -> None:
    """The ContentsManager pre-save hook: a notebook saved inside notebooks/ is written in its committed form
    (`strip_outputs`, `keep_committed_form`); anything else is left as it is."""
    content = model.get("content")
    if model.get("type") != "notebook" or not isinstance(content, dict):
        return
    root_dir = Path(getattr(contents_manager, "root_dir", None) or ".")
    if not is_committed(path, root_dir):
        return
    strip_outputs(content)
    keep_committed_form(content, read_on_disk(root_dir / path.lstrip("/")))
