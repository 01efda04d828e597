# extract: raw/{source}/ (what download fetched) -> extracted/{source}/ ({lang}.arrow, {src}-{tgt}.arrow,
# extract_stats.json). One job per source; the format comes from config["sources"][source]["format"].
# Threads only speed up man page rendering (groff runs in parallel); other formats use one.
# An experiment variant whose extraction differs (other languages, other sources) gets `extract_{key}`, writing
# extracted/{key}/{source}/ from the same raw/{source}/.


for tree in pfexperiments.stage_instances(LAYOUTS, "extract"):

    rule:
        name: tree.rule_name("extract", "extract")
        input:
            out("raw", "{source}"),
        output:
            directory(out(tree.folder("extract"), "{source}")),
        log:
            out(tree.side_path("logs", "extract", "extract"), "{source}.log"),
        benchmark:
            out(tree.side_path("benchmarks", "extract", "extract"), "{source}.tsv")
        wildcard_constraints:
            source="|".join(re.escape(s) for s in sorted(tree.config["sources"])),
        threads: extract_threads(tree)
        params:
            settings=extract_settings(tree),
        run:
            from pipeline.extract import extract_source

            extract_source(params.settings, wildcards.source, input[0], output[0], log=log[0], threads=threads)


ALL_TARGETS.extend(expand(out("extracted", "{source}"), source=ALL_SOURCES))
