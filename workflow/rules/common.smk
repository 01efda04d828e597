# Names shared by every rule file (sources by role, pairs, the runs and where their data lives, the final targets)
# and the functions rules call for their inputs and params. Each stage gets the config slice it reads as its
# `params.settings` (pfconfig.<stage>_slice), so Snakemake's
# params trigger reruns exactly the rules an edited key feeds; machine-local keys (cache_dir, lock_file,
# update_lock) and execution settings are added in `run:` (pfconfig.with_local_settings) and rerun nothing.
#
# Experiments (config `experiments:`, pipeline/experiments.py): every run, the default one and each variant's seed
# runs, has a Layout saying where its data lives. A data stage is built once per distinct folder (the default
# run's copy keeps its name and paths, `vocab` and vocab/; a variant whose vocab slice differs gets `vocab_{key}`
# writing vocab/{key}/); the stage files loop over `pfexperiments.stage_instances(LAYOUTS, stage)`.

import re

from pipeline import experiments as pfexperiments

TRAIN_SOURCES = pfconfig.train_sources(config)
EVAL_SOURCES = pfconfig.eval_sources(config)
ALL_SOURCES = sorted(config["sources"])
LANGUAGES = list(config["languages"])
PAIRS = pfconfig.pair_names(config)

# run name -> Layout; the default run first. A bad variant stops here, before any job, naming the variant and key.
LAYOUTS = pfexperiments.layouts(config)
BASE = LAYOUTS[config["train"]["run_name"]]
RUN_NAMES = list(LAYOUTS)
RUN_PATTERN = "|".join(re.escape(run) for run in RUN_NAMES)
# Every source some run reads (variants may add sources); the lock records the default config's alone.
FETCHED_SOURCES = pfexperiments.all_sources(LAYOUTS)

# Each stage's file appends to ALL_TARGETS what a plain `snakemake` builds: the default run only.
ALL_TARGETS = []


# A path under the configured output root.
out = lambda *parts: str(OUT.joinpath(*parts))


def layout_of(wildcards):
    """The Layout of {run}: a run no config names (a model.pt put there by hand) reads the default run's data."""
    return LAYOUTS.get(wildcards.run, BASE)


def sources_of(layout, role, fmt=None):
    """A run's sources of one role (and format), sorted."""
    return sorted(name for name, source in layout.config["sources"].items()
                  if source["role"] == role and (fmt is None or source["format"] == fmt))  # fmt: skip


def extract_settings(layout):
    """The extract params of one Layout's copy of the stage, per {source}."""
    return lambda wildcards: pfconfig.extract_slice(layout.config, wildcards.source)


def extract_threads(layout):
    # Only man pages use threads (groff in parallel): other sources ask the scheduler (and Slurm) for one core.
    return lambda wildcards: 4 if layout.config["sources"][wildcards.source]["format"] == "man" else 1


def train_inputs(wildcards):
    """What run {run} trains on: its Layout's shards manifest, training mixture and vocabulary."""
    layout = LAYOUTS[wildcards.run]
    return {"manifest": out(layout.manifest), "mixture": out(layout.train_mixture), "spm": out(layout.vocab_file("spm.model"))}


def eval_pair_sources(run_config):
    """The sources whose held-out pairs retrieval scores (config eval.retrieval.pair_sources, else LibreOffice help)."""
    return sorted(run_config["eval"]["retrieval"]["pair_sources"]
                  or [s for s, src in run_config["sources"].items() if src["format"] == "libreoffice_help"])  # fmt: skip


def run_settings(wildcards):
    """The run's config, with output_dir at the root its clean stage wrote under (model/retrieval reads the pairs
    from <output_dir>/clean/pairs/)."""
    layout = layout_of(wildcards)
    return {**layout.config, "output_dir": out(layout.clean_root)}


def run_outputs(runs):
    """What an experiment target builds for each of ``runs`` (EXPERIMENT_FILES, rules/experiments.smk)."""
    return [out("eval", run, name) for run in runs for name in EXPERIMENT_FILES]
