"""Content-addressed artifact store and atomic file writes.

An artifact is one file holding the JSON-able config that made it, the version of the code that
made it and its payload, saved under `<root>/<kind>/<key>.pt` where key = hash of (kind, config,
code version). The code version (`mia_nb.versions.code_version`) hashes the source of the modules
that make that kind, so a rerun after a code change recomputes the kinds whose code changed and
loads the rest; `Store(root, versioned=False)` keys by (kind, config) alone. Files are written to a
temporary name in the same folder and renamed into place, so a killed run never leaves a file that
a later run would load. A file that fails to load anyway (truncated by a full disk, damaged by hand) is
moved aside as `<name>.corrupt`, named in one line on stderr, and recomputed: a rerun heals.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from .paths import inside
from .versions import code_version


def config_key(kind: str, config: dict[str, Any], code: str | None = None) -> str:
    """A short, stable hash of `kind`, a JSON-able config and (when given) the code version that made it."""
    key: dict[str, Any] = {"kind": kind, "config": config}
    if code is not None:
        key["code"] = code
    blob = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)`, then rename the temporary file onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write a text file."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write JSON (sorted keys, indented)."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


class Store:
    """Artifacts keyed by a hash of the config and (unless `versioned=False`) the code that made them."""

    def __init__(self, root: str | Path, versioned: bool = True):
        self.root = Path(root)
        self.versioned = versioned

    def code(self, kind: str) -> str | None:
        """The code version that goes into the keys of `kind` (None when the store is not versioned)."""
        return code_version(kind) if self.versioned else None

    def path(self, kind: str, config: dict[str, Any]) -> Path:
        """Where the artifact of this kind and config lives (whether or not it exists)."""
        inside(self.root, kind)  # a kind that would leave the root fails here, before the version look-up
        return inside(self.root, Path(kind) / f"{config_key(kind, config, self.code(kind))}.pt")

    def has(self, kind: str, config: dict[str, Any]) -> bool:
        """True when a complete artifact exists."""
        return self.path(kind, config).is_file()

    def get(self, kind: str, config: dict[str, Any]) -> Any | None:
        """The stored payload, or None when there is none or it fails to load (then moved aside)."""
        path = self.path(kind, config)
        if not path.is_file():
            return None
        try:
            record = torch.load(path, map_location="cpu", weights_only=False)
            if not isinstance(record, dict) or "payload" not in record or "config" not in record:
                raise ValueError("not a store record")
        except Exception as err:  # noqa: BLE001 - any load failure means: recompute
            self.quarantine(path, err)
            return None
        if record["config"] != json.loads(json.dumps(config, sort_keys=True, default=str)):
            raise RuntimeError(f"{path}: stored config differs from the requested one (hash collision?)")
        return record["payload"]

    @staticmethod
    def quarantine(path: Path, err: BaseException) -> Path:
        """Move an unloadable artifact to `<name>.corrupt` (kept for inspection) and say so in one line."""
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        print(f"store: {path} could not be loaded ({type(err).__name__}: {reason}); moved aside to {aside.name}, "
              f"recomputing", file=sys.stderr, flush=True)
        return aside

    def put(self, kind: str, config: dict[str, Any], payload: Any) -> Path:
        """Save `payload` atomically under the key of (kind, config, code version)."""
        path = self.path(kind, config)
        record = {"kind": kind, "config": json.loads(json.dumps(config, sort_keys=True, default=str)),
                  "code": self.code(kind), "payload": payload}
        return atomic_write(path, lambda tmp: torch.save(record, tmp))

    def get_or_make(self, kind: str, config: dict[str, Any], make: Callable[[], Any]) -> Any:
        """Load the artifact, or make, store and return it."""
        payload = self.get(kind, config)
        if payload is None:
            payload = make()
            self.put(kind, config, payload)
        return payload
