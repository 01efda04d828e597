# Names shared by every rule file: sources by role, pairs, the runs and where their data lives, the final targets.
# Each rule gets the config slice it reads as `params: settings=pfconfig.<stage>_slice(...)`, so Snakemake's
# params trigger reruns exactly the rules an edited key feeds; machine-local keys (cache_dir, lock_file,
# update_lock) and execution settings are added in `run:` (pfconfig.with_local_settings) and rerun nothing.
#
# Experiments (config `experiments:`, pipeline/experiments.py): every run, the default one and each variant's seed
# runs, has a Layout saying where its data lives. A data stage is built once per distinct folder: the default
# run's rule keeps its name and paths (`vocab`, vocab/), a variant whose vocab slice differs gets `vocab_{key}`
# writing vocab/{key}/. The stage rule files loop over `pfexperiments.stage_instances(LAYOUTS, stage)`.

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

# Each stage's rule file appends what `snakemake` (rule all) should build: the default run only.
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
