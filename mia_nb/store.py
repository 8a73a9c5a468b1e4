"""Content-addressed artifact store and atomic file writes.

An artifact is one file holding the JSON-able config that made it, the version of the code that
made it and its payload, saved under `<root>/<kind>/<key>.pt` where key = hash of (kind, config,
code version). The code version (`mia_nb.versions.code_version`) hashes the source of the modules
that make that kind, so a rerun after a code change recomputes the kinds whose code changed and
loads the rest; `Store(root, versioned=False)` keys by (kind, config) alone. Files are written to a
temporary name in the same folder and renamed into place, so a killed run never leaves a file that
a later run would load. A file that fails to load anyway (truncated by a full disk, damaged by hand) is
moved aside as `<name>.corrupt`, named in one line on stderr, and recomputed: a rerun heals.

A store file never runs code when it is read: it is loaded with `torch.load(weights_only=True)`, which
rebuilds only tensors, numbers, strings and containers, and refuses any other object. Payloads are
therefore plain data: tensors and state dicts as they are; NumPy arrays and scalars (numeric or boolean
dtypes only, no object arrays) and pandas DataFrames (numeric, boolean or string columns) are kept as
tagged tensors and lists (`encode` / `decode`). Anything else (a fitted scikit-learn model, an arbitrary
class) is refused when it is stored, with the place in the payload that holds it; its owner stores its
state as plain data instead (e.g. `mia_nb.attacks.score_based.attack_state`). A record of another format
(`FORMAT`; the first one was a free pickle), or one whose config is not the one its name stands for, is
treated like a damaged file: moved aside, never unpickled, and recomputed once.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import sys
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from mia_nb.layout import inside
from mia_nb.versions import code_version


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


# ------------------------------------------------------------------ payloads as plain data (no pickle)

FORMAT = 2  # the record layout; 1 was a free pickle (loaded with weights_only=False)
TAG = "__store__"  # the key that marks an encoded NumPy value or DataFrame; refused in payload dicts
PLAIN = (str, int, float, bool, type(None))
ARRAY_KINDS = "biufc"  # NumPy dtype kinds a tensor holds: bool, int, unsigned, float, complex


class StoreTypeError(TypeError):
    """A payload holds something the store cannot keep without pickle; the message says where."""


def _encode_array(a: np.ndarray, where: str) -> torch.Tensor:
    """A numeric or boolean NumPy array as a tensor of the same dtype and shape."""
    if a.dtype.kind not in ARRAY_KINDS or not a.dtype.isnative:
        raise StoreTypeError(f"{where}: a NumPy array of dtype {a.dtype} cannot be stored without pickle "
                             f"(numeric or boolean arrays only)")
    if not (a.flags.c_contiguous and a.flags.writeable):
        a = np.array(a, order="C")
    return torch.from_numpy(a)


def _encode_column(s: pd.Series, where: str) -> dict[str, Any]:
    """One DataFrame column: a tensor when its dtype is numeric or boolean, else a list of plain values."""
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in ARRAY_KINDS:
        return {"array": _encode_array(s.to_numpy(), where)}
    if not (s.dtype == object or isinstance(s.dtype, pd.StringDtype)):
        raise StoreTypeError(f"{where}: a column of dtype {s.dtype} cannot be stored without pickle")
    values = s.tolist()
    bad = next((v for v in values if not isinstance(v, PLAIN)), None)
    if bad is not None:
        raise StoreTypeError(f"{where}: a {type(bad).__name__} in a text column cannot be stored without pickle")
    return {"values": values, "dtype": str(s.dtype)}


def _decode_column(col: dict[str, Any], index: pd.Index) -> pd.Series:
    """The inverse of `_encode_column`."""
    if "array" in col:
        return pd.Series(col["array"].numpy(), index=index, copy=False)
    return pd.Series(col["values"], index=index, dtype=col["dtype"])


def _encode_index(index: pd.Index, where: str) -> dict[str, Any]:
    """A RangeIndex by its range, any other flat index by its values (as a column)."""
    if not isinstance(index.name, PLAIN) or isinstance(index, pd.MultiIndex):
        raise StoreTypeError(f"{where}: a multi-level or oddly named index cannot be stored without pickle")
    if isinstance(index, pd.RangeIndex):
        return {"range": (index.start, index.stop, index.step), "name": index.name}
    column = _encode_column(pd.Series(index, index=pd.RangeIndex(len(index)), dtype=index.dtype), where)
    return {"column": column, "length": len(index), "name": index.name}


def _decode_index(enc: dict[str, Any]) -> pd.Index:
    """The inverse of `_encode_index`."""
    if "range" in enc:
        return pd.RangeIndex(*enc["range"], name=enc["name"])
    return pd.Index(_decode_column(enc["column"], pd.RangeIndex(enc["length"])), name=enc["name"])


def _encode_frame(df: pd.DataFrame, where: str) -> dict[str, Any]:
    """A DataFrame column by column, with its index and the names and dtype of its columns."""
    names = list(df.columns)
    if isinstance(df.columns, pd.MultiIndex) or not all(isinstance(n, PLAIN) for n in names):
        raise StoreTypeError(f"{where}: a DataFrame with multi-level or non-scalar column names cannot be stored")
    return {TAG: "dataframe", "index": _encode_index(df.index, f"{where}.index"),
            "names": names, "names_dtype": str(df.columns.dtype), "names_name": df.columns.name,
            "columns": [_encode_column(df.iloc[:, i], f"{where}[{n!r}]") for i, n in enumerate(names)]}


def _decode_frame(enc: dict[str, Any]) -> pd.DataFrame:
    """The inverse of `_encode_frame`."""
    index = _decode_index(enc["index"])
    df = pd.DataFrame({i: _decode_column(c, index) for i, c in enumerate(enc["columns"])}, index=index)
    df.columns = pd.Index(enc["names"], dtype=enc["names_dtype"], name=enc["names_name"])
    return df


def encode(obj: Any, where: str = "payload") -> Any:
    """`obj` as data `torch.load(weights_only=True)` reads back: tensors, plain values, lists, tuples, dicts,
    with NumPy values and DataFrames tagged; raise StoreTypeError naming where anything else sits."""
    if isinstance(obj, torch.Tensor) or type(obj) in PLAIN:
        return obj
    if isinstance(obj, np.ndarray):
        return {TAG: "ndarray", "data": _encode_array(obj, where)}
    if isinstance(obj, np.generic):
        return {TAG: "scalar", "data": _encode_array(np.asarray(obj), where)}
    if isinstance(obj, pd.DataFrame):
        return _encode_frame(obj, where)
    if type(obj) in (list, tuple):
        return type(obj)(encode(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if type(obj) in (dict, OrderedDict):
        if TAG in obj:
            raise StoreTypeError(f"{where}: the key {TAG!r} is reserved by the store")
        bad = next((k for k in obj if type(k) not in PLAIN), None)
        if bad is not None:
            raise StoreTypeError(f"{where}: a dict key of type {type(bad).__name__} cannot be stored (plain keys only)")
        out = type(obj)((k, encode(v, f"{where}[{k!r}]")) for k, v in obj.items())
        if isinstance(getattr(obj, "_metadata", None), dict):  # a module state_dict's version metadata
            out._metadata = obj._metadata  # type: ignore[attr-defined]
        return out
    raise StoreTypeError(f"{where}: a {type(obj).__module__}.{type(obj).__qualname__} cannot be stored without "
                         f"pickle (keep tensors, NumPy arrays, DataFrames, numbers, strings, lists and dicts)")


def decode(obj: Any) -> Any:
    """The inverse of `encode`."""
    if isinstance(obj, (list, tuple)):
        return type(obj)(decode(v) for v in obj)
    if not isinstance(obj, dict):
        return obj
    tag = obj.get(TAG)
    if tag == "ndarray":
        return obj["data"].numpy()
    if tag == "scalar":
        return obj["data"].numpy()[()]
    if tag == "dataframe":
        return _decode_frame(obj)
    if tag is not None:
        raise ValueError(f"unknown store tag {tag!r}")
    out = type(obj)((k, decode(v)) for k, v in obj.items())
    if isinstance(getattr(obj, "_metadata", None), dict):
        out._metadata = obj._metadata  # type: ignore[attr-defined]
    return out


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

    def key(self, kind: str, config: dict[str, Any]) -> str:
        """The artifact's key: its file name without the suffix (a model's key names it in other artifacts' configs)."""
        return self.path(kind, config).stem

    def has(self, kind: str, config: dict[str, Any]) -> bool:
        """True when the artifact exists and loads: a damaged file is moved aside here, so that whoever asks
        recomputes it now rather than finding it gone on the next load."""
        return self._load(kind, config, decoded=False) is not None  # loads it: a file that exists may not

    def get(self, kind: str, config: dict[str, Any]) -> Any | None:
        """The stored payload, or None when there is none or it fails to load (then moved aside)."""
        return self._load(kind, config, decoded=True)

    def _load(self, kind: str, config: dict[str, Any], decoded: bool) -> Any | None:
        """The checked record's payload (decoded, or as stored), None when absent; a damaged file is moved aside."""
        path = self.path(kind, config)
        if not path.is_file():
            return None
        try:
            with warnings.catch_warnings():  # a crafted file's pickle protocol would add a torch warning
                warnings.simplefilter("ignore")
                record = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles an object
            if not (isinstance(record, dict) and record.get("format") == FORMAT and "payload" in record):
                raise ValueError(f"not a store record of format {FORMAT}")
            if record.get("config") != json.loads(json.dumps(config, sort_keys=True, default=str)):
                raise ValueError("its config differs from the one its name stands for (copied or renamed by hand?)")
            return decode(record["payload"]) if decoded else record["payload"]
        except Exception as err:  # noqa: BLE001 - any load failure means: recompute
            if isinstance(err, pickle.UnpicklingError) and "weights only" in str(err).lower():
                # torch's own message would suggest loading it with weights_only=False
                err = ValueError("it holds pickled objects that are not plain data; left unread, as loading them "
                                 "could run code")
            self.quarantine(path, err)
            return None

    @staticmethod
    def quarantine(path: Path, err: BaseException) -> Path:
        """Move an unloadable artifact to `<name>.corrupt` (kept for inspection, never read); say so in one line."""
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        reason = re.split(r"(?<=\w)\. ", (str(err).strip().splitlines() or [""])[0])[0][:200]  # its first sentence
        cause = f"{type(err).__name__}: {reason}" if reason else f"{type(err).__name__}, empty or cut short"
        print(f"store: {path} could not be loaded ({cause}); moved aside to {aside.name}, recomputing",
              file=sys.stderr, flush=True)
        return aside

    def put(self, kind: str, config: dict[str, Any], payload: Any) -> Path:
        """Save `payload` atomically under the key of (kind, config, code version); StoreTypeError if it is
        not plain data (see `encode`)."""
        path = self.path(kind, config)
        plain_config = json.loads(json.dumps(config, sort_keys=True, default=str))
        record = {"format": FORMAT, "kind": kind, "config": plain_config, "code": self.code(kind),
                  "payload": encode(payload, f"{kind} payload")}
        return atomic_write(path, lambda tmp: torch.save(record, tmp))

    def get_or_make(self, kind: str, config: dict[str, Any], make: Callable[[], Any]) -> Any:
        """Load the artifact, or make, store and return it."""
        payload = self.get(kind, config)
        if payload is None:
            payload = make()
            self.put(kind, config, payload)
        return payload
