# clean: extracted/{source}/ of every role=train source -> clean/{lang}.arrow, rejected/{lang}.arrow (every
# configured language, possibly empty), clean/pairs/{src}-{tgt}.arrow, rejected/pairs/{src}-{tgt}.arrow,
# stats/languages.json, stats/sizes.png, stats/rejections.png. UDHR (eval sources of format udhr) scores the
# LID model (stats/lid_udhr.json); it and every other eval source (dictionaries) are removed from train. Runs on
# Dask: a LocalCluster of `threads` workers, or the scheduler at config clean.scheduler; outputs do not depend
# on the worker count. The LID model's labels are checked against the configured languages when the rule starts.

UDHR_SOURCES = [s for s in EVAL_SOURCES if config["sources"][s]["format"] == "udhr"]
# Other eval-role sources (FreeDict dictionaries): read only to remove their text from train.
OTHER_EVAL_SOURCES = [s for s in EVAL_SOURCES if s not in UDHR_SOURCES]


rule clean:
    input:
        extracted=expand(out("extracted", "{source}"), source=TRAIN_SOURCES),
        udhr=expand(out("extracted", "{source}"), source=UDHR_SOURCES),
        other_eval=expand(out("extracted", "{source}"), source=OTHER_EVAL_SOURCES),
        model=out("raw", "_lid", "model.ftz"),
    output:
        clean=expand(out("clean", "{lang}.arrow"), lang=LANGUAGES),
        rejected=expand(out("rejected", "{lang}.arrow"), lang=LANGUAGES),
        clean_pairs=expand(out("clean", "pairs", "{pair}.arrow"), pair=PAIRS),
        rejected_pairs=expand(out("rejected", "pairs", "{pair}.arrow"), pair=PAIRS),
        languages=out("stats", "languages.json"),
        sizes=report(out("stats", "sizes.png"), caption="../report/sizes.rst", category="2. Corpus"),
        rejections=report(out("stats", "rejections.png"), caption="../report/rejections.rst", category="2. Corpus"),
        lid_udhr=out("stats", "lid_udhr.json"),
    log:
        out("logs", "clean.log"),
    benchmark:
        out("benchmarks", "clean.tsv")
    # From config, never workflow.cores: under the Slurm executor that is 1 inside the job.
    threads: config["clean"]["threads"]
    params:
        settings=pfconfig.clean_slice(config, TRAIN_SOURCES + EVAL_SOURCES),
    run:
        from pipeline import clean

        settings = pfconfig.with_local_settings(params.settings, config)
        clean.run_clean_stage(settings, input, output, log=log[0], threads=threads)


ALL_TARGETS.extend(
    [out("stats", "languages.json"), out("stats", "lid_udhr.json"), out("stats", "sizes.png"), out("stats", "rejections.png")]
)
