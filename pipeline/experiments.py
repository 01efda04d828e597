"""Experiment variants: overlays of config keys, each its own training run beside the default one.

``experiments:`` in config names variants (``vocab_8k: {vocab: {vocab_size: 8000}}``) plus ``seeds: N``.
A variant's config is the base deep-merged with its overlay (``languages`` and ``sources`` replace the
base's: a merged language list would keep the languages the variant meant to drop) and then validated
exactly like the base (``pipeline.config.prepare``); an error names the variant and the key.

Stages whose inputs are unchanged are shared between variants: ``stage_key`` hashes what a stage reads
(its slice from pipeline/config.py) together with the keys of the stages it reads from, so equal keys mean
equal outputs, and a rule can write a variant's stage under ``{stage}/{key}/``.  ``changed_stages`` lists
the stages a variant cannot share with the base, in data-flow order.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from pipeline import config as pfconfig
from pipeline.config import ConfigError

# Overlay sections that replace the base's section rather than merge into it.
REPLACED_SECTIONS = ("languages", "sources", "train.objectives")  # an overlay's value replaces the base's whole

# Keys a variant cannot overlay: every variant shares one output root, cache and lock, and has no variants.
FORBIDDEN_OVERLAY_KEYS = ("output_dir", *pfconfig.LOCAL_KEYS, "experiments")
# Mixture keys read only by training (q_train and its passes): the training mixture is keyed apart from the
# vocabulary's, so a variant changing α_train shares the vocabulary and the shards.
TRAIN_MIXTURE_KEYS = ("alpha_train", "token_budget")
# Train keys that say where a run goes, not what it learns.
TRAIN_NAMING_KEYS = ("run_name",)
KEY_LENGTH = 12  # hex digits of sha256: collisions among a handful of variants are out of reach
SEEDS_KEY = "seeds"


# ----------------------------------------------------------------------------- merge and validation


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any], replaced: tuple[str, ...] = ()) -> dict[str, Any]:
    """A new dict: ``base`` with ``overlay`` merged in (mappings recursively, anything else replaced).

    Keys named in ``replaced`` (dotted paths, e.g. ``train.objectives``: `{mlm: 1.0}` means MLM alone, not MLM
    added to the base's objectives) take the overlay's value whole.  Neither argument is modified.
    """
    result = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if key not in replaced and isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            inner = tuple(path.split(".", 1)[1] for path in replaced if path.startswith(f"{key}."))
            result[key] = deep_merge(result[key], value, inner)
        else:
            result[key] = copy.deepcopy(value)
    return result


def variants(base: Mapping[str, Any]) -> list[str]:
    """The variant names in config order (the order the comparison shows them in)."""
    return [name for name in base.get("experiments", {}) if name != SEEDS_KEY]


def _overlay(base: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    if name == SEEDS_KEY or name not in base.get("experiments", {}):
        raise ConfigError(f"experiments: no variant named {name!r} (variants: {', '.join(variants(base)) or 'none'})")
    overlay = base["experiments"][name]
    if not isinstance(overlay, Mapping):
        raise ConfigError(f"experiments.{name}: a variant is a mapping of config keys, got {overlay!r}")
    forbidden = sorted(set(overlay) & set(FORBIDDEN_OVERLAY_KEYS))
    if forbidden:
        raise ConfigError(f"experiments.{name}: config key(s) {', '.join(map(repr, forbidden))} cannot differ "
                          "between variants (they share one output root, cache and lock)")  # fmt: skip
    return overlay


def variant_config(base: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The validated config of variant ``name``; its run is named after the variant (``models/{name}/``).

    ``base`` is a config as ``pipeline.config.prepare`` returns it.  Raise ConfigError naming the variant and
    the key when the merged config is invalid.
    """
    merged = deep_merge(base, _overlay(base, name), REPLACED_SECTIONS)
    merged.setdefault("train", {})["run_name"] = name
    try:
        return pfconfig.prepare(merged)
    except ConfigError as exc:
        raise ConfigError(f"experiments.{name}: {exc}") from None


def seed_count(base: Mapping[str, Any]) -> int:
    return int(base.get("experiments", {}).get(SEEDS_KEY, 1))


def base_train_seed(config: Mapping[str, Any]) -> int:
    """``train.seed`` where the schema declares it, else the workflow seed (what training falls back to)."""
    return int(config.get("train", {}).get("seed", config["seed"]))


def seed_runs(base: Mapping[str, Any], name: str) -> list[tuple[str, int]]:
    """(run name, train.seed) of each seed run of a variant: ``name`` with its own seed, then ``name-seed{k}``.

    Only ``train.seed`` changes between them; data and vocabulary stay those of the variant.
    """
    first = base_train_seed(variant_config(base, name))
    return [(name if k == 0 else f"{name}-seed{k}", first + k) for k in range(seed_count(base))]


def seed_run_config(base: Mapping[str, Any], name: str, run: str) -> dict[str, Any]:
    """The config of one seed run of variant ``name`` (a run name from ``seed_runs``)."""
    seeds = dict(seed_runs(base, name))
    if run not in seeds:
        raise ConfigError(f"experiments.{name}: no seed run named {run!r} (runs: {', '.join(seeds)})")
    config = variant_config(base, name)
    config["train"].update(run_name=run, seed=seeds[run])
    return config


def check_experiments(base: Mapping[str, Any]) -> list[str]:
    """Validate every variant and refuse run names that collide; return the run names of every seed run.

    What the Snakefile calls once, so a bad variant stops the workflow before any job starts.
    """
    taken = {base.get("train", {}).get("run_name"): "the default run"}
    errors, runs = [], []
    for name in variants(base):
        try:
            names = [run for run, _ in seed_runs(base, name)]
        except ConfigError as exc:
            errors.append(str(exc))
            continue
        for run in names:
            if run in taken:
                errors.append(f"experiments.{name}: run name {run!r} is also {taken[run]} (models/{run}/ would hold both)")
            taken[run] = f"a run of variant {name!r}"
        runs.extend(names)
    if errors:
        raise ConfigError("; ".join(errors))
    return runs


# ----------------------------------------------------------------------------- what each stage reads

# Data-flow order.  Each stage: (the config it reads, the stages whose outputs it reads).
_Slice = Callable[[Mapping[str, Any]], Any]


def _per_source(slice_of: Callable[[Mapping[str, Any], str], dict], config: Mapping[str, Any]) -> list[dict]:
    return [slice_of(config, source) for source in sorted(config["sources"])]


def _clean_sources(config: Mapping[str, Any]) -> list[str]:
    # As workflow/rules/clean.smk: train sources, plus UDHR (read to score LID and to decontaminate train).
    udhr = [s for s in pfconfig.eval_sources(config) if config["sources"][s]["format"] == "udhr"]
    return pfconfig.train_sources(config) + udhr


def _without_nested(section: Mapping[str, Any], name: str, keys: tuple[str, ...]) -> dict[str, Any]:
    result = dict(section)
    if name in result:
        result[name] = {k: v for k, v in result[name].items() if k not in keys}
    return result


def _mixture(config: Mapping[str, Any]) -> dict[str, Any]:
    return _without_nested(pfconfig.mixture_slice(config), "mixture", TRAIN_MIXTURE_KEYS)


def _train_mixture(config: Mapping[str, Any]) -> dict[str, Any]:
    mixture = config["mixture"]
    return {"unit": mixture["unit"], **{key: mixture[key] for key in TRAIN_MIXTURE_KEYS}}


def _shards(config: Mapping[str, Any]) -> dict[str, Any]:
    return _without_nested(pfconfig.shards_slice(config), "mixture", TRAIN_MIXTURE_KEYS)


def _train(config: Mapping[str, Any]) -> dict[str, Any]:
    train = config.get("train", {})
    return {key: value for key, value in train.items() if key not in TRAIN_NAMING_KEYS}


STAGES: dict[str, tuple[_Slice, tuple[str, ...]]] = {
    "download": (lambda c: _per_source(pfconfig.download_slice, c), ()),
    "lid_model": (pfconfig.lid_model_slice, ()),
    "extract": (lambda c: _per_source(pfconfig.extract_slice, c), ("download",)),
    "clean": (lambda c: pfconfig.clean_slice(c, _clean_sources(c)), ("extract", "lid_model")),
    "mixture": (_mixture, ("clean",)),
    "vocab": (pfconfig.vocab_slice, ("clean", "mixture")),
    "shards": (_shards, ("clean", "vocab")),
    "train_mixture": (_train_mixture, ("clean",)),
    "train": (_train, ("shards", "train_mixture")),
    "evaluate": (lambda c: c.get("eval", {}), ("train", "extract")),
}
STAGE_ORDER: tuple[str, ...] = tuple(STAGES)
# The stages that build data (everything before training).
DATA_STAGES: tuple[str, ...] = STAGE_ORDER[: STAGE_ORDER.index("train")]


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_LENGTH]


def stage_key(config: Mapping[str, Any], stage: str) -> str:
    """A short stable hash of what ``stage`` reads: its config slice and the keys of the stages before it.

    The upstream keys are part of it because a stage's output depends on its inputs as much as on its own
    settings: two variants with one ``vocab`` section but different cleaning must not share a vocabulary.
    Key order in config does not matter (slices are key-sorted, and JSON is written with sorted keys).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGE_ORDER)}")
    slice_of, upstream = STAGES[stage]
    return _digest({"stage": stage, "reads": slice_of(config),
                    "inputs": {name: stage_key(config, name) for name in upstream}})  # fmt: skip


def stage_keys(config: Mapping[str, Any]) -> dict[str, str]:
    """Every stage's key, in data-flow order."""
    return {stage: stage_key(config, stage) for stage in STAGE_ORDER}


def changed_stages(base: Mapping[str, Any], name: str) -> list[str]:
    """The stages variant ``name`` must run itself (its key differs from the base's), in data-flow order."""
    ours, theirs = stage_keys(base), stage_keys(variant_config(base, name))
    return [stage for stage in STAGE_ORDER if ours[stage] != theirs[stage]]
