"""Code versions of stored artifacts: which modules make each kind, and a hash of their source.

Every artifact kind in the store (`mia_nb.store`) is listed once here, in `DEPENDS`, with the modules
of `mia_nb` whose code decides its content. `code_version(kind)` is a short sha256 of those modules'
source text, and the store puts it into the artifact's key, so a warm rerun after a code change
recomputes exactly the kinds whose code changed (and, through the model key that other configs
embed, everything downstream of a retrained model) and loads the rest.

Hashing whole module sources is deliberately coarse: a change to a comment or to an unrelated function
in a listed module recomputes too. It is never stale, though, as long as the lists are complete: a
kind lists the modules that make it *and* those that make every artifact it consumes without naming
that artifact's (versioned) store key in its own config. Model keys are embedded in the configs of
logits, features, Laplace fits and attack rows, so those kinds need not list the training modules;
logits, labels, features, Laplace fits and LLLA probabilities are consumed without their keys, so the
kinds that consume them list their modules too. Library versions (torch, scikit-learn) are not hashed.

One deliberate exception: a model record also keeps the accuracy / ECE measured right after training
(`trained.measure`, with `metrics.ece`); `metrics` and `scores` are not listed for "model", so a
change to a metric does not retrain every model. Those figures are a summary of the training run; every
result table recomputes its metrics from cached outputs.

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


# model input: the pool's images (data, Fashion-MNIST via install), its split parts (splits), uint8 images ->
# normalised tensors (data.to_input calls pools.normalize)
_INPUT = ("data", "install", "pools", "splits")
# non-member pools and split parts: how they are built (PoolSpec, transforms, GAN fakes, other datasets)
_POOLS = _union(_INPUT, ("ood", "gan", "generate", "study"))
_LOGITS = _union(_POOLS, ("models", "scores", "trained", "variants"))
_LABELS = _union(_POOLS, ("variants",))
_FEATURES = _union(_POOLS, ("models", "variants"))
_LAPLACE = _union(_FEATURES, _LABELS, ("calibration",))
_LLLA_PROBS = _union(_LAPLACE, ("calibration", "variants"))
_OUTPUTS = _union(_LOGITS, _LABELS, _LLLA_PROBS)  # what Variant.outputs reads

DEPENDS: dict[str, tuple[str, ...]] = {
    "model": _union(_INPUT, ("train", "trained", "models", "privacy")),
    "gan": _union(_INPUT, ("ood", "gan", "generate", "study")),
    "logits": _LOGITS,
    "labels": _LABELS,
    "features": _FEATURES,
    "laplace": _LAPLACE,
    "llla_probs": _LLLA_PROBS,
    # a variant's fitted attacks, attacks.csv rows and per-image scores (variants.evaluate)
    "evaluation": _union(_OUTPUTS, ("attacks", "evaluate", "metrics", "scores", "variants")),
    # attacks.csv rows alone (variants.cached_attack_rows, before `evaluation` replaced it)
    "attack_rows": _union(_OUTPUTS, ("attacks", "evaluate", "metrics", "scores", "variants")),
}


def _source(module: str) -> str:
    """The source text of one module of the package (`mia_nb/<module>.py`)."""
    return (PACKAGE / f"{module}.py").read_text(encoding="utf-8")


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
    fingerprint (`mia_nb.run.fingerprint`) takes of the code."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.glob("*.py")):
        digest.update(f"{path.stem}\0{_source(path.stem)}\0".encode())
    return digest.hexdigest()[:12]
