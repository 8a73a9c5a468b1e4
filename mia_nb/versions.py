"""Code versions of stored artifacts: which modules make each kind, and a hash of their source.

Every artifact kind in the store (`mia_nb.store`) is listed once here, in `DEPENDS`, with the modules
of `mia_nb` whose code decides its content, each named by its dotted path below the package
("data.splits", "models.training"). `code_version(kind)` is a short sha256 of those modules' source
text, and the store puts it into the artifact's key, so a warm rerun after a code change recomputes
exactly the kinds whose code changed (and, through the model key that other configs embed, everything
downstream of a retrained model) and loads the rest.

Hashing whole module sources is deliberately coarse: a change to a comment or to an unrelated function
in a listed module recomputes too. It is never stale, though, as long as the lists are complete: a
kind lists the modules that make it *and* those that make every artifact it consumes without naming
that artifact's (versioned) store key in its own config. Model keys are embedded in the configs of
logits, features, Laplace fits and evaluations, so those kinds need not list the training modules;
logits, labels, features, Laplace fits and LLLA probabilities are consumed without their keys, so the
kinds that consume them list their modules too. Library versions (torch, scikit-learn) are not hashed.

One deliberate exception: a model record also keeps the accuracy / ECE measured right after training
(`models.jobs.measure`, with `attacks.metrics.ece`); `attacks.metrics` and `attacks.scores` are not
listed for "model", so a change to a metric does not retrain every model. Those figures are a summary
of the training run; every result table recomputes its metrics from cached outputs.

Every other module is named in `NOT_STORED` (a module, or a whole subpackage) with the reason its code
decides no stored artifact; tests/test_architecture.py fails on a module in neither list, so a new
module is placed on purpose. `package_version()` hashes every module, for notebook fingerprints.

A new kind must be registered here: `code_version` of an unknown kind raises `ValueError`.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def _union(*groups: tuple[str, ...]) -> tuple[str, ...]:
    """The modules of several groups, each once, sorted."""
    return tuple(sorted({m for g in groups for m in g}))


# model input: the pool's images (datasets, Fashion-MNIST via install), the dataset's facts (catalog: size,
# mean / std), its split parts (splits), uint8 images -> normalised tensors (datasets.to_input calls
# transforms.normalize)
_INPUT = ("data.catalog", "data.datasets", "data.install", "data.transforms", "data.splits")
# non-member pools and split parts: how they are built (PoolSpec, transforms, GAN fakes, other datasets)
_POOLS = _union(_INPUT, ("data.nonmembers", "data.gan", "study"))
_LOGITS = _union(_POOLS, ("models.networks", "attacks.scores", "models.jobs", "models.variants"))
_LABELS = _union(_POOLS, ("models.variants",))
_FEATURES = _union(_POOLS, ("models.networks", "models.variants"))
_LAPLACE = _union(_FEATURES, _LABELS, ("models.calibration",))
_LLLA_PROBS = _union(_LAPLACE, ("models.calibration", "models.variants"))
_OUTPUTS = _union(_LOGITS, _LABELS, _LLLA_PROBS)  # what Variant.outputs reads

DEPENDS: dict[str, tuple[str, ...]] = {
    "model": _union(_INPUT, ("models.training", "models.jobs", "models.networks", "models.privacy")),
    "gan": _union(_INPUT, ("data.nonmembers", "data.gan", "study")),
    "logits": _LOGITS,
    "labels": _LABELS,
    "features": _FEATURES,
    "laplace": _LAPLACE,
    "llla_probs": _LLLA_PROBS,
    # notebook 08's LLLA on a reference model, fitted on its own training half of the population
    "ref_llla_probs": _union(_LLLA_PROBS, ("attacks.reference_variants",)),
    # a variant's fitted attacks, attacks.csv rows and per-image scores (evaluation.evaluate; keys: attacks.samples)
    "evaluation": _union(_OUTPUTS, ("attacks.score_based", "attacks.evaluation", "attacks.metrics", "attacks.thresholds",
                                     "attacks.scores", "attacks.samples", "models.variants")),
}

# Modules (or whole subpackages, by name) whose code decides no stored artifact, each with the reason.
NOT_STORED: dict[str, str] = {
    "__init__": "the package docstring and REPO_ROOT",
    "__main__": "the `python -m mia_nb` entry point",
    "config": "the profile schema: its values reach every store key through the configs, not through code",
    "layout": "folder and file names under outputs/, not what the store holds",
    "store": "how artifacts are kept and keyed, not what they contain",
    "versions": "this module: the code versions themselves",
    "tables": "result tables merged from evaluation rows, written under outputs/, not the store",
    "attacks.__init__": "the room's docstring",
    "attacks.lira_rmia": "reference-model attack maths on cached logits; its scores go to tables and sample files",
    "attacks.ood_readouts": "notebook 05's read-outs from cached outputs, written as tables",
    "attacks.reference_models": "reference models enter the store as `model` requests whose configs it fills",
    "data.__init__": "the room's docstring",
    "models.__init__": "the room's docstring",
    "models.engine": "where and how many workers run a job; a job seeds itself from its config",
    "models.orphans": "a worker's watch on its parent process; it changes no result",
    "models.device": "which torch device a profile names; store keys hold configs, never the device",
    "claims": "paired statistics and verdicts over result files; nothing stored",
    "report": "figures, HTML and the summary from result files; nothing stored",
    "runner": "orders notebooks and training phases; what it trains is keyed by the requests' configs",
}


def _source(module: str) -> str:
    """The source text of one module of the package, named by its dotted path below `mia_nb` ("data.splits")."""
    return (PACKAGE / f"{module.replace('.', '/')}.py").read_text(encoding="utf-8")


def modules() -> tuple[str, ...]:
    """Every module of the package, by dotted path below `mia_nb` ("__init__", "data.splits", ...), sorted."""
    return tuple(sorted(".".join(p.relative_to(PACKAGE).with_suffix("").parts) for p in PACKAGE.rglob("*.py")))


@functools.lru_cache(maxsize=None)
def code_version(kind: str) -> str:
    """A short sha256 of the source of the modules that make artifacts of `kind` (cached per process)."""
    if kind not in DEPENDS:
        raise ValueError(f"store kind {kind!r} has no code version: register it and its modules in "
                         f"mia_nb.versions.DEPENDS (known kinds: {', '.join(sorted(DEPENDS))})")
    digest = hashlib.sha256()
    for module in DEPENDS[kind]:
        digest.update(f"{module}\0{_source(module)}\0".encode())
    return digest.hexdigest()[:12]


@functools.lru_cache(maxsize=None)
def package_version() -> str:
    """A short sha256 of every module of the package (cached per process): what an executed notebook's
    fingerprint (`mia_nb.runner.plan.fingerprint`) takes of the code."""
    digest = hashlib.sha256()
    for module in modules():
        digest.update(f"{module}\0{_source(module)}\0".encode())
    return digest.hexdigest()[:12]
