"""The outputs layout: the one home of where a run's files live and what they are called.

    outputs/<profile>/                 a run of one profile (`--outputs` chooses the parent)
        seed_<s>/                      one seed's notebooks, data, samples, results, figures (multi-seed profiles)
        results/, figures/, report/    the mean over seeds (multi-seed) or the one seed's own folders
        results/seed_<s>/              one seed's result tables (multi-seed profiles)
        samples/<variant>.npz          per-image arrays (`mia_nb.attacks.samples`), in each seed's folder
        store/                         the content-addressed store (`mia_nb.store`)

Also the result tables' names and row keys, the key figures the report and the README show, the name
of the reference attacks' sample file, and the guard that keeps every write inside its root (`inside`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

DATA = "data"            # splits.npz and the data-prep tables
SAMPLES = "samples"      # per-image arrays for paired statistics (`mia_nb.attacks.samples`)
RESULTS = "results"      # result tables (`mia_nb.tables`)
FIGURES = "figures"
NOTEBOOKS = "notebooks"  # executed copies of the notebooks
REPORT = "report"
STORE = "store"
SEED_PREFIX = "seed_"    # seed_<s>: one seed's folder of a multi-seed run

# results/<name>.csv of the tables whose rows are upserted (a rerun replaces its own rows, keeps the others)
# and averaged over seeds: the columns that identify a row of one seed's table. "seed" identifies a row
# within a seed's table only; the mean over seeds groups by the other keys.
MODELS_TABLE = "models"          # one row per trained model (`mia_nb.models.jobs`)
ATTACKS_TABLE = "attacks"        # one row per variant, attack and non-member set (`mia_nb.attacks.evaluation`)
VARIANTS_TABLE = "variants"      # one row per variant: accuracy, NLL, ECE, ... (`mia_nb.attacks.evaluation`)
AGREEMENT_TABLE = "agreement"    # notebook 05: threshold vs entropy decisions per non-member set
SEPARATION_TABLE = "separation"  # notebook 07: separate vs align (`mia_nb.claims.separation`)
TABLE_KEYS: dict[str, tuple[str, ...]] = {
    ATTACKS_TABLE: ("variant", "attack", "nonmember_set"),
    VARIANTS_TABLE: ("variant",),
    SEPARATION_TABLE: ("variant",),
    AGREEMENT_TABLE: ("variant", "nonmember_set"),
    MODELS_TABLE: ("variant", "role", "seed"),
}
CLAIMS_TABLE = "claims"          # notebook 09: one row per claim with its verdict
HEADLINES_TABLE = "headlines"    # notebook 09: the headline numbers

# The figures the HTML report's index and the README's findings section show (figures/<name>.png).
KEY_FIGURES = ("04_roc_curves", "05_fpr_heatmap", "05_false_positive_gallery", "06_calibration_tradeoff",
               "07_kde_separation", "07_privacy_utility", "09_claims")

REFERENCE_VARIANT = "vanilla_ref"  # samples/vanilla_ref.npz: the reference-model attacks' arrays (notebook 08)


class OutsideRootError(ValueError):
    """A path would be written outside the folder it belongs to."""


def inside(root: str | Path, path: str | Path) -> Path:
    """`path` (relative paths are taken under `root`) resolved; raise OutsideRootError if it leaves `root`."""
    base = Path(root).resolve()
    target = (base / path).resolve()  # an absolute `path` replaces `base` here, and is then caught
    if target != base and base not in target.parents:
        raise OutsideRootError(f"{path}: refusing to write outside {base} (resolves to {target})")
    return target


def seed_folder(base: str | Path, seed: int) -> Path:
    """One seed's folder of a multi-seed run: `<base>/seed_<s>`."""
    return Path(base) / f"{SEED_PREFIX}{int(seed)}"


def run_folder(base: str | Path, seed: int, seeds: Sequence[int]) -> Path:
    """Where a seed's notebooks write: its seed folder when the profile has several seeds, else `base` itself."""
    return seed_folder(base, seed) if len(seeds) > 1 else Path(base)


def seed_folders(base: str | Path) -> list[Path]:
    """The seed folders found under `base` (`seed_<s>`), sorted by name."""
    return sorted(p for p in Path(base).glob(f"{SEED_PREFIX}*") if p.is_dir())


def samples_folders(base: str | Path, seeds: Sequence[int]) -> list[Path]:
    """samples/ of every seed of a run (one seed: `<base>/samples`)."""
    return [run_folder(base, s, seeds) / SAMPLES for s in seeds]


def seed_mean_keys(name: str) -> list[str]:
    """The columns the mean over seeds of a keyed table groups by: its row keys without the seed."""
    return [k for k in TABLE_KEYS[name] if k != "seed"]
