"""Reference models on a real tiny study: the population, complementary IN masks, the jobs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mia_nb.attacks import reference_models
from mia_nb.config import ConfigError, parse_profile
from mia_nb.study import Study


def test_population_masks_and_requests(tiny_study):
    study = tiny_study
    assert not reference_models.enabled(study) and reference_models.requests(study) == []
    profile = dataclasses.replace(study.profile, reference_models=dataclasses.replace(study.profile.reference_models, k=4))
    s = Study(profile, study.base.parent, seed=study.seed)
    assert reference_models.enabled(s)
    pop = reference_models.population(s)
    n = len(s.splits["target_train"])
    assert len(pop) == 2 * n and set(pop[:n]) == set(s.splits["target_train"])
    assert set(pop[n:]) <= set(s.splits["target_heldout"])
    mask = reference_models.in_mask(s)
    assert mask.shape == (4, 2 * n) and (mask.sum(0) == 2).all()  # every candidate IN for exactly K/2
    assert (mask[0] ^ mask[1]).all() and (mask[2] ^ mask[3]).all()  # complementary pairs
    reqs = reference_models.requests(s)
    assert [r.role for r in reqs] == ["ref_0", "ref_1", "ref_2", "ref_3"]
    assert all(len(r.indices) == n for r in reqs)
    assert np.array_equal(np.sort(np.concatenate([reqs[0].indices, reqs[1].indices])), np.sort(pop))


def test_reference_model_settings_fail_at_load():
    for values, key in (({"k": 3}, "reference_models.k"), ({"k": 4, "seeds": [7]}, r"reference_models.seeds\[0\]"),
                        ({"rmia_a": 1.5}, "reference_models.rmia_a"), ({"k_curve": [3]}, r"reference_models.k_curve\[0\]")):
        with pytest.raises(ConfigError, match=key):
            parse_profile({"reference_models": values})
