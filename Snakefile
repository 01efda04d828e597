# Polyforge: raw sources -> extracted -> clean -> stats -> mixture -> vocab -> shards -> train -> ...
# Every rule is thin: it calls pipeline/ (or model/). See README.md and ../shared/design.md.

from pathlib import Path

from snakemake.utils import min_version, validate

import pipeline.config as pfconfig

min_version("9.0")


# config.yaml is the default; a --configfile replaces it rather than merging into it (merged
# dicts would mix the two configs' sources and languages).
if "sources" not in config:

    configfile: "config.yaml"



# Clear errors that name the key first, then snakemake's own check against the same schema.
config = pfconfig.prepare(config)
validate(config, "workflow/schemas/config.schema.yaml")

OUT = Path(config["output_dir"])


# `snakemake --report OUTPUT_DIR/report.html`: this page opens it; each plot has its caption in workflow/report/.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/clean.smk"
include: "workflow/rules/mixture.smk"
include: "workflow/rules/vocab.smk"
include: "workflow/rules/shards.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/eval_retrieval.smk"
include: "workflow/rules/eval_transfer.smk"
include: "workflow/rules/transfer.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/experiments.smk"


rule all:
    input:
        ALL_TARGETS,
    default_target: True
