"""Forward passes in the training jobs (`variants.training_jobs`): after the runner's training phase the notebooks'
reads of a model (logits on every pool, Laplace's features, reference models' sets) come from the store, equal to a
fresh forward pass; a model trained without them (a notebook run by hand) still gets them on first read."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from mia_nb.attacks import reference_models
from mia_nb.config import EngineConfig
from mia_nb.data import nonmembers
from mia_nb.data.nonmembers import PoolSpec, part_spec
from mia_nb.layout import NOTEBOOKS
from mia_nb.models import jobs, networks, variants
from mia_nb.runner import training
from mia_nb.study import Study


def no_forward_pass(*args, **kwargs):
    raise AssertionError("a forward pass outside the training job: the store should have had these outputs")


def fresh_logits(tm: jobs.TrainedModel, spec: PoolSpec) -> np.ndarray:
    """What `model_logits` computes when the store lacks it."""
    return networks.forward_logits(tm.model, spec.build()[0]).numpy()


def fresh_features(tm: jobs.TrainedModel, spec: PoolSpec) -> np.ndarray:
    """What `model_features` computes when the store lacks it."""
    return networks.forward_features(tm.model, spec.build()[0]).numpy()


def vanilla_reads(study: Study) -> tuple[dict[str, PoolSpec], dict[str, dict[str, PoolSpec]]]:
    """The pools notebooks 05-08 read the vanilla pair on: logits of the target, and features per role."""
    pools = nonmembers.pool_specs(study)
    cal, noise = part_spec(study, "calibration"), variants.tuning_noise(study)
    features = {role: {p: part_spec(study, p) for p in (f"{role}_train", f"{role}_heldout")} | {"calibration": cal,
                                                                                                 "noise": noise}
                for role in variants.ROLES}
    features["target"] |= pools
    return {**pools, "members": part_spec(study, "target_train"), "calibration": cal}, features


def test_the_training_phase_reads_every_pool_so_the_notebooks_do_no_forward_pass(tiny_study, monkeypatch):
    p = tiny_study.profile  # a short Laplace grid and predictive: the test is about where the features come from
    llla = dataclasses.replace(p.calibration.llla, grid=(-1.0, 1.0, 3.0), n_samples=10)
    study = Study(dataclasses.replace(p, calibration=dataclasses.replace(p.calibration, llla=llla)),
                  tiny_study.base.parent, seed=tiny_study.seed)
    items = variants.training_jobs(study, variants.pair_requests(study, "vanilla"))
    assert [type(job) for job, _ in items] == [variants.ReadingJob] * 2
    jobs.run_missing(items, study.profile.engine, progress=False)  # one worker: the jobs run in this process
    vanilla = variants.vanilla(study)
    assert all(tm.loaded for tm in vanilla.models.values())
    logits_on, features_on = vanilla_reads(study)

    monkeypatch.setattr(networks, "forward_logits", no_forward_pass)
    monkeypatch.setattr(networks, "forward_features", no_forward_pass)
    # the notebooks' own calls: evaluate's outputs, the fitted temperature, last-layer Laplace (fit and predict)
    outputs = {name: vanilla.outputs(study, "target", spec) for name, spec in logits_on.items()}
    variants.fitted_temperature(study)
    llla = variants.llla(study, "paper")
    llla.outputs(study, "target", logits_on["uniform"])
    llla.outputs(study, "shadow", part_spec(study, "shadow_heldout"))
    stored = {(role, name): variants.model_features(study, vanilla.models[role], spec)
              for role, specs in features_on.items() for name, spec in specs.items()}
    monkeypatch.undo()

    for name, spec in logits_on.items():
        assert np.array_equal(outputs[name].log_probs, vanilla.outputs(study, "target", spec).log_probs)
        assert np.array_equal(variants.model_logits(study, vanilla.target, spec), fresh_logits(vanilla.target, spec)), name
    assert np.array_equal(variants.model_logits(study, vanilla.shadow, logits_on["calibration"]),
                          fresh_logits(vanilla.shadow, logits_on["calibration"]))
    for (role, name), feats in stored.items():
        assert np.array_equal(feats, fresh_features(vanilla.models[role], features_on[role][name])), (role, name)


def test_reference_models_are_read_on_every_set_in_their_jobs(tiny_study, monkeypatch):
    study = tiny_study
    r = dataclasses.replace(study.profile.reference_models, k=2)
    study = Study(dataclasses.replace(study.profile, reference_models=r), study.base.parent, seed=study.seed)
    requests = reference_models.requests(study)
    jobs.run_missing(variants.training_jobs(study, variants.pair_requests(study, "vanilla") + requests),
                     study.profile.engine, progress=False)
    vanilla, pools = variants.vanilla(study), nonmembers.pool_specs(study)
    refs = jobs.ensure(study, requests, progress=False)
    assert all(tm.loaded for tm in refs)

    monkeypatch.setattr(networks, "forward_logits", no_forward_pass)
    data = reference_models.gather(study, vanilla, refs, pools)  # notebook 08's read of every model
    monkeypatch.undo()

    sets = {"members": part_spec(study, "target_train"), **pools}
    assert set(sets) <= set(data)
    for name, spec in sets.items():
        for k, tm in enumerate(refs):
            assert np.array_equal(data[name].refs[k].reshape(-1), fresh_logits(tm, spec).reshape(-1)), (name, k)


def test_the_runner_training_phase_reads_the_pools_and_records_its_seconds(tiny_study):
    p = tiny_study.profile
    profile = dataclasses.replace(p, calibration=dataclasses.replace(p.calibration, label_smoothing=()),
                                  defenses=dataclasses.replace(p.defenses, weight_decay=(), dp_epsilons=()))
    study = Study(profile, tiny_study.base.parent, seed=tiny_study.seed)
    assert training.train_models(profile, study.base.parent, (study.seed,), quiet=True) == 2  # the vanilla pair
    record = json.loads((study.base / NOTEBOOKS / training.TIMING).read_text())
    assert record["phase"] == "training" and record["jobs"] == 2 and record["seconds"] > 0
    target = variants.vanilla(study).target
    for spec in nonmembers.pool_specs(study).values():
        assert study.store.path("logits", {"model": target.key, **spec.config}).is_file(), spec.name
        assert study.store.path("features", {"model": target.key, **spec.config}).is_file(), spec.name


def test_a_model_trained_without_its_reads_gets_them_on_first_read(tiny_study):
    """A notebook run by hand trains through `jobs.ensure`, which runs no reads: the first read computes them."""
    study = tiny_study
    target = jobs.ensure(study, variants.pair_requests(study, "vanilla"), progress=False)[0]
    spec = nonmembers.pool_specs(study)["permuted"]
    assert not study.store.path("logits", {"model": target.key, **spec.config}).is_file()
    logits = variants.model_logits(study, target, spec)
    assert study.store.path("logits", {"model": target.key, **spec.config}).is_file()
    assert np.array_equal(logits, fresh_logits(target, spec))
    # and the training phase then finds the model in the store: nothing to train, nothing to read
    assert variants.training_jobs(study, variants.pair_requests(study, "vanilla")) == []


def test_pools_whose_images_do_not_exist_yet_are_left_to_the_notebooks(tiny_study):
    study = tiny_study

    def not_made_yet() -> tuple[torch.Tensor, np.ndarray]:
        raise FileNotFoundError("no generated images: run notebooks/05_ood_fpr.ipynb first")
    fakes = PoolSpec("gan", "generated", {"pool": "gan", "n_images": 8}, not_made_yet)
    uniform = nonmembers.pool_specs(study)["uniform"]
    req = variants.ReadRequest("target", logits_on=(fakes, uniform), features_on=(uniform,))
    [(job, _)] = variants.training_jobs(study, [req])
    assert len(job.logits_on) == len(job.features_on) == 1
    assert job.logits_on[0] is job.features_on[0]  # one array per pool, whatever reads it
    assert np.array_equal(job.logits_on[0], uniform.build()[0].numpy())
    assert np.array_equal(study.store.get("labels", uniform.config), uniform.labels())  # the labels come along


def test_pools_past_the_memory_budget_are_left_to_the_notebooks(tiny_study):
    """The runner holds at most the budget of one seed's pool images; the rest are read in the notebooks."""
    study = tiny_study
    specs = nonmembers.pool_specs(study)
    first, second = specs["uniform"], specs["permuted"]
    one = first.build()[0].numel() * 4
    inputs = variants.PoolInputs(study, budget=one + one // 2)
    assert inputs.of(first) is not None and inputs.of(second) is None  # the second would pass the budget
    assert np.array_equal(study.store.get("labels", second.config), second.labels())  # its labels still stored


@pytest.mark.slow  # starts worker processes (each imports torch)
def test_reads_in_two_workers_equal_a_fresh_forward_pass(tiny_study):
    """Through loky's workers the pools travel as read-only memory maps; the stored logits are those of the model."""
    study = tiny_study
    requests = variants.pair_requests(study, "vanilla")
    jobs.run_missing(variants.training_jobs(study, requests), EngineConfig(workers=2), progress=False)
    target = jobs.ensure(study, requests, progress=False)[0]
    for name, spec in nonmembers.pool_specs(study).items():
        stored = study.store.get("logits", {"model": target.key, **spec.config})
        assert stored is not None and np.array_equal(stored, fresh_logits(target, spec)), name
