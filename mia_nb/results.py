"""Result tables under outputs/<profile>/results/: rows are upserted, files written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

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


TABLE_KEYS = {"attacks": ["variant", "attack", "nonmember_set"], "variants": ["variant"],
              "separation": ["variant"], "agreement": ["variant", "nonmember_set"], "models": ["variant", "role"]}


def aggregate(tables: list[pd.DataFrame], keys: list[str]) -> pd.DataFrame:
    """Mean and 95% t-interval over seeds of every numeric column (`<col>_lo`, `<col>_hi`, `n_seeds`)."""
    both = pd.concat(tables, ignore_index=True)
    numeric = [c for c in both.columns if c not in keys and pd.api.types.is_numeric_dtype(both[c]) and c != "seed"]
    g = both.groupby(keys, sort=False)[numeric]
    mean, sem, n = g.mean(), g.sem(), g.count()
    t = stats.t.ppf(0.975, np.maximum(n - 1, 1))
    half = sem * t
    out = mean.copy()
    for c in numeric:
        out[f"{c}_lo"] = mean[c] - half[c]
        out[f"{c}_hi"] = mean[c] + half[c]
    out["n_seeds"] = n[numeric[0]] if numeric else 0
    return out.reset_index()


def aggregate_seed_tables(results_dir: str | Path, seeds: tuple[int, ...]) -> list[Path]:
    """Write results/<table>.csv = mean and 95% interval over results/seed_<s>/<table>.csv for every table."""
    results_dir = Path(results_dir)
    written = []
    for name, keys in TABLE_KEYS.items():
        paths = [results_dir / f"seed_{s}" / f"{name}.csv" for s in seeds]
        tables = [pd.read_csv(p) for p in paths if p.is_file()]
        if not tables:
            continue
        written.append(write_csv(aggregate(tables, keys), results_dir / f"{name}.csv"))
    return written
