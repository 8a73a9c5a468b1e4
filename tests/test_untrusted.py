"""Untrusted files and hostile profiles (issue 22): no code runs from the store, the profile loader cannot be
bombed, every count has a maximum, and each refusal is one line, fast."""

from __future__ import annotations

import io
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mia_nb.attacks.evaluation import fit_attacks
from mia_nb.attacks.score_based import attack_state, restore_attack
from mia_nb.attacks.scores import Outputs
from mia_nb.models import calibration
from mia_nb.config import (LIMITS, MAX_DEPTH, MAX_PROFILE_BYTES, NAME_PATTERN, AttacksConfig, ConfigError,
                           load_profile, parse_profile, read_yaml)
from mia_nb.runner.cli import main
from mia_nb.store import FORMAT, Store, StoreTypeError, decode, encode

REPO = Path(__file__).resolve().parents[1]
FAST_S = 2.0  # every refusal below takes milliseconds on an idle machine; this allows a loaded 2-core one
PARSE_S = 10.0  # reading a full 64 KiB profile of 9,000 list entries: about 0.5-2 s measured on a loaded 2-core machine


# ------------------------------------------------------------------------------ store: no code runs

class Planted:
    """A pickled object whose unpickling touches `marker`: what a crafted store file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _plant_raw_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"format": FORMAT, "config": {}, "payload": Planted(marker)}))


def _plant_torch_zip(path: Path, marker: Path) -> None:
    torch.save({"format": FORMAT, "config": {}, "payload": {"w": torch.ones(2), "x": Planted(marker)}}, path)


@pytest.mark.parametrize("plant", [_plant_raw_pickle, _plant_torch_zip], ids=["raw-pickle", "torch-zip"])
def test_a_crafted_pickle_in_the_store_runs_nothing_and_is_recomputed(tmp_path, capsys, plant):
    store, cfg, marker = Store(tmp_path / "store"), {"model": "x", "epochs": 2}, tmp_path / "pwned"
    path = store.path("model", cfg)
    path.parent.mkdir(parents=True)
    plant(path, marker)
    t0 = time.perf_counter()
    made = store.get_or_make("model", cfg, lambda: {"state_dict": {"w": torch.zeros(3)}})
    assert time.perf_counter() - t0 < FAST_S
    assert not marker.exists()  # neither the load nor moving it aside unpickled it
    aside = path.with_name(path.name + ".corrupt")
    assert aside.is_file() and torch.equal(made["state_dict"]["w"], torch.zeros(3))
    assert torch.equal(store.get("model", cfg)["state_dict"]["w"], torch.zeros(3))  # recomputed and stored
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "recomputing" in err
    assert not marker.exists()


def test_a_record_of_the_old_pickle_format_is_moved_aside(tmp_path, capsys):
    store, cfg = Store(tmp_path), {"a": 1}
    path = store.path("logits", cfg)
    path.parent.mkdir(parents=True)
    torch.save({"kind": "logits", "config": cfg, "code": None, "payload": torch.ones(2)}, path)  # no "format"
    assert store.get("logits", cfg) is None and path.with_name(path.name + ".corrupt").is_file()
    assert "format" in capsys.readouterr().err


def test_a_record_copied_under_another_key_is_moved_aside_and_recomputed(tmp_path):
    store = Store(tmp_path)
    source = store.put("labels", {"a": 1}, np.arange(3))
    target = store.path("labels", {"a": 2})
    target.write_bytes(source.read_bytes())
    assert store.get_or_make("labels", {"a": 2}, lambda: np.zeros(2)).tolist() == [0.0, 0.0]
    assert target.with_name(target.name + ".corrupt").is_file()
    assert store.get("labels", {"a": 1}).tolist() == [0, 1, 2]


def test_an_unknown_tag_in_a_stored_payload_is_moved_aside(tmp_path):
    store, cfg = Store(tmp_path), {"a": 1}
    path = store.put("labels", cfg, {"x": 1})
    record = torch.load(path, weights_only=True)
    record["payload"] = {"__store__": "pickle", "data": torch.ones(1)}
    torch.save(record, path)
    assert store.get("labels", cfg) is None and path.with_name(path.name + ".corrupt").is_file()


def _roundtrip(obj):
    buf = io.BytesIO()
    torch.save(encode(obj), buf)
    buf.seek(0)
    return decode(torch.load(buf, weights_only=True))


def test_plain_data_comes_back_exactly_through_a_weights_only_load():
    arrays = {str(dt): np.arange(6).astype(dt).reshape(2, 3)[:, ::-1]  # not contiguous: copied on the way in
              for dt in (np.float16, np.float32, np.float64, np.int8, np.int64, np.uint8, np.uint16, np.bool_)}
    scalars = {"f": np.float64(0.1), "i": np.int32(-3), "b": np.bool_(True)}
    back = _roundtrip({"arrays": arrays, "scalars": scalars, "nested": (1, [2.5, None, "x"], {"k": True})})
    for k, a in arrays.items():
        assert back["arrays"][k].dtype == a.dtype and np.array_equal(back["arrays"][k], a)
    for k, v in scalars.items():
        assert type(back["scalars"][k]) is type(v) and back["scalars"][k] == v
    assert back["nested"] == (1, [2.5, None, "x"], {"k": True})


def test_a_dataframe_comes_back_with_its_dtypes_and_index():
    df = pd.DataFrame({"variant": ["a", None], "n": [1, 2], "auroc": [0.5, np.nan], "ok": [True, False],
                       3: [np.float32(1), np.float32(2)]}, index=pd.Index(["p", "q"], name="pool"))
    back = _roundtrip({"rows": df, "empty": df.iloc[:0], "plain": df.reset_index(drop=True)})
    pd.testing.assert_frame_equal(back["rows"], df, check_exact=True)
    pd.testing.assert_frame_equal(back["empty"], df.iloc[:0], check_exact=True)
    pd.testing.assert_frame_equal(back["plain"], df.reset_index(drop=True), check_exact=True)


def test_a_state_dict_keeps_its_version_metadata():
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    sd = _roundtrip({"state_dict": model.state_dict()})["state_dict"]
    assert sd._metadata == model.state_dict()._metadata
    nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)).load_state_dict(sd)


@pytest.mark.parametrize("payload, where", [
    ({"attack": Planted(Path("x"))}, "payload['attack']"),
    ({"a": [np.array(["x"], dtype=object)]}, "payload['a'][0]"),
    ({"s": {1, 2}}, "payload['s']"),
    ({"__store__": 1}, "payload"),
    ({"df": pd.DataFrame({"t": pd.to_datetime(["2020-01-01"])})}, "payload['df']['t']"),
])
def test_what_the_store_cannot_keep_without_pickle_is_refused_when_stored(tmp_path, payload, where):
    store = Store(tmp_path)
    with pytest.raises(StoreTypeError) as info:
        store.put("labels", {"a": 1}, payload)
    assert str(info.value).startswith(f"labels {where}") and "\n" not in str(info.value)
    assert not list(tmp_path.rglob("*.pt"))


def _outputs(rng: np.random.Generator, n: int) -> Outputs:
    logits = 3 * rng.normal(size=(n, 10))
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return Outputs(np.exp(logp), rng.integers(0, 10, n), logp)


def test_fitted_attacks_are_stored_as_their_state_and_score_identically(tmp_path):
    rng = np.random.default_rng(0)
    attacks, _ = fit_attacks(AttacksConfig(salem_max_epochs=5), _outputs(rng, 200), _outputs(rng, 200), seed=0)
    store = Store(tmp_path)
    store.put("evaluation", {"a": 1}, {name: attack_state(a) for name, a in attacks.items()})
    back = {name: restore_attack(s) for name, s in store.get("evaluation", {"a": 1}).items()}
    probe = _outputs(rng, 300)
    for name, attack in attacks.items():
        assert type(back[name]) is type(attack)
        assert np.array_equal(back[name].score(probe), attack.score(probe))
        assert np.array_equal(back[name].predict(probe), attack.predict(probe))
        assert back[name].threshold == attack.threshold or np.isnan(attack.threshold)


def test_a_laplace_state_is_stored_without_pickle_and_predicts_identically(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(120, 2, generator=g), torch.randint(0, 3, (120,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    fitted = calibration.fit_llla(model, DataLoader(TensorDataset(x, y), batch_size=64), prior="marglik", seed=0)
    store = Store(tmp_path)
    store.put("laplace", {"a": 1}, {"llla": calibration.llla_state(fitted), "meta": {"prior": np.float64(1.5)}})
    loaded = calibration.load_llla(model, store.get("laplace", {"a": 1})["llla"])
    for link in ("probit", "mc"):
        assert np.array_equal(calibration.llla_log_predict(loaded, x, link=link, n_samples=5, seed=0),
                              calibration.llla_log_predict(fitted, x, link=link, n_samples=5, seed=0))


# ------------------------------------------------------------------------------ the profile loader

def _bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


HOSTILE = [  # (id, profile text, what the one-line message must say)
    ("alias-bomb", _bomb(), "line 1, column 5: YAML anchors and aliases"),
    ("self-alias", "x: &a [*a]\n", "anchors and aliases"),
    ("plain-alias", "name: &n run\nsalt: *n\n", "line 1, column 7: YAML anchors"),
    ("merge-key", "base: &b {epochs: 2}\ntrain:\n  <<: *b\n", "anchors and aliases"),
    ("deep-flow-list", "seeds: " + "[" * 5000 + "]" * 5000 + "\n", f"nested more than {MAX_DEPTH} levels"),
    ("deep-flow-map", "train: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", f"nested more than {MAX_DEPTH} levels"),
    ("deep-block", "".join(" " * i + "a:\n" for i in range(40)) + " " * 40 + "b: 1\n", "nested more than"),
    ("nul", "name: run\nseed: 4\x00\n", "line 2, column 8: NUL (U+0000)"),
    ("esc", "name: run\nseed: \x1b[31m4\n", "line 2, column 7: ESC (U+001B)"),
    ("del", "name: r\x7fun\n", "line 1, column 8: DEL"),
    ("nel", "name: run\x85seed: 3\n", "NEL (U+0085)"),
    ("bell-in-quotes", "name: 'a\x07b'\n", "line 1, column 9: a control character (U+0007)"),
    ("python-tag", "name: !!python/object/apply:os.system ['touch pwned']\n", "YAML tags"),
    ("int-tag", "seed: !!int '1:00'\n", "YAML tags"),
    ("local-tag", "seed: !custom 3\n", "YAML tags"),
    ("sexagesimal", "seed: 1:00\n", "seed: expected an integer, got '1:00'"),
    ("sexagesimal-float", "train:\n  lr: 1:30.5\n", "train.lr: expected a number, got '1:30.5'"),
    ("underscore-int", "seed: 1_000\n", "seed: expected an integer, got '1_000'"),
    ("yaml11-yes", "data:\n  download: yes\n", "data.download: expected true or false, got 'yes'"),
    ("timestamp-name", "name: 2024-01-01\nseed: 3\n", None),  # YAML 1.2: text, so a valid name
    ("huge-int", "seed: " + "9" * 5000 + "\n", "line 1, column 7: not valid YAML (an integer of 5000 digits"),
    ("two-documents", "name: a\n---\nname: b\n", "line 2, column 1: not valid YAML"),
    ("unclosed", "name: [a\n", "not valid YAML"),
    ("duplicate", "train:\n  epochs: 2\n  epochs: 3\n", "train.epochs: given twice (second time on line 3)"),
    ("newline-key", '"a\\nb": 1\n', "'a\\nb': unknown key"),
    ("newline-name", 'name: "c_nl\\n"\n', "name: not a plain folder name, got 'c_nl\\n'"),
    ("long-value", "name: " + "x" * 30000 + "\n", "name: not a plain folder name"),
    ("seeds-in-64k", "seeds: [" + ", ".join(map(str, range(9000))) + "]\n", "seeds: too large, got 9,000 entries"),
    ("seeds-block-64k", "seeds:\n" + "".join(f"- {i}\n" for i in range(9000)), "seeds: too large, got 9,000"),
    ("repeated-seed", "seeds: [" + ", ".join(map(str, range(99))) + ", 5]\n", "seeds: 5 is repeated"),
    ("empty", "", "the profile is empty"),
    ("comments-only", "# nothing here\n\n", "the profile is empty"),
    ("not-a-mapping", "- a\n- b\n", "(top level): expected a mapping"),
]


@pytest.mark.parametrize("text, expected", [(t, e) for _, t, e in HOSTILE], ids=[i for i, _, _ in HOSTILE])
def test_a_hostile_profile_is_refused_in_one_line_quickly(tmp_path, text, expected):
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    assert path.stat().st_size <= MAX_PROFILE_BYTES  # these pass the size cap: the loader itself must cope
    t0 = time.perf_counter()
    if expected is None:
        load_profile(path)
        return
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    took = time.perf_counter() - t0
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and expected in msg, msg
    assert took < (PARSE_S if len(text) > 20000 else FAST_S), f"{took:.2f} s"
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


@pytest.mark.parametrize("text, value", [
    ("seed: 010\n", 10),      # YAML 1.2: leading zeros are decimal (1.1 read 8)
    ("seed: 0o10\n", 8),
    ("seed: 0x10\n", 16),
    ("seed: +7\n", 7),
])
def test_integers_follow_yaml_1_2(text, value):
    assert parse_profile(read_yaml(text, "s")).seed == value


def test_floats_in_exponent_form_are_numbers(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("train:\n  lr: 3e-4\ndefenses:\n  dp_delta: 1E-6\n")
    p = load_profile(path)
    assert p.train.lr == 3e-4 and p.defenses.dp_delta == 1e-6


def test_every_profile_in_params_reads_as_pyyaml_read_it():
    import yaml
    for path in sorted((REPO / "params").glob("*.yaml")):
        text = path.read_text()
        assert read_yaml(text, path.name) == yaml.safe_load(text), path.name
        load_profile(path)


def _size_case(tmp_path: Path, kind: str) -> Path:
    if kind == "ten-megabytes":
        path = tmp_path / "big.yaml"
        path.write_bytes(b"name: big\n" + b"# padding\n" * 1_000_000)
    elif kind == "1.3M-seeds":
        path = tmp_path / "seeds.yaml"
        path.write_bytes(b"seeds: [" + b", ".join(str(i).encode() for i in range(1_300_000)) + b"]\n")
    elif kind == "just-over-the-cap":
        path = tmp_path / "over.yaml"
        path.write_bytes(b"name: x\n" + b"#" * (MAX_PROFILE_BYTES - 8) + b"\n")
    elif kind == "folder":
        path = tmp_path / "folder.yaml"
        path.mkdir()
    elif kind == "dev-null":
        path = Path(os.devnull)
    elif kind == "missing":
        path = tmp_path / "missing.yaml"
    elif kind == "zero-bytes":
        path = tmp_path / "zero.yaml"
        path.write_bytes(b"")
    else:  # not UTF-8
        path = tmp_path / "latin1.yaml"
        path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    return path


@pytest.mark.parametrize("kind, expected", [
    ("ten-megabytes", "10,000,010 bytes is too large for a profile (at most 64 KiB"),
    ("1.3M-seeds", "bytes is too large for a profile"),
    ("just-over-the-cap", "65,537 bytes is too large"),
    ("folder", "is a folder, not a profile file"),
    ("dev-null", "not a regular file"),
    ("missing", "profile file not found"),
    ("zero-bytes", "the profile is empty"),
    ("latin1", "not UTF-8 text (byte 9"),
])
def test_a_params_file_that_is_too_big_or_not_a_file_says_so(tmp_path, kind, expected):
    path = _size_case(tmp_path, kind)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert time.perf_counter() - t0 < FAST_S
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path)) and expected in msg, msg


def test_read_yaml_caps_text_given_directly():
    with pytest.raises(ConfigError, match="too large for a profile"):
        read_yaml("#" * (MAX_PROFILE_BYTES + 1), "s")


# ------------------------------------------------------------------------------ every count has a maximum

def _nested(key: str, value) -> dict:
    out: dict = {}
    node = out
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return out


def _at(key: str, n: int) -> dict:
    """A profile mapping whose `key` holds `n` (a count, or that many valid entries of a list)."""
    lists = {
        "seeds": lambda: list(range(n)),
        "ood.gan.supply_sizes": lambda: [1] * n,
        "calibration.temperatures": lambda: [1.0 + i for i in range(n)],
        "calibration.label_smoothing": lambda: [(i + 1) / (n + 2) for i in range(n)],
        "calibration.llla.grid": lambda: [-4.0, 4.0, float(n)],
        "defenses.weight_decay": lambda: [1e-4 * (i + 1) for i in range(n)],
        "defenses.dp_epsilons": lambda: [1.0 + i for i in range(n)],
        "reference_models.k_curve": lambda: [2] * n,
    }
    if key == "reference_models.seeds":  # entries must be seeds of the profile, which has at most LIMITS["seeds"]
        seeds = list(range(LIMITS["seeds"]))
        return {"seeds": seeds, "reference_models": {"k": 2, "seeds": (seeds * 2)[:n]}}
    if key == "reference_models.k":
        n += n % 2  # k is even
    return _nested(key, lists[key]() if key in lists else n)


@pytest.mark.parametrize("key", list(LIMITS))
def test_every_count_above_its_limit_is_refused_naming_the_key_and_the_maximum(key):
    most = LIMITS[key]
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        parse_profile(_at(key, most + 1))
    assert time.perf_counter() - t0 < FAST_S
    msg = str(info.value)
    assert msg.startswith(f"{key}: too large") and f"at most {most:,}" in msg and "\n" not in msg, msg


@pytest.mark.parametrize("key", list(LIMITS))
def test_a_count_at_its_limit_passes_the_limit_check(key):
    try:
        parse_profile(_at(key, LIMITS[key]))
    except ConfigError as err:  # another rule may still refuse it (e.g. a split larger than the dataset)
        assert "mia_nb.config.LIMITS" not in str(err), str(err)


@pytest.mark.parametrize("splits, key, expected", [
    ({"target_train": 5}, "splits.target_train", "at least 10 images, one per class of fashion_mnist"),
    ({"calibration": 9}, "splits.calibration", "at least 10 images"),
    ({"generator": 3}, "splits.generator", "at least 10 images"),
    ({"generator": 60000}, "splits.generator", "the parts add up to 77,000 images but fashion_mnist has 70,000"),
    ({"generator": 52995}, "splits.generator", "the parts leave 5 of the 70,000 images over"),
])
def test_split_sizes_are_checked_against_the_dataset_at_load(splits, key, expected):
    with pytest.raises(ConfigError) as info:
        parse_profile({"splits": splits})
    assert str(info.value).startswith(f"{key}: ") and expected in str(info.value), str(info.value)


def test_split_sizes_that_use_the_whole_dataset_or_leave_a_class_over_pass():
    parse_profile({"splits": {"generator": 53000}})  # exactly 70,000 in all
    parse_profile({"splits": {"generator": 52990}})  # 10 over: one per class


def test_stanford_dogs_split_sizes_are_checked_against_its_120_classes():
    with pytest.raises(ConfigError, match=r"^splits.calibration: too small, got 100 \(at least 120"):
        parse_profile({"data": {"dataset": "stanford_dogs", "image_size": 64}, "model": {"arch": "resnet18"},
                       "splits": {"calibration": 100, "generator": 0}, "ood": {"gan": {"n_images": 0,
                                                                                      "supply_sizes": []}}})


def test_salem_k_is_at_most_the_number_of_classes():
    with pytest.raises(ConfigError, match=r"^attacks.salem_k: too large, got 11 .*10 classes"):
        parse_profile({"attacks": {"salem_k": 11}})
    assert parse_profile({"attacks": {"salem_k": 11, "names": ["loss"]}}).attacks.salem_k == 11  # unused


@pytest.mark.parametrize("name", ["c_nl\n", "run\n", "run\r", "\nrun", "run\x00"])
def test_the_name_pattern_anchors_at_the_very_end(name):
    assert NAME_PATTERN.match(name) is None
    with pytest.raises(ConfigError, match=r"^name: not a plain folder name"):
        parse_profile({"name": name})


# ------------------------------------------------------------------------------ through the command line

CLI_CASES = {  # case -> (profile bytes or a special path, what the one stderr line says)
    "alias-bomb": (_bomb().encode(), "YAML anchors and aliases"),
    "nul-byte": (b"name: run\nseed: 4\x00\n", "line 2, column 8: NUL"),
    "folder": (None, "is a folder, not a profile file"),
    "epochs-1e12": (b"train:\n  epochs: 1000000000000\n", "train.epochs: too large"),
    "name-newline": (b'name: "c_nl\\n"\n', "name: not a plain folder name"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_the_cli_refuses_a_hostile_profile_in_one_line_and_writes_nothing(tmp_path, capfd, case):
    """Through `main`, what `python -m mia_nb run` calls (tests/test_hostile_cli.py runs such cases in a process
    of their own too); stdout and stderr as the file descriptors saw them."""
    content, expected = CLI_CASES[case]
    params = tmp_path / f"{case}.yaml"
    if content is None:
        params.mkdir()
    else:
        params.write_bytes(content)
    outputs = tmp_path / f"out_{case}"
    env = dict(os.environ)
    try:
        rc = main(["run", "--params", str(params), "--outputs", str(outputs)])
    finally:  # `run` sets variables its kernels inherit
        os.environ.clear()
        os.environ.update(env)
    err = capfd.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert not outputs.exists()
