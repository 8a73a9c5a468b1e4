"""The paper's findings as checks on this run's result tables: measured value, interval, verdict.

Every claim is a comparison "x > reference" (or "x < reference") where x is one of this run's numbers
(or a difference of two) with a 95% interval. Verdict: `holds` when the whole interval is on the
claimed side, `does not hold` when it is entirely on the other side, `inconclusive` otherwise.
Intervals: Wilson intervals for rates (FPR over n non-members), the Hanley–McNeil standard error for
AUROC, normal approximations for differences; with several seeds, the t-interval over seeds replaces
them (aggregate tables carry `<column>_lo` / `<column>_hi`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

Z = stats.norm.ppf(0.975)
HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
NOT_RUN = "not measured"


@dataclass(frozen=True)
class Estimate:
    """A measured number with a 95% interval (lo == hi == value when there is none)."""

    value: float
    lo: float
    hi: float

    def __sub__(self, other: Estimate) -> Estimate:
        half = np.hypot(self.hi - self.lo, other.hi - other.lo) / 2
        v = self.value - other.value
        return Estimate(v, v - half, v + half)


def wilson(rate: float, n: int) -> Estimate:
    """A rate measured on n samples, with its Wilson 95% interval."""
    if not n or np.isnan(rate):
        return Estimate(float("nan"), float("nan"), float("nan"))
    k = int(round(rate * n))
    ci = stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
    return Estimate(float(rate), float(ci.low), float(ci.high))


def auroc_estimate(auc: float, n_pos: int, n_neg: int) -> Estimate:
    """AUROC with the Hanley–McNeil (1982) normal interval."""
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc ** 2) + (n_neg - 1) * (q2 - auc ** 2)) / (n_pos * n_neg)
    se = float(np.sqrt(max(var, 0.0)))
    return Estimate(float(auc), auc - Z * se, auc + Z * se)


def mean_estimate(parts: list[Estimate]) -> Estimate:
    """Mean of independent estimates, interval from the summed variances."""
    if not parts:
        return Estimate(float("nan"), float("nan"), float("nan"))
    v = float(np.mean([p.value for p in parts]))
    half = float(np.sqrt(sum(((p.hi - p.lo) / 2) ** 2 for p in parts))) / len(parts)
    return Estimate(v, v - half, v + half)


def verdict(x: Estimate, reference: float, greater: bool = True) -> str:
    """holds / does not hold / inconclusive for the claim x > reference (or x < reference)."""
    if np.isnan(x.value):
        return NOT_RUN
    lo, hi = (x.lo, x.hi) if greater else (-x.hi, -x.lo)
    ref = reference if greater else -reference
    if lo > ref:
        return HOLDS
    if hi < ref:
        return FAILS
    return INCONCLUSIVE


class Results:
    """Lookups into the attack / variant / separation tables (single run or seed aggregate)."""

    def __init__(self, attacks: pd.DataFrame, separation: pd.DataFrame | None = None,
                 agreement: pd.DataFrame | None = None):
        self.attacks = attacks
        self.separation = separation if separation is not None else pd.DataFrame()
        self.agreement = agreement if agreement is not None else pd.DataFrame()

    def row(self, variant: str, attack: str, pool: str) -> pd.Series | None:
        a = self.attacks
        hit = a[(a.variant == variant) & (a.attack == attack) & (a.nonmember_set == pool)]
        return None if hit.empty else hit.iloc[0]

    def _seeded(self, r: pd.Series, col: str) -> Estimate | None:
        if f"{col}_lo" in r.index and not np.isnan(r[f"{col}_lo"]):
            return Estimate(float(r[col]), float(r[f"{col}_lo"]), float(r[f"{col}_hi"]))
        return None

    def fpr(self, variant: str, pool: str, attack: str = "threshold") -> Estimate:
        r = self.row(variant, attack, pool)
        if r is None:
            return Estimate(float("nan"), float("nan"), float("nan"))
        return self._seeded(r, "fpr") or wilson(float(r.fpr), int(r.n_nonmembers))

    def auroc(self, variant: str, pool: str = "heldout", attack: str = "threshold") -> Estimate:
        r = self.row(variant, attack, pool)
        if r is None:
            return Estimate(float("nan"), float("nan"), float("nan"))
        return self._seeded(r, "auroc") or auroc_estimate(float(r.auroc), int(r.n_members), int(r.n_nonmembers))

    def ood_pools(self, variant: str = "vanilla") -> list[str]:
        a = self.attacks
        return sorted(set(a[(a.variant == variant) & (a.nonmember_set != "heldout")].nonmember_set))

    def mean_ood_fpr(self, variant: str, pools: list[str]) -> Estimate:
        return mean_estimate([self.fpr(variant, p) for p in pools if self.row(variant, "threshold", p) is not None])

    def distance(self, variant: str, col: str) -> Estimate:
        s = self.separation
        if s.empty or variant not in set(s.variant):
            return Estimate(float("nan"), float("nan"), float("nan"))
        r = s[s.variant == variant].iloc[0]
        return self._seeded(r, col) or Estimate(float(r[col]), float(r[col]), float(r[col]))

    def variants(self, prefix: str) -> list[str]:
        return sorted({v for v in self.attacks.variant if str(v).startswith(prefix)})


def _strongest(names: list[str], prefix: str) -> str | None:
    """The variant with the largest numeric suffix (e.g. ls_0.1 over ls_0.0083)."""
    def num(v: str) -> float:
        try:
            return float(v[len(prefix):])
        except ValueError:
            return float("-inf")
    return max(names, key=num) if names else None


def _row(claim: str, x: Estimate, reference: float, greater: bool, how: str, paper: str) -> dict:
    return {"claim": claim, "measured": x.value, "ci_lo": x.lo, "ci_hi": x.hi,
            "reference": f"{'>' if greater else '<'} {reference:g}", "compared": how, "paper": paper,
            "verdict": verdict(x, reference, greater)}


def check_claims(res: Results) -> pd.DataFrame:
    """Evaluate the paper's findings on this run's tables; one row per claim."""
    out = []
    ood = res.ood_pools()
    near_ood = [p for p in ood if p not in ("scaled255", "uniform")]
    out.append(_row("Held-out non-members get a high FPR (threshold attack)", res.fpr("vanilla", "heldout"), 0.2,
                    True, "FPR on held-out images at the shadow-learned threshold", "0.448 (ResNet-18 CIFAR-10)"))
    out.append(_row("Same-content fakes get a high FPR", res.fpr("vanilla", "gan"), 0.2, True,
                    "FPR on GAN images at the shadow-learned threshold", "0.516 (StyleGAN2 CIFAR-10 fakes)"))
    out.append(_row("Fakes are called members at least as often as held-out data",
                    res.fpr("vanilla", "gan") - res.fpr("vanilla", "heldout"), -0.05, True,
                    "FPR(GAN) − FPR(held-out), tolerance 0.05", "0.516 vs 0.448"))
    out.append(_row("× 255 inputs are almost always members", res.fpr("vanilla", "scaled255"), 0.9, True,
                    "FPR on normalised held-out images × 255", "≥ 0.998"))
    out.append(_row("Score attacks rely on the max score (threshold ≈ entropy)", _agreement(res), 0.9, True,
                    "fraction of samples on which the threshold and entropy attacks decide alike",
                    "FPRs within 0.002 of each other"))
    for prefix, name, paper_ood, paper_auc in (("ls_", "Label smoothing", "0.240 vs 0.448 (ID)", "0.871 vs 0.775"),
                                               ("llla", "LLLA", "0.282 vs 0.448 (ID)", "0.753 vs 0.775")):
        v = _strongest(res.variants(prefix), prefix) if prefix != "llla" else ("llla" if res.variants("llla") else None)
        label = v or prefix.rstrip("_")
        diff = res.mean_ood_fpr(label, near_ood) - res.mean_ood_fpr("vanilla", near_ood) if v else _nan()
        out.append(_row(f"{name} ({label}) lowers the mean OOD FPR", diff, 0.0, False,
                        "mean FPR over OOD pools (× 255 and uniform noise excluded): variant − vanilla", paper_ood))
        auc = res.auroc(label) - res.auroc("vanilla") if v else _nan()
        out.append(_row(f"{name} ({label}) keeps or raises held-out attack AUROC", auc, -0.02, True,
                        "AUROC(variant) − AUROC(vanilla), threshold attack, tolerance 0.02", paper_auc))
    l2 = _strongest(res.variants("l2_"), "l2_")
    gap = (_abs_gap(res.auroc(l2)) - _abs_gap(res.auroc("vanilla"))) if l2 else _nan()
    out.append(_row(f"L2 ({l2 or 'l2'}) moves attack AUROC towards chance", gap, 0.0, False,
                    "|AUROC − 0.5| of the variant − that of vanilla", "0.511 vs 0.775"))
    for name, variants_, greater in (("Calibration widens the member↔held-out score gap",
                                      [v for v in (_strongest(res.variants("ls_"), "ls_"), "llla") if v], True),
                                     ("Defenses narrow the member↔held-out score gap",
                                      [v for v in (l2, _temp_defense(res)) if v], False)):
        for v in variants_:
            d = res.distance(v, "w1_member_heldout") - res.distance("vanilla", "w1_member_heldout")
            out.append(_row(f"{name} ({v})", d, 0.0, greater,
                            "Wasserstein-1 of max scores, members vs held-out: variant − vanilla",
                            "LS/LLLA widen, L2/T narrow (Dogs MMPS gaps)"))
    return pd.DataFrame(out)


def _nan() -> Estimate:
    return Estimate(float("nan"), float("nan"), float("nan"))


def _abs_gap(x: Estimate) -> Estimate:
    """|x − 0.5| with the interval mapped accordingly."""
    if np.isnan(x.value):
        return x
    lo, hi = sorted((abs(x.lo - 0.5), abs(x.hi - 0.5)))
    if x.lo < 0.5 < x.hi:
        lo = 0.0
    return Estimate(abs(x.value - 0.5), lo, hi)


def _temp_defense(res: Results) -> str | None:
    temps = res.variants("temp_")
    high = [t for t in temps if t != "temp_fitted" and float(t[5:]) > 1]
    return _strongest(high, "temp_") if high else None


def _agreement(res: Results) -> Estimate:
    """Threshold/entropy decision agreement on vanilla held-out + member samples (agreement table)."""
    a = res.agreement
    if a.empty:
        return _nan()
    r = a[(a.variant == "vanilla") & (a.nonmember_set == "heldout")] if "variant" in a else a
    if r.empty:
        return _nan()
    r = r.iloc[0]
    if "agreement_lo" in r.index:
        return Estimate(float(r.agreement), float(r.agreement_lo), float(r.agreement_hi))
    return wilson(float(r.agreement), int(r.n_samples))


def load_results(results_dir: Path) -> Results:
    """The tables the claims rest on; a one-line error names the notebook that writes a missing one."""
    from .results import read_csv
    results_dir = Path(results_dir)
    attacks = read_csv(results_dir / "attacks.csv", "notebooks 04-07")
    optional = {}
    for name in ("separation", "agreement"):
        path = results_dir / f"{name}.csv"
        optional[name] = pd.read_csv(path) if path.is_file() else None
    return Results(attacks, optional["separation"], optional["agreement"])


def summary(df: pd.DataFrame) -> dict[str, int]:
    """How many claims got each verdict."""
    return {v: int((df.verdict == v).sum()) for v in (HOLDS, FAILS, INCONCLUSIVE, NOT_RUN)}
