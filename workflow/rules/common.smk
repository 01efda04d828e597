# Names shared by every rule file: sources by role, pairs, and the final targets list.
# Each rule gets the config slice it reads as `params: settings=pfconfig.<stage>_slice(...)`, so Snakemake's
# params trigger reruns exactly the rules an edited key feeds; machine-local keys (cache_dir, lock_file,
# update_lock) and execution settings are added in `run:` (pfconfig.with_local_settings) and rerun nothing.

TRAIN_SOURCES = pfconfig.train_sources(config)
EVAL_SOURCES = pfconfig.eval_sources(config)
ALL_SOURCES = sorted(config["sources"])
LANGUAGES = list(config["languages"])
PAIRS = pfconfig.pair_names(config)

# Each stage's rule file appends what `snakemake` (rule all) should build.
ALL_TARGETS = []


# A path under the configured output root.
out = lambda *parts: str(OUT.joinpath(*parts))
