"""Result tables under outputs/<profile>/results/: rows are upserted, files written atomically, and a
multi-seed run's tables averaged over seeds. Which tables are keyed, and by what, is `mia_nb.layout.TABLE_KEYS`."""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from mia_nb.layout import TABLE_KEYS, seed_folder, seed_mean_keys
from mia_nb.store import atomic_write


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Atomically write a CSV without the index."""
    return atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


class DamagedTable(ValueError):
    """A results CSV that cannot be read back; the message names it and the command that rebuilds it."""


def _read(path: Path) -> pd.DataFrame:
    """pd.read_csv, with a damaged file (not text, cut mid-row, no header) as a one-line DamagedTable."""
    try:
        return pd.read_csv(path)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        raise DamagedTable(f"{path} is damaged ({type(err).__name__}: {reason}); rebuild it by rerunning the "
                           f"notebooks that write it: python -m mia_nb run --params <profile> --force") from None


def read_csv(path: str | Path, what: str = "") -> pd.DataFrame:
    """Read a results CSV; a one-line error names the notebook to run when it is missing, or the file when it
    is damaged."""
    path = Path(path)
    if not path.is_file():
        hint = f": run {what} first" if what else ""
        raise FileNotFoundError(f"{path} not found{hint}")
    return _read(path)


def upsert_csv(df: pd.DataFrame, path: str | Path, keys: list[str]) -> pd.DataFrame:
    """Replace the rows of `path` whose `keys` match rows of `df`, append the rest; return the table."""
    path = Path(path)
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise ValueError(f"rows for {path.name} lack key columns {missing}")
    if path.is_file() and path.stat().st_size > 0:
        try:
            old = _read(path)
        except DamagedTable as err:  # its other rows are lost: their notebooks write them again when they rerun
            aside = path.with_name(path.name + ".corrupt")
            os.replace(path, aside)
            print(f"tables: {str(err).split(';')[0]}; moved aside to {aside.name}, writing its rows afresh",
                  file=sys.stderr, flush=True)
            old = pd.DataFrame(columns=list(df.columns))
        if all(k in old.columns for k in keys):
            new_keys = set(map(tuple, df[keys].astype(str).to_numpy()))
            keep = [tuple(r) not in new_keys for r in old[keys].astype(str).to_numpy()]
            old = old[keep]
        df = pd.concat([old, df], ignore_index=True) if len(old) else df
    write_csv(df, path)
    return df


SEEDS_LO, SEEDS_HI = "_seeds_lo", "_seeds_hi"  # suffixes of a value column's 95% t-interval over seeds

# The range a results column's values cannot leave, by the column's name (these tables' own names).
_RANGES: tuple[tuple[re.Pattern[str], tuple[float, float]], ...] = (
    (re.compile(r"(tpr|fpr|precision|recall|accuracy|balanced_accuracy|auroc|aupr|agreement|ece|oe|mmps|w1)(_\w+)?"
                r"|\w+_(acc|fpr)"), (0.0, 1.0)),
    (re.compile(r"nll|train_seconds|dp_epsilon|temperature_\w+"), (0.0, math.inf)),
)


def natural_range(column: str) -> tuple[float, float] | None:
    """The range a column's values cannot leave (rates, accuracies, ECE, max scores: [0, 1]; NLL, times: >= 0)."""
    return next((span for pattern, span in _RANGES if pattern.fullmatch(column)), None)


def _kind(both: pd.DataFrame, g: pd.core.groupby.DataFrameGroupBy, col: str) -> str:
    """How a per-seed column is combined over seeds: "bound" (a seed's own X_lo / X_hi of a column X), "count"
    (n_*), "fixed" (the same in every seed of every row: identifiers, settings), "value", or "dropped"."""
    base = col.removesuffix("_lo").removesuffix("_hi")
    if base != col and base in both.columns:
        return "bound"
    numeric = pd.api.types.is_numeric_dtype(both[col])
    if numeric and col.startswith("n_"):
        return "count"
    if g[col].nunique(dropna=False).max() <= 1:
        return "fixed"
    return "value" if numeric else "dropped"


def aggregate(tables: list[pd.DataFrame], keys: list[str]) -> pd.DataFrame:
    """One row per `keys` over the seeds' tables: each column keeps its per-seed meaning, averaged over seeds.

    A value column is the mean over seeds, and its 95% t-interval over seeds is `<col>_seeds_lo` /
    `<col>_seeds_hi`, clipped to the column's `natural_range`. A seed's own interval bounds (`<col>_lo` /
    `<col>_hi`, e.g. Clopper–Pearson) are averaged and get no interval; counts (`n_*`) and columns that are
    the same in every seed (identifiers, settings) are carried (a count that differs is averaged); text
    that differs between seeds (a model's hash) is dropped. `n_seeds`: the seeds with the row."""
    both = pd.concat(tables, ignore_index=True)
    g = both.groupby(keys, sort=False, dropna=False)
    kinds = {c: _kind(both, g, c) for c in both.columns if c not in keys and c != "seed"}
    first = [c for c, k in kinds.items() if k == "fixed" or (k == "count" and g[c].nunique().max() <= 1)]
    averaged = [c for c, k in kinds.items() if k in ("value", "bound", "count") and c not in first]
    values = [c for c, k in kinds.items() if k == "value"]
    out = pd.concat([g[first].first(), g[averaged].mean()], axis=1)
    out = out[[c for c in kinds if c in out.columns]]  # the per-seed column order
    mean, sd, n = g[values].mean(), g[values].std(), g[values].count()
    half = sd / np.sqrt(n) * stats.t.ppf(0.975, np.maximum(n - 1, 1))  # NaN with one seed (no spread to use)
    for c in values:
        lo, hi = natural_range(c) or (-math.inf, math.inf)
        out[c + SEEDS_LO] = (mean[c] - half[c]).clip(lower=lo, upper=hi)
        out[c + SEEDS_HI] = (mean[c] + half[c]).clip(lower=lo, upper=hi)
    out["n_seeds"] = g.size()
    return out.reset_index()


def aggregate_seed_tables(results_dir: str | Path, seeds: tuple[int, ...]) -> list[Path]:
    """Write results/<table>.csv = `aggregate` of results/seed_<s>/<table>.csv (mean and interval over seeds)."""
    results_dir = Path(results_dir)
    written = []
    for name in TABLE_KEYS:
        paths = [seed_folder(results_dir, s) / f"{name}.csv" for s in seeds]
        tables = [_read(p) for p in paths if p.is_file()]
        if not tables:
            continue
        written.append(write_csv(aggregate(tables, seed_mean_keys(name)), results_dir / f"{name}.csv"))
    return written
