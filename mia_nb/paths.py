"""Path guard: everything the study writes must lie inside its outputs root."""

from __future__ import annotations

from pathlib import Path


class OutsideRootError(ValueError):
    """A path would be written outside the folder it belongs to."""


def inside(root: str | Path, path: str | Path) -> Path:
    """`path` (relative paths are taken under `root`) resolved; raise OutsideRootError if it leaves `root`."""
    base = Path(root).resolve()
    target = (base / path).resolve()  # an absolute `path` replaces `base` here, and is then caught
    if target != base and base not in target.parents:
        raise OutsideRootError(f"{path}: refusing to write outside {base} (resolves to {target})")
    return target
