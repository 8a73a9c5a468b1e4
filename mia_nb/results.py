"""Result tables under outputs/<profile>/results/: rows are upserted, files written atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .store import atomic_write


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Atomically write a CSV without the index."""
    return atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


def read_csv(path: str | Path, what: str = "") -> pd.DataFrame:
    """Read a results CSV; a one-line error names the notebook to run when it is missing."""
    path = Path(path)
    if not path.is_file():
        hint = f": run {what} first" if what else ""
        raise FileNotFoundError(f"{path} not found{hint}")
    return pd.read_csv(path)


def upsert_csv(df: pd.DataFrame, path: str | Path, keys: list[str]) -> pd.DataFrame:
    """Replace the rows of `path` whose `keys` match rows of `df`, append the rest; return the table."""
    path = Path(path)
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise ValueError(f"rows for {path.name} lack key columns {missing}")
    if path.is_file() and path.stat().st_size > 0:
        old = pd.read_csv(path)
        if all(k in old.columns for k in keys):
            new_keys = set(map(tuple, df[keys].astype(str).to_numpy()))
            keep = [tuple(r) not in new_keys for r in old[keys].astype(str).to_numpy()]
            old = old[keep]
        df = pd.concat([old, df], ignore_index=True) if len(old) else df
    write_csv(df, path)
    return df
