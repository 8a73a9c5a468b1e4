"""Content-addressed store: hit, miss, changed config, interrupted writes, code-versioned keys."""

from __future__ import annotations

import pytest
import torch

from mia_nb.store import Store, atomic_write, config_key
from mia_nb.versions import code_version


def test_hit_and_miss(tmp_path):
    store = Store(tmp_path)
    cfg = {"epochs": 3, "lr": 0.1}
    assert store.get("model", cfg) is None
    calls = []
    make = lambda: calls.append(1) or {"w": torch.ones(2)}  # noqa: E731
    first = store.get_or_make("model", cfg, make)
    second = store.get_or_make("model", dict(reversed(list(cfg.items()))), make)  # key order irrelevant
    assert calls == [1] and torch.equal(first["w"], second["w"])
    store.get_or_make("model", {**cfg, "epochs": 4}, make)
    assert calls == [1, 1]
    assert config_key("model", cfg) != config_key("logits", cfg)


def test_interrupted_write_leaves_nothing_loadable(tmp_path):
    store = Store(tmp_path)
    cfg = {"x": 1}

    class Boom(Exception):
        pass

    def explode():
        raise Boom()
    with pytest.raises(Boom):
        store.get_or_make("model", cfg, explode)
    assert not store.has("model", cfg)

    def half_written(tmp):  # writes some bytes, then the process "dies"
        open(tmp, "wb").write(b"partial")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        atomic_write(store.path("model", cfg), half_written)
    assert not store.has("model", cfg)
    assert list(store.path("model", cfg).parent.iterdir()) == []  # temp file removed too


def test_unversioned_store_keeps_the_plain_config_key(tmp_path):
    cfg = {"epochs": 3}
    plain, versioned = Store(tmp_path, versioned=False), Store(tmp_path)
    assert plain.key("model", cfg) == plain.path("model", cfg).stem == config_key("model", cfg)
    assert versioned.key("model", cfg) == config_key("model", cfg, code_version("model")) != config_key("model", cfg)
    plain.put("model", cfg, 1)
    assert versioned.get("model", cfg) is None and plain.get("model", cfg) == 1
    assert torch.load(plain.path("model", cfg), weights_only=True)["code"] is None
    versioned.put("model", cfg, 2)
    assert torch.load(versioned.path("model", cfg), weights_only=True)["code"] == code_version("model")
