"""Code-versioned store keys: every kind registered, a changed metric recomputes evaluations and nothing else."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mia_nb import versions
from mia_nb.store import Store
from mia_nb.versions import DEPENDS, code_version

PACKAGE = Path(versions.__file__).resolve().parent
# a store call with a literal kind: store.get("model", ...), get_or_make("logits", ...), config_key("laplace", ...)
KIND_CALL = re.compile(r'(?:get_or_make|store\.put|store\.get|store\.has|store\.path|config_key)\(\s*"([A-Za-z0-9_]+)"')
# a store call whose kind is not a literal (would hide a kind from the check above)
OPAQUE_CALL = re.compile(r'store\.(?:get_or_make|put|get|has|path)\(\s*[^"\s)]')


def metric_changed(text: str) -> str:
    """metrics.py with AUROC reported in percent (a real edit of the metric's code)."""
    anchor = '"auroc": '
    assert anchor in text, "attacks/metrics.py no longer builds a dict with an 'auroc' entry; update this test's edit"
    return text.replace(anchor, anchor + "100 * ", 1)


@pytest.fixture
def fresh_versions(monkeypatch):
    """Code versions computed afresh in the test and again after it (monkeypatched sources never leak)."""
    code_version.cache_clear()
    yield monkeypatch
    code_version.cache_clear()


def test_every_kind_the_package_stores_is_registered_with_existing_modules():
    used: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in ("store.py", "versions.py"):
            continue
        text = path.read_text()
        for kind in KIND_CALL.findall(text):
            used.setdefault(kind, set()).add(path.name)
        if "cached_logits(" in text:
            used.setdefault("logits", set()).add(path.name)
        assert not OPAQUE_CALL.search(text), f"{path.name}: a store call with a computed kind; use a literal"
    assert {"model", "logits", "features", "labels", "gan", "laplace", "llla_probs"} <= set(used)
    assert "evaluation" in used
    missing = {kind: sorted(files) for kind, files in used.items() if kind not in DEPENDS}
    assert not missing, f"kinds stored but not registered in mia_nb.versions.DEPENDS: {missing}"
    for kind, modules in DEPENDS.items():
        assert modules, kind
        for m in modules:
            assert (PACKAGE / f"{m.replace('.', '/')}.py").is_file(), f"DEPENDS[{kind!r}] names {m!r}, which is no module of mia_nb"


def test_consumers_list_the_code_of_what_they_consume_without_its_key():
    """Only model (and GAN) keys are embedded in other configs; outputs and Laplace fits are read without theirs."""
    dep = {kind: set(mods) for kind, mods in DEPENDS.items()}
    assert dep["features"] <= dep["laplace"] <= dep["llla_probs"]  # variants.py embeds the unversioned laplace key
    assert dep["logits"] | dep["labels"] | dep["llla_probs"] <= dep["evaluation"]
    assert "attacks.metrics" in dep["evaluation"]
    assert "attacks.metrics" not in dep["model"]


def test_unknown_kind_must_be_registered(tmp_path):
    with pytest.raises(ValueError, match=r"'weights'.*DEPENDS"):
        code_version("weights")
    with pytest.raises(ValueError, match="DEPENDS"):
        Store(tmp_path).put("weights", {"x": 1}, 1)
    assert not (tmp_path / "weights").exists()
    plain = Store(tmp_path, versioned=False)  # an unversioned store takes any kind
    plain.put("weights", {"x": 1}, 1)
    assert plain.get("weights", {"x": 1}) == 1


def test_changing_a_metric_recomputes_evaluations_but_loads_models(tmp_path, fresh_versions):
    monkeypatch = fresh_versions
    store = Store(tmp_path)
    rows_cfg, model_cfg = {"variant": "vanilla", "seed": 0}, {"arch": "tiny", "seed": 0}
    made: list[str] = []
    store.get_or_make("evaluation", rows_cfg, lambda: made.append("rows") or {"auroc": 0.5})
    store.get_or_make("model", model_cfg, lambda: made.append("model") or {"w": torch.ones(2)})
    rows_path, model_path = store.path("evaluation", rows_cfg), store.path("model", model_cfg)
    before = {kind: code_version(kind) for kind in DEPENDS}

    real = versions._source
    monkeypatch.setattr(versions, "_source", lambda m: metric_changed(real(m)) if m == "attacks.metrics" else real(m))
    code_version.cache_clear()

    for kind, modules in DEPENDS.items():  # exactly the kinds made with attacks/metrics.py get a new version
        assert (code_version(kind) != before[kind]) == ("attacks.metrics" in modules), kind
    assert store.path("evaluation", rows_cfg) != rows_path
    assert store.get_or_make("evaluation", rows_cfg, lambda: made.append("rows") or {"auroc": 50.0}) == {"auroc": 50.0}
    assert store.path("model", model_cfg) == model_path
    assert torch.equal(store.get_or_make("model", model_cfg, lambda: made.append("model") or {"w": torch.zeros(2)})["w"],
                       torch.ones(2))
    assert made == ["rows", "model", "rows"]  # the rows were made again, the model was loaded
    assert torch.load(store.path("evaluation", rows_cfg), weights_only=False)["code"] == code_version("evaluation")


def test_a_changed_metric_recomputes_a_studys_attack_rows_only(tiny_study, fresh_versions):
    """End to end: after editing a metric, the warm rerun recomputes the rows, loads models and logits."""
    from mia_nb.attacks import evaluation
    from mia_nb.models import jobs
    from mia_nb.models import variants
    from mia_nb.models import networks as models_mod
    from mia_nb.data.nonmembers import pool_specs
    monkeypatch, study = fresh_versions, tiny_study
    pools = {"heldout": pool_specs(study)["heldout"]}
    computed: list[int] = []  # attacks fitted = rows computed (a stored evaluation fits none)
    real_fit = evaluation.fit_attacks
    monkeypatch.setattr(evaluation, "fit_attacks", lambda *a, **kw: computed.append(1) or real_fit(*a, **kw))
    first = evaluation.evaluate(study, variants.vanilla(study), pools, save=False).rows
    evaluation.evaluate(study, variants.vanilla(study), pools, save=False)
    assert computed == [1]  # warm rerun, same code: nothing recomputed

    # edit the metric: its source (what the version hashes) and its code (what a fresh process would run)
    real_source, real_metrics = versions._source, evaluation.attack_metrics
    monkeypatch.setattr(versions, "_source",
                        lambda m: metric_changed(real_source(m)) if m == "attacks.metrics" else real_source(m))
    monkeypatch.setattr(evaluation, "attack_metrics", lambda *a, **kw: {**(m := real_metrics(*a, **kw)),
                                                                      "auroc": 100 * m["auroc"]})
    code_version.cache_clear()
    forward: list[int] = []
    real_forward = models_mod.forward_logits
    monkeypatch.setattr(models_mod, "forward_logits", lambda model, x, *a, **kw: forward.append(len(x)) or
                        real_forward(model, x, *a, **kw))
    real_run = jobs.run_missing
    monkeypatch.setattr(jobs, "run_missing", lambda items, *a, **kw: pytest.fail(f"retrained {len(items)} models")
                        if items else real_run(items, *a, **kw))

    variant = variants.vanilla(study)
    assert all(tm.loaded for tm in variant.models.values())
    again = evaluation.evaluate(study, variant, pools, save=False).rows
    assert computed == [1, 1]  # the rows were recomputed ...
    assert forward == []  # ... from cached logits: no model ran
    assert list(again["auroc"]) == pytest.approx([100 * a for a in first["auroc"]])


def test_version_is_stable_within_and_across_processes(fresh_versions):
    v = code_version("model")
    assert re.fullmatch(r"[0-9a-f]{12}", v) and code_version("model") == v
    code_version.cache_clear()
    assert code_version("model") == v
    assert len({code_version(kind) for kind in DEPENDS}) == len({DEPENDS[kind] for kind in DEPENDS})
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", "from mia_nb.versions import code_version; print(code_version('model'))"],
                         cwd=PACKAGE.parent, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == v

