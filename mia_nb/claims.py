"""The paper's findings as claims that can fail: paired statistics on per-image arrays, bands, verdicts.

Every claim is a statistic of the per-image arrays that `variants.evaluate` saved for each seed
(samples/<variant>.npz: every attack's score and decision, max scores, correctness), usually a
difference: variant − vanilla, pool − held-out, attack − attack. Both sides of a difference are
measured on the same images, so one resampling of those images is applied to both sides (paired);
pools made from the same held-out images are resampled jointly with them. With several seeds the
interval is a two-level bootstrap: seeds with replacement, images within each seed
(`mia_nb.paired.combine`).

Each claim states, before any number is looked at, its no-effect band: the smallest effect that
counts (`BANDS`). A claim `x > 0` holds when its 95% interval lies above +band, does not hold when it
lies below −band, and is inconclusive otherwise; `x < 0` mirrors it. An equivalence claim
(`|x| small`) holds when the interval lies inside [−band, +band] and does not hold when it lies
wholly outside it. A calibration variant whose ECE interval does not lie below vanilla's is not
treated as calibration: its leakage rows say "not calibrated here" instead of a verdict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import paired

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
NOT_RUN, NOT_CALIBRATED = "not measured", "not calibrated here"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_CALIBRATED, NOT_RUN)

# The smallest effects that count, fixed before looking at any result (in the statistic's own units).
BANDS = {
    "confidence": 0.02,   # max-score units: FP vs TP mean max score
    "fpr": 0.05,          # FPR differences between pools or attacks (5 points of the non-member set)
    "ood_fpr": 0.02,      # mean OOD FPR change of a variant
    "auroc": 0.01,        # AUROC (or |AUROC − 0.5|) changes
    "tpr": 0.005,         # TPR at 1% FPR changes (half a point)
    "ece": 0.005,         # ECE change that counts as calibrating
    "fpr_low": 0.005,     # FPR differences at the 1% held-out operating point (half a point)
    "separation": 0.01,   # Wasserstein-1 of max scores after the pooled quantile transform (range 0-0.5)
}
ALPHA_LOW = 0.01  # the low-FPR operating point of the TPR claims
LABEL_FREE = ("threshold", "entropy", "salem")
OOD_GROUPS = ("transform", "corruption", "other content", "generated")
LABELLED_GROUPS = ("transform", "corruption")  # the loss attack has true labels only here


@dataclass(frozen=True)
class Seed:
    """One seed's per-image arrays of every evaluated variant, and their metadata."""

    seed: int
    arrays: dict[str, dict[str, np.ndarray]]  # variant -> key -> array
    meta: dict[str, dict]  # variant -> metadata written by variants.save_samples


def load_seed(folder: Path) -> Seed:
    """Read every samples/<variant>.npz of one seed's folder; a one-line error names what to run."""
    folder = Path(folder)
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise FileNotFoundError(f"{folder}: no per-image samples; run notebooks 04-07 first")
    arrays, meta = {}, {}
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            m = json.loads(str(z["meta"]))
            arrays[m["variant"]] = {k: z[k] for k in z.files if k != "meta"}
            meta[m["variant"]] = m
    seeds = {m["seed"] for m in meta.values()}
    if len(seeds) != 1:
        raise ValueError(f"{folder}: samples from several seeds {sorted(seeds)}")
    return Seed(seeds.pop(), arrays, meta)


# ------------------------------------------------------------------------------------- resampling

