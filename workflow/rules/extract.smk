# extract: raw/{source}/ (what download fetched) -> extracted/{source}/ ({lang}.arrow, {src}-{tgt}.arrow,
# extract_stats.json). One job per source; the format comes from config["sources"][source]["format"].
# Threads only speed up man page rendering (groff runs in parallel); other formats use one.

import re


rule extract:
    input:
        out("raw", "{source}"),
    output:
        directory(out("extracted", "{source}")),
    log:
        out("logs", "extract", "{source}.log"),
    benchmark:
        out("benchmarks", "extract", "{source}.tsv")
    wildcard_constraints:
        source="|".join(re.escape(s) for s in ALL_SOURCES),
    # Only man pages use threads (groff in parallel): other sources ask the scheduler (and Slurm) for one core.
    threads: lambda wildcards: 4 if config["sources"][wildcards.source]["format"] == "man" else 1
    params:
        settings=lambda wildcards: pfconfig.extract_slice(config, wildcards.source),
    run:
        from pipeline.extract import extract_source

        extract_source(params.settings, wildcards.source, input[0], output[0], log=log[0], threads=threads)


ALL_TARGETS.extend(expand(out("extracted", "{source}"), source=ALL_SOURCES))
