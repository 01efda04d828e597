"""Experiment variants: the overlay merge, its validation, seed runs and which stages a variant shares."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipeline import config as pfconfig
from pipeline import experiments as ex

REPO = Path(__file__).resolve().parent.parent

GRID = {
    "mlm_only": {"train": {"objectives": {"mlm": 1.0}}},
    "alpha_0.3": {"mixture": {"alpha_train": 0.3}},
    "vocab_8k": {"vocab": {"vocab_size": 8000}},
    "two_langs": {"languages": {"en": {}, "de": {}}},
    "strict_clean": {"clean": {"min_words": 4}},
}


def _base(experiments: dict | None = None) -> dict:
    raw = yaml.safe_load((REPO / "tests" / "tiny.yaml").read_text())
    raw["experiments"] = copy.deepcopy(GRID if experiments is None else experiments)
    return pfconfig.prepare(raw)


@pytest.fixture()
def base() -> dict:
    return _base()


def _error(base: dict, name: str) -> str:
    with pytest.raises(pfconfig.ConfigError) as excinfo:
        ex.variant_config(base, name)
    return str(excinfo.value)


# ----------------------------------------------------------------------------- merge


def test_schema_fills_seeds_and_keeps_variants_in_config_order(base: dict) -> None:
    assert base["experiments"]["seeds"] == 1
    assert ex.variants(base) == list(GRID)


def test_nested_keys_merge_into_the_base(base: dict) -> None:
    cfg = ex.variant_config(base, "vocab_8k")
    assert cfg["vocab"]["vocab_size"] == 8000
    assert cfg["vocab"]["sample_sentences"] == base["vocab"]["sample_sentences"] == 30000  # kept from the base
    assert cfg["vocab"]["num_threads"] == 1
    assert cfg["train"]["run_name"] == "vocab_8k"
    assert base["vocab"]["vocab_size"] == 2000  # the base is not modified


def test_languages_and_sources_replace_the_base() -> None:
    only_gettext = {"gettext": {"adapter": "deb", "packages": ["libgtk-3-common"], "format": "gettext", "role": "train",
                                 "licence": "LGPL-2.1-or-later"}}
    base = _base({"two_langs": {"languages": {"en": {}, "de-DE": {"required": True}}},
                  "gettext_only": {"sources": only_gettext}})  # fmt: skip
    two = ex.variant_config(base, "two_langs")
    assert list(two["languages"]) == ["de", "en"]  # hi dropped, de-DE canonicalized
    assert two["languages"]["de"]["required"] is True and two["languages"]["en"]["required"] is False
    assert list(ex.variant_config(base, "gettext_only")["sources"]) == ["gettext"]
    assert set(base["languages"]) == {"en", "de", "hi"} and len(base["sources"]) == 4  # + freedict (eval)


def test_deep_merge_replaces_scalars_and_lists() -> None:
    merged = ex.deep_merge({"a": {"b": 1, "c": [1, 2]}, "d": 1}, {"a": {"c": [3]}, "d": {"e": 2}})
    assert merged == {"a": {"b": 1, "c": [3]}, "d": {"e": 2}}


# ----------------------------------------------------------------------------- validation


def test_unknown_key_names_the_variant_and_the_key() -> None:
    message = _error(_base({"vocab_8k": {"vocab": {"vocab_sise": 8000}}}), "vocab_8k")
    assert message.startswith("experiments.vocab_8k: ")
    assert "'vocab_sise'" in message and "vocab" in message


def test_bad_value_names_the_variant_the_key_and_the_value() -> None:
    message = _error(_base({"alpha_big": {"mixture": {"alpha_train": 1.5}}}), "alpha_big")
    assert message.startswith("experiments.alpha_big: ") and "mixture.alpha_train" in message and "1.5" in message


def test_semantic_checks_apply_to_the_merged_config() -> None:
    message = _error(_base({"no_pivot": {"languages": {"de": {}, "hi": {}}}}), "no_pivot")
    assert message.startswith("experiments.no_pivot: ") and "pivot" in message
    message = _error(_base({"klingon": {"languages": {"en": {}, "tlh-xx-yy": {}}}}), "klingon")
    assert "experiments.klingon" in message and "languages.tlh-xx-yy" in message


def test_local_keys_and_nested_experiments_cannot_be_overlaid() -> None:
    message = _error(_base({"elsewhere": {"output_dir": "other"}}), "elsewhere")
    assert "experiments.elsewhere" in message and "'output_dir'" in message


def test_schema_refuses_a_variant_that_is_not_a_mapping_and_odd_names() -> None:
    raw = yaml.safe_load((REPO / "tests" / "tiny.yaml").read_text())
    with pytest.raises(pfconfig.ConfigError, match="experiments.flat"):
        pfconfig.prepare({**copy.deepcopy(raw), "experiments": {"flat": 3}})
    with pytest.raises(pfconfig.ConfigError, match="experiments"):
        pfconfig.prepare({**copy.deepcopy(raw), "experiments": {"a/b": {}}})
    with pytest.raises(pfconfig.ConfigError, match="experiments.seeds"):
        pfconfig.prepare({**copy.deepcopy(raw), "experiments": {"seeds": 0}})


def test_unknown_variant_is_named(base: dict) -> None:
    assert "'nope'" in _error(base, "nope") and "mlm_only" in _error(base, "nope")


def test_check_experiments_reports_every_bad_variant_and_run_name_clashes() -> None:
    base = _base({"a": {"vocab": {"x": 1}}, "b": {"clean": {"y": 2}}, "tiny": {}})
    with pytest.raises(pfconfig.ConfigError) as excinfo:
        ex.check_experiments(base)
    message = str(excinfo.value)
    assert "experiments.a:" in message and "experiments.b:" in message and "the default run" in message


# ----------------------------------------------------------------------------- seeds


def test_seed_runs_change_only_the_train_seed() -> None:
    base = _base({"seeds": 3, "mlm_only": GRID["mlm_only"], "vocab_8k": GRID["vocab_8k"]})
    runs = ex.seed_runs(base, "mlm_only")
    assert runs == [("mlm_only", 1234), ("mlm_only-seed1", 1235), ("mlm_only-seed2", 1236)]
    assert ex.check_experiments(base) == ["mlm_only", "mlm_only-seed1", "mlm_only-seed2",
                                          "vocab_8k", "vocab_8k-seed1", "vocab_8k-seed2"]  # fmt: skip
    first, third = (ex.seed_run_config(base, "vocab_8k", run) for run in ("vocab_8k", "vocab_8k-seed2"))
    assert third["train"]["seed"] == 1236 and third["train"]["run_name"] == "vocab_8k-seed2"
    data = ex.DATA_STAGES
    assert [ex.stage_key(first, s) for s in data] == [ex.stage_key(third, s) for s in data]
    assert ex.stage_key(first, "train") != ex.stage_key(third, "train")


# ----------------------------------------------------------------------------- shared stages


def test_stage_keys_are_short_stable_and_ignore_key_order(base: dict) -> None:
    keys = ex.stage_keys(base)
    assert list(keys) == list(ex.STAGE_ORDER) and all(len(k) == ex.KEY_LENGTH for k in keys.values())
    reordered = pfconfig.prepare(yaml.safe_load(yaml.safe_dump(
        {key: base[key] for key in reversed(list(base))}, sort_keys=True)))  # fmt: skip
    assert ex.stage_keys(reordered) == keys
    assert ex.stage_keys(_base()) == keys  # the same config on another call


def test_a_variant_equal_to_the_base_changes_nothing() -> None:
    assert ex.changed_stages(_base({"same": {"mixture": {"alpha_vocab": 0.5}}}), "same") == []


def test_train_only_variant_shares_every_data_stage(base: dict) -> None:
    variant = ex.variant_config(base, "mlm_only")
    assert all(ex.stage_key(variant, s) == ex.stage_key(base, s) for s in ex.DATA_STAGES)
    assert ex.changed_stages(base, "mlm_only") == ["train", "evaluate"]


def test_alpha_train_variant_shares_the_vocabulary_and_shards(base: dict) -> None:
    assert ex.changed_stages(base, "alpha_0.3") == ["train_mixture", "train", "evaluate"]


def test_vocab_variant_shares_the_clean_corpus(base: dict) -> None:
    changed = ex.changed_stages(base, "vocab_8k")
    assert changed == ["vocab", "shards", "train", "evaluate"]
    assert "clean" not in changed and "mixture" not in changed


def test_a_clean_change_reaches_every_later_stage_even_with_equal_slices(base: dict) -> None:
    variant = ex.variant_config(base, "strict_clean")
    assert pfconfig.vocab_slice(variant) == pfconfig.vocab_slice(base)  # the vocab's own settings are equal ...
    assert ex.stage_key(variant, "vocab") != ex.stage_key(base, "vocab")  # ... but it reads another corpus
    assert ex.changed_stages(base, "strict_clean") == ["clean", "mixture", "vocab", "shards", "train_mixture",
                                                       "train", "evaluate"]  # fmt: skip


def test_fewer_languages_re_extract_but_download_nothing(base: dict) -> None:
    changed = ex.changed_stages(base, "two_langs")
    assert "download" not in changed and "lid_model" not in changed
    assert changed[0] == "extract" and changed[-2:] == ["train", "evaluate"]


def test_unknown_stage_is_refused(base: dict) -> None:
    with pytest.raises(ValueError, match="unknown stage 'vocabulary'"):
        ex.stage_key(base, "vocabulary")
