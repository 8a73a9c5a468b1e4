"""The per-image sample files: the one home of their format, written by the evaluation route, read by the claims.

samples/<variant>.npz holds one evaluated variant of one seed. Every array is keyed `<what>/<set>`:

    conf/<set>                       float64 [n]  the target's max score on each image
    correct/<set>                    bool [n]     argmax == label (labelled sets only)
    <attack>/score/<set>             float64 [n]  the attack's score (higher = more member-like)
    <attack>/member/<set>            bool [n]     the attack's decision at its shadow-fitted threshold
    <attack>@<point>/member/<set>    bool [n]     the decision at an operating point fixed on held-out
                                                  images (reference attacks: `1pct`, `01pct`)

`<set>` is `members` (the target's training images), a non-member pool, or in the reference attacks' file
`heldout_pop` (the held-out images that some reference models trained on). Image i of a set is the same
image for every variant of a seed: that is what makes variant − vanilla differences paired. Beside the
arrays, `meta` is a JSON string: variant, family, strength, leaky, any extra fields (RMIA's `rmia_a`),
seed, pools, base (the set a pool's images come from: `heldout` for pools made of held-out images) and
groups (each pool's non-member group).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mia_nb.store import atomic_write

MEMBERS = "members"  # the set of the target's training images
HELDOUT_POP = "heldout_pop"  # reference files: the held-out images inside the reference models' population
META = "meta"        # the npz entry that holds the JSON metadata
_FIELDS = ("variant", "family", "strength", "leaky")  # meta written before the extras ...
_SETS = ("seed", "pools", "base", "groups")            # ... and after them


def key(what: str, set_name: str) -> str:
    """The array key `<what>/<set>`."""
    if "/" in set_name:
        raise ValueError(f"sample set names cannot contain '/': {set_name!r}")
    return f"{what}/{set_name}"


def split_key(array_key: str) -> tuple[str, str]:
    """(what, set) of an array key: ("threshold/score", "heldout") for "threshold/score/heldout"."""
    what, sep, set_name = array_key.rpartition("/")
    if not sep or not what:
        raise ValueError(f"not a sample array key (<what>/<set>): {array_key!r}")
    return what, set_name


def conf_key(set_name: str) -> str:
    """Key of the target's max score on a set."""
    return key("conf", set_name)


def correct_key(set_name: str) -> str:
    """Key of the target's correctness on a labelled set."""
    return key("correct", set_name)


def score_key(attack: str, set_name: str) -> str:
    """Key of an attack's scores on a set."""
    return key(f"{attack}/score", set_name)


def member_key(attack: str, set_name: str) -> str:
    """Key of an attack's member decisions on a set (`attack` may name an operating point, see `at_point`)."""
    return key(f"{attack}/member", set_name)


def at_point(attack: str, point: str) -> str:
    """An attack deciding at a fixed operating point: "threshold@1pct"."""
    return f"{attack}@{point}"


@dataclass(frozen=True)
class SampleFile:
    """One variant's per-image arrays of one seed and what identifies its sets."""

    variant: str
    family: str
    strength: float | None
    leaky: bool
    seed: int
    pools: tuple[str, ...]
    base: dict[str, str]  # pool -> the set its images come from ("heldout" for pools made of held-out images)
    groups: dict[str, str | None]  # pool -> its non-member group
    arrays: dict[str, np.ndarray]
    extra: dict[str, Any] = field(default_factory=dict)  # further metadata (the reference attacks' rmia_a)

    def array(self, array_key: str) -> np.ndarray:
        """One array; KeyError naming the variant and key when the file lacks it."""
        if array_key not in self.arrays:
            raise KeyError(f"{self.variant}: {array_key}")
        return self.arrays[array_key]

    def has(self, array_key: str) -> bool:
        """Whether the file holds this array."""
        return array_key in self.arrays

    def conf(self, set_name: str) -> np.ndarray:
        """The target's max score on each image of a set."""
        return self.array(conf_key(set_name))

    def correct(self, set_name: str) -> np.ndarray:
        """Whether the target classifies each image of a labelled set correctly."""
        return self.array(correct_key(set_name))

    def score(self, attack: str, set_name: str) -> np.ndarray:
        """An attack's score on each image of a set."""
        return self.array(score_key(attack, set_name))

    def member(self, attack: str, set_name: str) -> np.ndarray:
        """An attack's member decision on each image of a set."""
        return self.array(member_key(attack, set_name))

    def size(self, set_name: str) -> int:
        """Images in a set."""
        return len(self.conf(set_name))

    def base_of(self, set_name: str) -> str:
        """The set a pool's images come from (a set not made from another is its own base)."""
        return self.base.get(set_name, set_name)

    def meta(self) -> dict[str, Any]:
        """The JSON metadata, in the order it is written."""
        head = {"variant": self.variant, "family": self.family, "strength": self.strength, "leaky": self.leaky}
        return {**head, **self.extra, "seed": self.seed, "pools": list(self.pools), "base": self.base,
                "groups": self.groups}

    @classmethod
    def from_meta(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> SampleFile:
        """A sample file from its metadata (as `meta()` writes it) and arrays."""
        missing = [k for k in ("variant", "family", "seed") if k not in meta]
        if missing:
            raise ValueError(f"sample metadata lacks {missing}")
        extra = {k: v for k, v in meta.items() if k not in _FIELDS + _SETS}
        return cls(meta["variant"], meta["family"], meta.get("strength"), bool(meta.get("leaky", False)),
                   int(meta["seed"]), tuple(meta.get("pools", ())), dict(meta.get("base", {})),
                   dict(meta.get("groups", {})), arrays, extra)


def sample_path(folder: str | Path, variant: str) -> Path:
    """Where a variant's sample file lives in a seed's samples folder."""
    return Path(folder) / f"{variant}.npz"


def write_samples(folder: str | Path, samples: SampleFile) -> Path:
    """Write <folder>/<variant>.npz atomically (compressed; `meta` first, then the arrays in their order)."""
    meta = np.array(json.dumps(samples.meta()))

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **{META: meta}, **samples.arrays)
    return atomic_write(sample_path(folder, samples.variant), write)


def read_samples(path: str | Path) -> SampleFile:
    """Read one sample file."""
    with np.load(path, allow_pickle=False) as z:
        if META not in z.files:
            raise ValueError(f"{path}: no '{META}' entry; not a sample file written by mia_nb")
        meta = json.loads(str(z[META]))
        arrays = {k: z[k] for k in z.files if k != META}
    return SampleFile.from_meta(meta, arrays)


def read_folder(folder: str | Path) -> dict[str, SampleFile]:
    """Every sample file of a seed's samples folder, by variant."""
    files = [read_samples(p) for p in sorted(Path(folder).glob("*.npz"))]
    return {f.variant: f for f in files}