@dataclass
class Draws:
    """One seed's resampling weights: members, held-out (shared by pools made from held-out), other pools."""

    seed: Seed
    n_boot: int
    cache: dict

    def members(self) -> np.ndarray:
        return self._w("members", _n(self.seed, "members"))

    def pool(self, name: str) -> np.ndarray:
        """Weights of a pool: the held-out weights (first columns) for pools made from held-out images."""
        base = self.seed.meta["vanilla"]["base"].get(name, name) if "vanilla" in self.seed.meta else name
        n = _n(self.seed, name)
        if base == "heldout":
            w = self._w("heldout", _n(self.seed, "heldout"))
            return w[:, :n]
        return self._w(name, n)

    def memo(self, key: tuple, compute: Callable[[], tuple[float, np.ndarray]]) -> tuple[float, np.ndarray]:
        """A statistic computed once per seed (vanilla's AUROC serves every variant − vanilla claim)."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def _w(self, key: str, n: int) -> np.ndarray:
        if key not in self.cache:
            salt = sum(map(ord, key))
            self.cache[key] = paired.weights(n, self.n_boot, seed=self.seed.seed * 1000 + salt)
        return self.cache[key]


def _n(seed: Seed, name: str) -> int:
    """Images in a set (from whichever variant's arrays hold it)."""
    return len(next(a[f"conf/{name}"] for a in seed.arrays.values() if f"conf/{name}" in a))


Stat = Callable[[Seed, Draws], tuple[float, np.ndarray]]  # (point, draws [B])


def measure(seeds: list[Seed], stat: Stat, n_boot: int = paired.B_DEFAULT,
            draws_of: dict[int, Draws] | None = None) -> paired.Interval:
    """The statistic per seed (point and paired resamples), combined over seeds.

    `draws_of` (seed -> Draws) shares resampling weights and computed statistics between claims."""
    draws_of = {} if draws_of is None else draws_of
    points, draws = [], []
    for s in seeds:
        p, d = stat(s, draws_of.setdefault(s.seed, Draws(s, n_boot, {})))
        points.append(p)
        draws.append(d)
    return paired.combine(points, draws, seed=0)


# ------------------------------------------------------------------------------- statistics

def _get(s: Seed, variant: str, key: str) -> np.ndarray:
    arr = s.arrays.get(variant, {}).get(key)
    if arr is None:
        raise KeyError(f"{variant}: {key}")
    return arr


def fpr(variant: str, pools: tuple[str, ...], attack: str = "threshold") -> Stat:
    """Mean over `pools` of the attack's FPR at its learned threshold."""
    def compute(s: Seed, d: Draws) -> tuple[float, np.ndarray]:
        flags = [_get(s, variant, f"{attack}/member/{p}") for p in pools]
        point = float(np.mean([f.mean() for f in flags]))
        return point, np.mean([paired.rate(f, d.pool(p)) for f, p in zip(flags, pools)], axis=0)
    return lambda s, d: d.memo(("fpr", variant, pools, attack), lambda: compute(s, d))


def auroc(variant: str, pool: str = "heldout", attack: str = "threshold", distance_from_chance: bool = False) -> Stat:
    """AUROC of an attack, members vs one pool (or |AUROC − 0.5|)."""
    def compute(s: Seed, d: Draws) -> tuple[float, np.ndarray]:
        pos, neg = _get(s, variant, f"{attack}/score/members"), _get(s, variant, f"{attack}/score/{pool}")
        return float(paired.auroc(pos, neg)), paired.auroc(pos, neg, d.members(), d.pool(pool))

    def stat(s: Seed, d: Draws) -> tuple[float, np.ndarray]:
        point, draws = d.memo(("auroc", variant, pool, attack), lambda: compute(s, d))
        return (abs(point - 0.5), np.abs(draws - 0.5)) if distance_from_chance else (point, draws)
    return stat


def separation(variant: str, pool: str = "heldout") -> Stat:
    """Scale-free distance of member and non-member max scores: Wasserstein-1 after the pooled quantile
    transform (in [0, 0.5]; unlike score units, squeezing every score toward 1/K does not shrink it)."""
    def compute(s: Seed, d: Draws) -> tuple[float, np.ndarray]:
        pos, neg = _get(s, variant, "conf/members"), _get(s, variant, f"conf/{pool}")
        return paired.w1_quantile(pos, neg), paired.w1_quantile_draws(pos, neg, d.members(), d.pool(pool))
    return lambda s, d: d.memo(("separation", variant, pool), lambda: compute(s, d))


def tpr_low(variant: str, attack: str = "threshold", pool: str = "heldout", alpha: float = ALPHA_LOW) -> Stat:
    """TPR at `alpha` FPR: threshold fixed on a random half of the non-members, TPR over resampled members."""
    def compute(s: Seed, d: Draws) -> tuple[float, np.ndarray]:
        pos, neg = _get(s, variant, f"{attack}/score/members"), _get(s, variant, f"{attack}/score/{pool}")
        t, _ = paired.split_threshold(neg, alpha, seed=s.seed)
        hit = pos > t
        return float(hit.mean()), paired.rate(hit, d.members())
    return lambda s, d: d.memo(("tpr_low", variant, attack, pool, alpha), lambda: compute(s, d))


def confidence_gap(variant: str = "vanilla", attack: str = "threshold", pool: str = "heldout") -> Stat:
    """Mean max score of false positives minus that of true positives (the paper's MMPS table)."""
    def stat(s: Seed, d: Draws) -> tuple[float, np.ndarray]:
        cm, cn = _get(s, variant, "conf/members"), _get(s, variant, f"conf/{pool}")
        tp, fp = _get(s, variant, f"{attack}/member/members"), _get(s, variant, f"{attack}/member/{pool}")
        point = (cn[fp].mean() if fp.any() else np.nan) - (cm[tp].mean() if tp.any() else np.nan)
        return float(point), paired.group_mean(cn, fp, d.pool(pool)) - paired.group_mean(cm, tp, d.members())
    return stat


def ece(variant: str, pool: str = "heldout") -> Stat:
    """Expected calibration error (15 bins) of the variant's target on a labelled pool."""
    def compute(s: Seed, d: Draws) -> tuple[float, np.ndarray]:
        conf, ok = _get(s, variant, f"conf/{pool}"), _get(s, variant, f"correct/{pool}")
        return float(paired.ece(conf, ok)), paired.ece(conf, ok, d.pool(pool))
    return lambda s, d: d.memo(("ece", variant, pool), lambda: compute(s, d))


def minus(a: Stat, b: Stat) -> Stat:
    """a − b on the same resamples (paired)."""
    def stat(s: Seed, d: Draws) -> tuple[float, np.ndarray]:
        pa, da = a(s, d)
        pb, db = b(s, d)
        return pa - pb, da - db
    return stat


# ---------------------------------------------------------------------------------------- verdicts

def verdict(iv: paired.Interval, side: str, band: float) -> str:
    """holds / does not hold / inconclusive for `x > 0` (side '>'), `x < 0` ('<') or `|x| small` ('=')."""
    lo, hi = iv.lo, iv.hi
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return NOT_RUN
    if side == ">":
        return HOLDS if lo > band else FAILS if hi < -band else INCONCLUSIVE
    if side == "<":
        return HOLDS if hi < -band else FAILS if lo > band else INCONCLUSIVE
    if side == "=":
        return HOLDS if -band <= lo and hi <= band else FAILS if lo > band or hi < -band else INCONCLUSIVE
    raise ValueError(f"side must be '>', '<' or '=', got {side!r}")


@dataclass(frozen=True)
class Claim:
    """A finding as a test: the statistic, the claimed direction, its band and the paper's figure."""

    id: str
    text: str
    compared: str
    side: str
    band: str  # a key of BANDS
    paper: str
    stat: Stat
    needs: tuple[str, ...] = ()  # variants that must have been evaluated
    gate: str | None = None  # id of a calibration claim that must hold first
    partial: bool = False  # measured on the seeds that evaluated `needs` (reference models: some seeds only)


def _variants(seeds: list[Seed], family: str) -> list[tuple[str, float]]:
    """(name, strength) of the variants of a family evaluated in every seed, by strength."""
    common = set.intersection(*(set(s.meta) for s in seeds))
    found = {(n, float(seeds[0].meta[n].get("strength") or 0.0)) for n in common
             if seeds[0].meta[n].get("family") == family and not seeds[0].meta[n].get("leaky")}
    return sorted(found, key=lambda x: x[1])


def _pools(seeds: list[Seed], groups: tuple[str, ...]) -> tuple[str, ...]:
    m = seeds[0].meta.get("vanilla", {})
    return tuple(p for p in m.get("pools", []) if m.get("groups", {}).get(p) in groups)


def build_claims(seeds: list[Seed], defense_temperature: float = 10.0) -> list[Claim]:
    """The claim set for what these seeds evaluated (a variant or pool that is absent gives no row)."""
    out: list[Claim] = []
    vm = seeds[0].meta.get("vanilla")
    if vm is None:
        return out
    out.append(Claim("fp_confidence", "False positives are scored as confidently as true positives",
                     "mean max score of FP − of TP, threshold attack, held-out", "=", "confidence",
                     "ResNet-18 CIFAR-10: FP MMPS 0.96 vs TP 0.99", confidence_gap()))
    for group in OOD_GROUPS:
        pools = _pools(seeds, (group,))
        if pools:
            out.append(Claim(f"ood_{group.replace(' ', '_')}", f"{group.capitalize()} non-members are called members "
                             f"as often as held-out ones, or more ({', '.join(pools)})",
                             "FPR(group, mean over its pools) − FPR(held-out), threshold attack", ">", "fpr",
                             "OOD FPR 0.24-1.00 vs ID 0.45", minus(fpr("vanilla", pools), fpr("vanilla", ("heldout",))),
                             ) if group != "generated" else
                       Claim("ood_generated", f"Generated fakes are called members at least as often as held-out "
                             f"images ({', '.join(pools)})", "FPR(fakes) − FPR(held-out), threshold attack", ">",
                             "fpr", "StyleGAN2 fakes 0.516 vs held-out 0.448",
                             minus(fpr("vanilla", pools), fpr("vanilla", ("heldout",)))))
    for group in LABELLED_GROUPS:
        pools = _pools(seeds, (group,))
        for attack in LABEL_FREE:
            if pools and f"{attack}/member/members" in seeds[0].arrays["vanilla"]:
                out.append(Claim(f"label_free_{attack}_{group}", f"The label-free {attack} attack accepts {group} "
                                 "images that the label-aware loss attack rejects",
                                 f"FPR({attack}) − FPR(loss) on {', '.join(pools)}", ">", "fpr",
                                 "attacks rely on the max score", minus(fpr("vanilla", pools, attack),
                                                                        fpr("vanilla", pools, "loss"))))
    ood_all = _pools(seeds, OOD_GROUPS)
    cal_variants = _variants(seeds, "label_smoothing") + _variants(seeds, "llla")
    for name, _ in cal_variants:
        out.append(Claim(f"calibrates_{name}", f"{name} calibrates the target (lower ECE than vanilla)",
                         "ECE(variant) − ECE(vanilla), held-out, 15 bins", "<", "ece", "LS/LLLA lower ECE",
                         minus(ece(name), ece("vanilla")), needs=(name,)))
    ls = _variants(seeds, "label_smoothing")
    for name, eps in ls:
        out.append(Claim(f"ls_ood_{name}", f"Label smoothing ε = {eps:g} lowers the mean OOD FPR (× 255 included)",
                         "mean FPR over every OOD pool: variant − vanilla", "<", "ood_fpr",
                         "LS: 0.240 vs 0.448 (ID)", minus(fpr(name, ood_all), fpr("vanilla", ood_all)), needs=(name,)))
    for (small, e1), (large, e2) in zip(ls, ls[1:]):
        out.append(Claim(f"ls_ood_more_{large}", f"Larger label smoothing (ε {e1:g} → {e2:g}) lowers the OOD FPR more",
                         "mean OOD FPR: larger ε − smaller ε", "<", "ood_fpr", "stronger LS, fewer FPs",
                         minus(fpr(large, ood_all), fpr(small, ood_all)), needs=(small, large)))
    for name, _ in cal_variants:
        gate = f"calibrates_{name}"
        out.append(Claim(f"leak_auroc_{name}", f"{name} raises leakage: attack AUROC", "AUROC(variant) − AUROC(vanilla), "
                         "threshold attack, held-out", ">", "auroc", "LS 0.871 / LLLA 0.753 vs 0.775",
                         minus(auroc(name), auroc("vanilla")), needs=(name,), gate=gate))
        out.append(Claim(f"leak_tpr_{name}", f"{name} raises leakage: TPR at 1% FPR", "TPR@1%FPR(variant) − "
                         "TPR@1%FPR(vanilla), thresholds fixed on half the held-out images", ">", "tpr",
                         "not reported", minus(tpr_low(name), tpr_low("vanilla")), needs=(name,), gate=gate))
    for name, wd in _variants(seeds, "weight_decay"):
        out.append(Claim(f"l2_auroc_{name}", f"L2 (weight decay {wd:g}) moves the attack toward chance: AUROC",
                         "|AUROC − 0.5|: variant − vanilla, threshold attack", "<", "auroc", "0.511 vs 0.775",
                         minus(auroc(name, distance_from_chance=True), auroc("vanilla", distance_from_chance=True)),
                         needs=(name,)))
        out.append(Claim(f"l2_tpr_{name}", f"L2 (weight decay {wd:g}) moves the attack toward chance: TPR at 1% FPR",
                         "TPR@1%FPR: variant − vanilla", "<", "tpr", "not reported",
                         minus(tpr_low(name), tpr_low("vanilla")), needs=(name,)))
    for name, _ in cal_variants:
        out.append(Claim(f"separates_{name}", f"Calibration ({name}) separates member and held-out scores",
                         "W1 of max scores after the pooled quantile transform, members vs held-out: variant − vanilla", ">",
                         "separation", "LS/LLLA widen the MMPS gap", minus(separation(name), separation("vanilla")),
                         needs=(name,), gate=f"calibrates_{name}"))
    defenses = [n for n, _ in _variants(seeds, "weight_decay")] + [n for n, _ in _variants(seeds, "dp")]
    defenses += [n for n, t in _variants(seeds, "temperature") if t == defense_temperature]
    for name in defenses:
        out.append(Claim(f"aligns_{name}", f"The defense {name} aligns member and held-out scores",
                         "W1 of max scores after the pooled quantile transform, members vs held-out: variant − vanilla", "<",
                         "separation", "L2 / T narrow the MMPS gap", minus(separation(name), separation("vanilla")),
                         needs=(name,)))
    out += reference_claims(seeds)
    return out


REF = "vanilla_ref"  # mia_nb.refmodels.VARIANT: the per-image arrays of notebook 09
REF_ATTACKS = ("lira_online", "lira_offline", "rmia")


def reference_claims(seeds: list[Seed]) -> list[Claim]:
    """Reference-model attacks (notebook 09) against the paper's threshold attack, on the seeds that have them."""
    have = [s for s in seeds if REF in s.arrays]
    if not have:
        return []
    out = []
    for attack in REF_ATTACKS:
        out.append(Claim(f"ref_tpr_{attack}", f"{attack} beats the global threshold attack at 0.1% FPR",
                         "TPR@0.1%FPR: attack − threshold attack, members vs the population's held-out images "
                         "(thresholds on half of them)", ">", "tpr", "LiRA 5.9% vs threshold 0.09% (CIFAR-10, 16 models)",
                         minus(tpr_low(REF, attack, pool="heldout_pop", alpha=0.001),
                               tpr_low(REF, "threshold", pool="heldout_pop", alpha=0.001)),
                         needs=(REF,), partial=True))
    for attack in REF_ATTACKS:
        for group in OOD_GROUPS:
            pools = _pools(have, (group,))
            if pools:
                out.append(Claim(f"ref_ood_{attack}_{group.replace(' ', '_')}", f"At matched held-out FPR (1%), "
                                 f"{attack} accepts fewer {group} non-members than the threshold attack",
                                 f"FPR(threshold) − FPR({attack}) on {', '.join(pools)}, thresholds fixed on held-out",
                                 ">", "fpr_low", "not evaluated by the paper or the libraries",
                                 minus(fpr(REF, pools, "threshold@1pct"), fpr(REF, pools, f"{attack}@1pct")),
                                 needs=(REF,), partial=True))
    return out


def check(seeds: list[Seed], claims: list[Claim] | None = None, n_boot: int = paired.B_DEFAULT) -> pd.DataFrame:
    """One row per claim: measured value, paired 95% interval, band, verdict (gated claims after their gate)."""
    claims = build_claims(seeds) if claims is None else claims
    rows: list[dict] = []
    verdicts: dict[str, str] = {}
    shared: dict[int, Draws] = {}
    for c in claims:
        use = [s for s in seeds if all(v in s.arrays for v in c.needs)] if c.partial else seeds
        present = bool(use) and all(all(v in s.arrays for s in use) for v in ("vanilla", *c.needs))
        try:
            iv = measure(use, c.stat, n_boot, shared) if present else None
        except KeyError:
            iv = None
        if iv is None:
            v, value, lo, hi = NOT_RUN, np.nan, np.nan, np.nan
        else:
            v, value, lo, hi = verdict(iv, c.side, BANDS[c.band]), iv.value, iv.lo, iv.hi
            if c.gate is not None and verdicts.get(c.gate) != HOLDS:
                v = NOT_CALIBRATED
        verdicts[c.id] = v
        rows.append({"id": c.id, "claim": c.text, "compared": c.compared, "measured": value, "ci_lo": lo, "ci_hi": hi,
                     "side": c.side, "band": BANDS[c.band], "paper": c.paper, "verdict": v,
                     "n_seeds": len(use), "n_boot": n_boot})
    return pd.DataFrame(rows)


def check_only(seeds: list[Seed], prefixes: tuple[str, ...], n_boot: int = paired.B_DEFAULT) -> pd.DataFrame:
    """The claims whose id starts with one of `prefixes` (their gates included, then dropped from the table)."""
    picked = [c for c in build_claims(seeds) if c.id.startswith(prefixes)]
    gates = {c.gate for c in picked if c.gate}
    everything = [c for c in build_claims(seeds) if c.id in gates and c not in picked] + picked
    table = check(seeds, everything, n_boot)
    return table[table.id.isin([c.id for c in picked])].reset_index(drop=True)


def headlines(seeds: list[Seed], n_boot: int = paired.B_DEFAULT) -> pd.DataFrame:
    """The study's headline numbers (vanilla target, threshold attack) with the claims' two-level intervals."""
    shared: dict[int, Draws] = {}
    stats: list[tuple[str, str, Stat]] = [
        ("fpr_heldout", "held-out images called members (FPR at the shadow-fitted threshold)", fpr("vanilla", ("heldout",))),
        ("auroc", "attack AUROC, members vs held-out", auroc("vanilla")),
        ("tpr_1pct", "TPR at 1% FPR (threshold fixed on half the held-out images)", tpr_low("vanilla")),
        ("ece", "held-out ECE of the target (15 bins)", ece("vanilla")),
    ]
    for group in OOD_GROUPS:
        pools = _pools(seeds, (group,))
        if pools:
            stats.append((f"fpr_{group.replace(' ', '_')}", f"{group} non-members called members ({', '.join(pools)})",
                          fpr("vanilla", pools)))
    rows = []
    for key, text, stat in stats:
        try:
            iv = measure(seeds, stat, n_boot, shared)
        except KeyError:
            continue
        rows.append({"id": key, "what": text, "value": iv.value, "lo": iv.lo, "hi": iv.hi, "n_seeds": iv.n_seeds})
    return pd.DataFrame(rows)


def sentence(row: pd.Series) -> str:
    """One line: verdict, claim, measured value with its interval and band."""
    rel = {">": f"> +{row.band:g}", "<": f"< −{row.band:g}", "=": f"within ±{row.band:g}"}[row.side]
    return (f"{row.verdict:>19}: {row.claim} — {row.compared}: {row.measured:+.3f} "
            f"[{row.ci_lo:+.3f}, {row.ci_hi:+.3f}], counts when {rel}")


def summary(df: pd.DataFrame) -> dict[str, int]:
    """How many claims got each verdict."""
    return {v: int((df.verdict == v).sum()) for v in VERDICTS}


def seed_folders(base: Path, seeds: tuple[int, ...]) -> list[Path]:
    """samples/ of every seed of a run (one seed: outputs/<profile>/samples)."""
    base = Path(base)
    if len(seeds) == 1:
        return [base / "samples"]
    return [base / f"seed_{s}" / "samples" for s in seeds]
