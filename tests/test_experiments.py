"""Experiment variants: the overlay merge, its validation, seed runs and which stages a variant shares."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
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


def test_layouts_key_only_the_folders_a_variant_changes(base: dict) -> None:
    runs = ex.layouts(base)
    assert list(runs)[0] == "tiny" and runs["tiny"].variant is None
    assert all(not key for key in runs["tiny"].keys.values())
    mlm_only, vocab_8k, alpha = runs["mlm_only"], runs["vocab_8k"], runs["alpha_0.3"]
    assert mlm_only.manifest == "shards/manifest.json" and mlm_only.vocab_file("spm.model") == "vocab/spm.model"
    assert vocab_8k.vocab_file("spm.model") == f"vocab/{ex.stage_key(vocab_8k.config, 'vocab')}/spm.model"
    assert vocab_8k.manifest.startswith("shards/") and vocab_8k.manifest != "shards/manifest.json"
    assert vocab_8k.clean_files() == runs["tiny"].clean_files()  # the clean corpus is shared
    assert alpha.train_mixture != "mixture/mixture.json" and alpha.vocab_mixture == "mixture/vocab.json"
    assert alpha.manifest == "shards/manifest.json"  # α_train rebuilds neither vocabulary nor shards
    two = runs["two_langs"]
    assert two.clean_files() == [f"clean/{two.keys['clean']}/clean/{lang}.arrow" for lang in ("de", "en")]
    assert [t.run for t in ex.stage_instances(runs, "vocab")][0] == "tiny"


def test_seeds_rerun_the_default_run_too_and_share_its_data() -> None:
    runs = ex.layouts(_base({"seeds": 2, "mlm_only": GRID["mlm_only"]}))
    assert list(runs) == ["tiny", "tiny-seed1", "mlm_only", "mlm_only-seed1"]
    assert runs["tiny-seed1"].config["train"]["seed"] == 1235 and runs["tiny-seed1"].variant is None
    assert ex.variant_runs(runs, default="default") == {"default": ["tiny", "tiny-seed1"],
                                                        "mlm_only": ["mlm_only", "mlm_only-seed1"]}  # fmt: skip
    assert {layout.manifest for layout in runs.values()} == {"shards/manifest.json"}


def test_a_variant_may_not_refetch_a_source_nor_take_the_comparison_folder() -> None:
    changed = {"libreoffice_help": {"adapter": "deb", "packages": ["libreoffice-help-en-us"], "format": "libreoffice_help",
                                    "role": "train", "licence": "MPL-2.0"}}  # fmt: skip
    with pytest.raises(pfconfig.ConfigError, match=r"experiments\.en_only: source 'libreoffice_help' is fetched"):
        ex.layouts(_base({"en_only": {"sources": changed, "languages": {"en": {}}}}))
    with pytest.raises(pfconfig.ConfigError, match="experiments.experiments: run name 'experiments'"):
        ex.check_experiments(_base({"experiments": {}}))


def test_training_mixture_keys_are_left_out_of_the_shards_and_vocab_mixture(base: dict) -> None:
    alpha = ex.variant_config(base, "alpha_0.3")
    assert pfconfig.shards_slice(alpha) == pfconfig.shards_slice(base)
    assert pfconfig.vocab_mixture_slice(alpha) == pfconfig.vocab_mixture_slice(base)
    assert pfconfig.train_mixture_slice(alpha) != pfconfig.train_mixture_slice(base)
    assert "alpha_train" not in pfconfig.shards_slice(base)["mixture"]


# ----------------------------------------------------------------------------- the workflow (tiny run copied)

TWO_VARIANTS = {
    # A train-only change and a vocabulary change; `common` trains each for a few steps and evaluates on small caps.
    "common": {"train": {"max_steps": 40, "eval_every": 40, "checkpoint_every": 40},
               "eval": {"reference": {"enabled": False}, "classify": {"max_train": 100, "epochs": 1},
                        "mlm": {"max_sequences": 20}}},
    "mlm_only": {"train": {"objectives": {"mlm": 1.0}}},
    "vocab_1k": {"vocab": {"vocab_size": 1000}},
}


def _experiment_config(path: Path, experiments: dict) -> Path:
    raw = yaml.safe_load((REPO / "tests" / "tiny.yaml").read_text())
    raw["experiments"] = experiments
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _snakemake(root: Path, configfile: Path, *args: str) -> subprocess.CompletedProcess:
    from tests.workflow_runner import snakemake_command

    command = snakemake_command(root, configfile=str(configfile), cores=2) + list(args)
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


def _planned_jobs(root: Path, configfile: Path, target: str) -> dict[str, int]:
    from tests.workflow_runner import planned_jobs

    return planned_jobs(root, configfile, [target])


@pytest.fixture(scope="module")
def experiment_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, int], dict]:
    """The tiny run copied (mtimes kept), planned and then run with two variants up to their comparison."""
    root = tmp_path_factory.mktemp("experiments") / "results"
    shutil.copytree(tiny_run, root, symlinks=True)
    configfile = _experiment_config(root.parent / "experiments.yaml", TWO_VARIANTS)
    plan = _planned_jobs(root, configfile, "experiments")
    plan_one = _planned_jobs(root, configfile, "experiment_mlm_only")
    before = {path: (root / path).stat().st_mtime_ns for path in SHARED_FILES}
    result = _snakemake(root, configfile, "experiments")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root, configfile, {"experiments": plan, "experiment_mlm_only": plan_one}, before


# The default run's data, which neither variant may rebuild.
SHARED_FILES = ("clean/en.arrow", "mixture/vocab.json", "mixture/mixture.json", "vocab/spm.model",
                "shards/manifest.json")  # fmt: skip


@pytest.mark.workflow
def test_the_plan_builds_only_what_a_variant_changes(experiment_run: tuple) -> None:
    root, _, plans, _ = experiment_run
    base = pfconfig.prepare(yaml.safe_load((root.parent / "experiments.yaml").read_text()))
    keys = ex.layouts(base)["vocab_1k"].keys
    plan = plans["experiments"]
    # Three runs (the reference under `common`, two variants) trained and evaluated, and one vocabulary and one set
    # of shards: the vocab variant's own.
    assert plan["train"] == 3 and plan["retrieval"] == 3 and plan["comparison"] == 1
    assert plan[f"vocab_{keys['vocab']}"] == 1 and plan[f"shards_{keys['shards']}"] == 1
    # Nothing of the default run's data is rebuilt, and the clean corpus and mixture are shared.
    shared = {"download", "extract", "clean", "vocab_mixture", "mixture", "vocab", "shards"}
    assert not shared & set(plan) and not [job for job in plan if job.startswith(("clean_", "mixture_", "extract_"))]
    # One variant alone: its own training and evaluation, nothing else.
    assert plans["experiment_mlm_only"] == {"train": 1, "retrieval": 1, "classify": 1, "eval_mlm": 1,
                                            "experiment_mlm_only": 1}  # fmt: skip


@pytest.mark.workflow
def test_variants_write_their_own_folders_and_leave_the_shared_ones(experiment_run: tuple) -> None:
    root, configfile, _, before = experiment_run
    base = pfconfig.prepare(yaml.safe_load(configfile.read_text()))
    keys = ex.layouts(base)["vocab_1k"].keys
    assert {path: (root / path).stat().st_mtime_ns for path in SHARED_FILES} == before
    assert (root / "vocab" / keys["vocab"] / "spm.model").is_file()
    manifest = json.loads((root / "shards" / keys["shards"] / "manifest.json").read_text())
    assert manifest["spm_model"]["path"] == f"vocab/{keys['vocab']}/spm.model"
    assert manifest["config"]["vocab"]["vocab_size"] == 1000 and "alpha_train" not in manifest["config"]["mixture"]
    assert not (root / "clean" / keys["vocab"]).exists() and not keys["clean"]
    for run in ("reference", "mlm_only", "vocab_1k"):
        assert (root / "models" / run / "model.pt").is_file()
    # A rerun plans nothing: the variants' outputs are complete and nothing they share was touched.
    assert _planned_jobs(root, configfile, "experiments") == {}


@pytest.mark.workflow
def test_the_comparison_holds_every_variant_and_language(experiment_run: tuple) -> None:
    root, configfile, *_ = experiment_run
    comparison = json.loads((root / "eval" / "experiments" / "comparison.json").read_text())
    assert comparison["groups"] == {"default": ["reference"], "mlm_only": ["mlm_only"], "vocab_1k": ["vocab_1k"]}
    assert list(comparison["languages"]) == ["de", "en", "hi"]
    de = comparison["languages"]["de"]
    assert set(de) == {"retrieval", "zero_shot", "mlm_perplexity"}
    perplexity = de["mlm_perplexity"]
    assert perplexity["default"]["runs"]["reference"] > 1 and perplexity["vocab_1k"]["runs"]["vocab_1k"] > 1
    mlm_only, default = perplexity["mlm_only"], perplexity["default"]
    assert mlm_only["difference"] == pytest.approx(mlm_only["mean"] - default["mean"])
    assert comparison["languages"]["en"]["retrieval"]["default"]["runs"]["reference"] is None  # the pivot: no pair
    for name in ("comparison.md", "comparison.png", "differences.png"):
        assert (root / "eval" / "experiments" / name).stat().st_size > 0
    # The report of the experiments shows the comparison's plots and table with their captions.
    report = root.parent / "experiments.html"
    result = _snakemake(root, configfile, "--report", str(report), "experiments")
    assert result.returncode == 0, result.stderr[-3000:]
    text = report.read_text(encoding="utf-8")
    for title in ("Experiments: every variant beside the default run", "Difference from the default run",
                  "Experiments table"):  # fmt: skip
        assert title in text, title


@pytest.mark.workflow
def test_editing_alpha_train_retrains_without_rebuilding_vocabulary_or_shards(tiny_run: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "tests" / "tiny.yaml").read_text())
    raw["mixture"]["alpha_train"] = 0.3
    edited = tmp_path / "alpha.yaml"
    edited.write_text(yaml.safe_dump(raw))
    plan = _planned_jobs(tiny_run, edited, "all")
    assert {"mixture", "train"} <= set(plan), plan
    assert not {"vocab_mixture", "vocab", "shards", "clean"} & set(plan), plan


def test_a_bad_variant_stops_the_workflow_naming_the_variant_and_key(tmp_path: Path) -> None:
    configfile = _experiment_config(tmp_path / "bad.yaml", {"vocab_8k": {"vocab": {"vocab_sise": 8000}}})
    result = _snakemake(tmp_path / "results", configfile, "--dry-run", "experiments")
    assert result.returncode != 0
    assert "experiments.vocab_8k: unknown config key(s) 'vocab_sise' under vocab" in result.stdout + result.stderr


def test_common_overlay_reaches_every_variant_and_a_reference_run() -> None:
    base = _base({"common": {"train": {"max_steps": 50}}, "seeds": 2, "mlm_only": GRID["mlm_only"]})
    assert ex.variants(base) == ["mlm_only"]
    assert ex.variant_config(base, "mlm_only")["train"]["max_steps"] == 50
    assert ex.variant_config(base, "reference")["train"]["objectives"] == base["train"]["objectives"]
    assert ex.comparison_groups(base) == {"default": ["reference", "reference-seed1"],
                                          "mlm_only": ["mlm_only", "mlm_only-seed1"]}  # fmt: skip
    runs = ex.layouts(base)
    assert list(runs) == ["tiny", "reference", "reference-seed1", "mlm_only", "mlm_only-seed1"]
    assert runs["tiny"].config["train"]["max_steps"] == base["train"]["max_steps"]  # the default run is untouched


def _results(retrieval: float | None, accuracy: float, perplexity: float) -> dict:
    row = {"status": "ok", "ours": {"test": {"cosine": {"mean": retrieval}}}} if retrieval is not None else None
    return {
        "retrieval": {"headline": "cosine", "pivot": "en", "libreoffice": {"languages": {"de": row} if row else {}}},
        "classify": {"languages": {lang: {"status": "ok", "finetune_ours": {"accuracy": accuracy}} for lang in ("en", "de")}},
        "mlm": {"mlm": {lang: {"status": "ok", "ours": {"perplexity": perplexity}} for lang in ("en", "de")}},
    }  # fmt: skip


def test_comparison_shows_every_seed_the_difference_and_whether_it_exceeds_the_spread() -> None:
    from model import comparison

    groups = {"default": ["base", "base-seed1"], "tlm_off": ["tlm_off", "tlm_off-seed1"], "few": ["few"]}
    results = {"base": _results(0.40, 0.5, 100.0), "base-seed1": _results(0.42, 0.6, 110.0),
               "tlm_off": _results(0.20, 0.55, 104.0), "tlm_off-seed1": _results(0.22, 0.5, 108.0),
               "few": _results(None, 0.7, 90.0)}  # fmt: skip
    run_languages = {run: ["en", "de"] for run in results} | {"few": ["en"]}
    table = comparison.compare(groups, ["en", "de"], results, run_languages)
    retrieval = table["languages"]["de"]["retrieval"]
    assert retrieval["default"]["runs"] == {"base": 0.40, "base-seed1": 0.42}
    assert retrieval["tlm_off"]["difference"] == pytest.approx(-0.20)
    assert retrieval["tlm_off"]["beyond_spread"] is True  # 0.20 apart, each group spread 0.02
    accuracy = table["languages"]["de"]["zero_shot"]["tlm_off"]
    assert accuracy["difference"] == pytest.approx(-0.025) and accuracy["beyond_spread"] is False
    assert table["languages"]["de"]["mlm_perplexity"]["few"]["runs"] == {"few": None}  # not one of its languages
    assert table["languages"]["en"]["retrieval"]["default"]["mean"] is None  # the pivot
    assert any(line.startswith("mlm_perplexity, de, few: not one of the run's languages") for line in table["missing"])
    markdown = comparison.to_markdown(table, {run: 1 for run in results})
    assert "| de | 0.400 / 0.420 (mean 0.410) | 0.200 / 0.220 (mean 0.210) | -0.200* |" in markdown
    perplexity = markdown.split("## MLM perplexity", 1)[1]
    assert "only between runs that share a vocabulary" in perplexity.split("## ", 1)[0]  # said under its own table
