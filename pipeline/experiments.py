"""Experiment variants: overlays of config keys, each its own training run beside the default one.

``experiments:`` in config names variants (``vocab_8k: {vocab: {vocab_size: 8000}}``) plus ``seeds: N``.
A variant's config is the base deep-merged with its overlay (``languages`` and ``sources`` replace the
base's: a merged language list would keep the languages the variant meant to drop) and then validated
exactly like the base (``pipeline.config.prepare``); an error names the variant and the key.

Stages whose inputs are unchanged are shared between variants: ``stage_key`` hashes what a stage reads
(its slice from pipeline/config.py) together with the keys of the stages it reads from, so equal keys mean
equal outputs, and a rule can write a variant's stage under ``{stage}/{key}/``.  ``changed_stages`` lists
the stages a variant cannot share with the base, in data-flow order.  ``layouts`` turns the keys into the
folders each run reads and writes (``Layout``), which the workflow's rules are generated from.
"""

from __future__ import annotations

import copy
import hashlib
import json
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline import config as pfconfig
from pipeline.config import ConfigError

# Overlay sections that replace the base's section rather than merge into it.
REPLACED_SECTIONS = ("languages", "sources", "train.objectives")  # an overlay's value replaces the base's whole

# Keys a variant cannot overlay: every variant shares one output root, cache and lock, and has no variants.
FORBIDDEN_OVERLAY_KEYS = ("output_dir", *pfconfig.LOCAL_KEYS, "experiments")
# Train keys that say where a run goes, not what it learns.
TRAIN_NAMING_KEYS = ("run_name",)
KEY_LENGTH = 12  # hex digits of sha256: collisions among a handful of variants are out of reach
SEEDS_KEY = "seeds"
# ``experiments.common``: an overlay under every variant's (e.g. a shorter training for the whole grid). When it is
# set, the variants are compared with REFERENCE, the default config with ``common`` alone, trained as its own runs.
COMMON_KEY = "common"
REFERENCE = "reference"
RESERVED_KEYS = (SEEDS_KEY, COMMON_KEY)
COMPARISON_FOLDER = "experiments"  # eval/experiments/ holds the comparison, so no run may be named so


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
    return [name for name in base.get("experiments", {}) if name not in RESERVED_KEYS]


def common_overlay(base: Mapping[str, Any]) -> Mapping[str, Any]:
    return base.get("experiments", {}).get(COMMON_KEY) or {}


