# clean: extracted/{source}/ of every role=train source -> clean/{lang}.arrow, rejected/{lang}.arrow (every
# configured language, possibly empty), clean/pairs/{src}-{tgt}.arrow, rejected/pairs/{src}-{tgt}.arrow,
# stats/languages.json, stats/sizes.png, stats/rejections.png. UDHR (eval sources of format udhr) scores the
# LID model (stats/lid_udhr.json); it and every other eval source (dictionaries) are removed from train. Runs on
# Dask: a LocalCluster of `threads` workers, or the scheduler at config clean.scheduler; outputs do not depend
# on the worker count. The LID model's labels are checked against the configured languages when the rule starts.
# An experiment variant whose cleaning differs (languages, sources, clean.*) gets `clean_{key}`: the same three
# folders under clean/{key}/ (clean/{key}/clean/, clean/{key}/rejected/, clean/{key}/stats/).

UDHR_SOURCES = [s for s in EVAL_SOURCES if config["sources"][s]["format"] == "udhr"]
# Other eval-role sources (FreeDict dictionaries): read only to remove their text from train.
OTHER_EVAL_SOURCES = [s for s in EVAL_SOURCES if s not in UDHR_SOURCES]


for tree in pfexperiments.stage_instances(LAYOUTS, "clean"):
    _udhr = sources_of(tree, "eval", "udhr")

    rule:
        name: tree.rule_name("clean", "clean")
        input:
            extracted=[out(tree.extracted(s)) for s in sources_of(tree, "train")],
            udhr=[out(tree.extracted(s)) for s in _udhr],
            other_eval=[out(tree.extracted(s)) for s in sources_of(tree, "eval") if s not in _udhr],
            model=out("raw", "_lid", "model.ftz"),
        output:
            clean=[out(path) for path in tree.clean_files()],
            rejected=[out(tree.under_clean("rejected", f"{lang}.arrow")) for lang in tree.languages],
            clean_pairs=[out(path) for path in tree.pair_files()],
            rejected_pairs=[out(tree.under_clean("rejected", "pairs", f"{pair}.arrow")) for pair in tree.pairs],
            languages=out(tree.under_clean("stats", "languages.json")),
            sizes=report(out(tree.under_clean("stats", "sizes.png")), caption="../report/sizes.rst", category="2. Corpus"),
            rejections=report(out(tree.under_clean("stats", "rejections.png")), caption="../report/rejections.rst",
                              category="2. Corpus"),
            lid_udhr=out(tree.under_clean("stats", "lid_udhr.json")),
        log:
            out(tree.side_path("logs", "clean", "clean.log")),
        benchmark:
            out(tree.side_path("benchmarks", "clean", "clean.tsv"))
        # From config, never workflow.cores: under the Slurm executor that is 1 inside the job.
        threads: config["clean"]["threads"]
        params:
            settings=pfconfig.clean_slice(tree.config, sources_of(tree, "train") + sources_of(tree, "eval")),
        run:
            from pipeline import clean

            settings = pfconfig.with_local_settings(params.settings, config)
            clean.run_clean_stage(settings, input, output, log=log[0], threads=threads)


ALL_TARGETS.extend(
    [out("stats", "languages.json"), out("stats", "lid_udhr.json"), out("stats", "sizes.png"), out("stats", "rejections.png")]
)
