# Names shared by every rule file: sources by role, pairs, and the final targets list.

TRAIN_SOURCES = pfconfig.train_sources(config)
EVAL_SOURCES = pfconfig.eval_sources(config)
ALL_SOURCES = sorted(config["sources"])
LANGUAGES = list(config["languages"])
PAIRS = [f"{src}-{tgt}" for src, tgt in pfconfig.pairs(config)]

# Each stage's rule file appends what `snakemake` (rule all) should build.
ALL_TARGETS = []


# A path under the configured output root.
out = lambda *parts: str(OUT.joinpath(*parts))