def _overlay(base: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    if name == REFERENCE and common_overlay(base) and name not in base.get("experiments", {}):
        return {}  # the reference runs: the default config with the common overlay alone
    if name in RESERVED_KEYS or name not in base.get("experiments", {}):
        raise ConfigError(f"experiments: no variant named {name!r} (variants: {', '.join(variants(base)) or 'none'})")
    return _checked_overlay(name, base["experiments"][name])


def _checked_overlay(name: str, overlay: Any) -> Mapping[str, Any]:
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
    common = _checked_overlay(COMMON_KEY, common_overlay(base))
    merged = deep_merge(deep_merge(base, common, REPLACED_SECTIONS), _overlay(base, name), REPLACED_SECTIONS)
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


def default_seed_runs(base: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(run name, train.seed) of the default run and, with ``experiments.seeds: N``, its N - 1 reruns
    (``{run_name}-seed{k}``): the default run's spread over seeds is what a variant's difference is set against."""
    run, first = base["train"]["run_name"], base_train_seed(base)
    reruns = bool(variants(base)) and not common_overlay(base)  # with `common`, the reference runs are compared
    return [(run if k == 0 else f"{run}-seed{k}", first + k) for k in range(seed_count(base) if reruns else 1)]


def compared_variants(base: Mapping[str, Any]) -> list[str]:
    """The variants that get runs: REFERENCE first when ``common`` is set, then the configured ones."""
    return ([REFERENCE] if common_overlay(base) and variants(base) else []) + variants(base)


def comparison_groups(base: Mapping[str, Any]) -> dict[str, list[str]]:
    """group -> run names as the comparison shows them: "default" (the default run and its seed reruns, or the
    reference runs when ``common`` is set) first, then every variant's seed runs."""
    reference = [run for run, _ in (seed_runs(base, REFERENCE) if common_overlay(base) else default_seed_runs(base))]
    return {"default": reference, **{name: [run for run, _ in seed_runs(base, name)] for name in variants(base)}}


def default_seed_run_config(base: Mapping[str, Any], run: str) -> dict[str, Any]:
    seeds = dict(default_seed_runs(base))
    config = copy.deepcopy(dict(base))
    config["train"] = {**config["train"], "run_name": run, "seed": seeds[run]}
    return config


def check_experiments(base: Mapping[str, Any]) -> list[str]:
    """Validate every variant and refuse run names that collide; return the run names of every seed run.

    What the Snakefile calls once, so a bad variant stops the workflow before any job starts.
    """
    default_runs = [run for run, _ in default_seed_runs(base)]
    taken = {
        run: "the default run" if k == 0 else "a seed run of the default run" for k, run in enumerate(default_runs)
    }
    taken[COMPARISON_FOLDER] = "the comparison's folder"
    errors, runs = [], []
    if REFERENCE in variants(base):
        errors.append(f"experiments.{REFERENCE}: the name is reserved for the runs of `experiments.common` alone")
    for name in compared_variants(base):
        try:
            names = [run for run, _ in seed_runs(base, name)]
        except ConfigError as exc:
            errors.append(str(exc))
            continue
        for run in names:
            if run in taken:
                errors.append(
                    f"experiments.{name}: run name {run!r} is also {taken[run]} (models/{run}/ would hold both)"
                )
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


def _mixture(config: Mapping[str, Any]) -> dict[str, Any]:
    return pfconfig.vocab_mixture_slice(config)


def _train_mixture(config: Mapping[str, Any]) -> dict[str, Any]:
    return pfconfig.train_mixture_slice(config)


def _shards(config: Mapping[str, Any]) -> dict[str, Any]:
    return pfconfig.shards_slice(config)


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
    "train_mixture": (_train_mixture, ("mixture",)),  # mixture/mixture.json is made from mixture/vocab.json
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


# ----------------------------------------------------------------------------- where each run's data lives

# The folder each data stage writes under the output root; a keyed copy goes to ``{folder}/{key}/``.
STAGE_FOLDERS = {"extract": "extracted", "clean": "clean", "mixture": "mixture", "train_mixture": "mixture",
                 "vocab": "vocab", "shards": "shards"}  # fmt: skip


@dataclass(frozen=True)
class Layout:
    """Where one run reads its data, as paths relative to the output root (models/{run}/, eval/{run}/ are its own).

    A stage whose key equals the default run's uses the default run's folder (``vocab/``); another one writes
    under ``{folder}/{key}/`` (``vocab/3f2a9c0d1e4b/``).  The clean stage writes ``clean/``, ``rejected/`` and
    ``stats/`` below one root, so its keyed copy is the root ``clean/{key}/`` holding those three.
    """

    run: str
    variant: str | None  # None for the default run
    config: dict[str, Any]
    keys: dict[str, str]  # stage -> its key, "" where the default run's folder is shared

    def key(self, stage: str) -> str:
        return self.keys[stage]

    def folder(self, stage: str) -> str:
        key = self.keys[stage]
        return posixpath.join(STAGE_FOLDERS[stage], key) if key else STAGE_FOLDERS[stage]

    def rule_name(self, rule: str, stage: str) -> str:
        """The default run's rule keeps its name (``vocab``); a keyed copy is ``vocab_{key}``."""
        return f"{rule}_{self.keys[stage]}" if self.keys[stage] else rule

    def side_path(self, top: str, stage: str, name: str) -> str:
        """A log or benchmark of a stage rule: ``logs/vocab.log``, or ``logs/{key}/vocab.log`` for a keyed copy."""
        return posixpath.join(top, self.keys[stage], name)

    @property
    def languages(self) -> list[str]:
        return list(self.config["languages"])

    @property
    def pairs(self) -> list[str]:
        return pfconfig.pair_names(self.config)

    def extracted(self, source: str) -> str:
        return posixpath.join(self.folder("extract"), source)

    @property
    def clean_root(self) -> str:
        """The root the clean stage writes clean/, rejected/ and stats/ under ("" is the output root itself)."""
        return self.folder("clean") if self.keys["clean"] else ""

    def under_clean(self, *parts: str) -> str:
        return posixpath.join(self.clean_root, *parts)

    def clean_files(self) -> list[str]:
        return [self.under_clean("clean", f"{lang}.arrow") for lang in self.languages]

    def pair_files(self) -> list[str]:
        return [self.under_clean("clean", "pairs", f"{pair}.arrow") for pair in self.pairs]

    @property
    def vocab_mixture(self) -> str:
        return posixpath.join(self.folder("mixture"), "vocab.json")

    @property
    def train_mixture(self) -> str:
        return posixpath.join(self.folder("train_mixture"), "mixture.json")

    def vocab_file(self, name: str) -> str:
        return posixpath.join(self.folder("vocab"), name)

    @property
    def manifest(self) -> str:
        return posixpath.join(self.folder("shards"), "manifest.json")


def _layout(base: Mapping[str, Any], config: dict[str, Any], variant: str | None) -> Layout:
    base_keys = stage_keys(base)
    keys = {stage: "" if stage_key(config, stage) == base_keys[stage] else stage_key(config, stage)
            for stage in STAGE_FOLDERS}  # fmt: skip
    return Layout(config["train"]["run_name"], variant, config, keys)


def _check_shared_fetches(base: Mapping[str, Any], name: str, config: Mapping[str, Any],
                          fetched: dict[str, tuple[str, Any]]) -> None:  # fmt: skip
    """raw/{source}/ and raw/_lid/ hold one download each: a variant may add sources, not refetch one differently."""
    if pfconfig.lid_model_slice(config) != pfconfig.lid_model_slice(base):
        raise ConfigError(f"experiments.{name}: key 'lid.model' cannot differ between variants (raw/_lid/ holds one "
                          "LID model)")  # fmt: skip
    for source in sorted(config["sources"]):
        what = pfconfig.download_slice(config, source)["sources"][source]
        owner, known = fetched.setdefault(source, (name, what))
        if known != what:
            raise ConfigError(f"experiments.{name}: source {source!r} is fetched differently from {owner}'s "
                              f"(raw/{source}/ holds one download); give the changed source another name")  # fmt: skip


def layouts(base: Mapping[str, Any]) -> dict[str, Layout]:
    """Every run's Layout by run name: the default run first, then each variant's seed runs in config order.

    Raise ConfigError (naming the variant) for a bad variant, a clashing run name or a source that a variant
    fetches differently from the base.
    """
    check_experiments(base)
    result = {run: _layout(base, default_seed_run_config(base, run), None) for run, _ in default_seed_runs(base)}
    fetched = {source: ("the default run", pfconfig.download_slice(base, source)["sources"][source])
               for source in base["sources"]}  # fmt: skip
    for name in compared_variants(base):
        _check_shared_fetches(base, name, variant_config(base, name), fetched)
        for run, _ in seed_runs(base, name):
            result[run] = _layout(base, seed_run_config(base, name, run), name)
    return result


def stage_instances(runs: Mapping[str, Layout], stage: str) -> list[Layout]:
    """One Layout per distinct folder of ``stage`` (the default run's first): the copies of that stage to build."""
    seen: dict[str, Layout] = {}
    for layout in runs.values():
        seen.setdefault(layout.keys[stage], layout)
    return list(seen.values())


def variant_runs(runs: Mapping[str, Layout], default: str | None = None) -> dict[str, list[str]]:
    """variant -> its run names (seed runs in order); with ``default`` given, the default run's seed runs come
    first under that name."""
    result: dict[str, list[str]] = {}
    for layout in runs.values():
        if layout.variant is not None or default is not None:
            result.setdefault(layout.variant if layout.variant is not None else default, []).append(layout.run)
    return result


def all_sources(runs: Mapping[str, Layout]) -> dict[str, dict[str, Any]]:
    """Every source any run reads, by name (a shared name has one definition: ``layouts`` checked it)."""
    sources: dict[str, dict[str, Any]] = {}
    for layout in runs.values():
        for name, source in layout.config["sources"].items():
            sources.setdefault(name, source)
    return dict(sorted(sources.items()))
