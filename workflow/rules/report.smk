# report: what `snakemake --report` shows beyond the stages' own plots (each stage marks its plots with
# report() and a caption in workflow/report/). Two thin rules:
#   lid_udhr_plot  stats/lid_udhr.json (the clean stage's LID score on UDHR) -> stats/lid_udhr.png
#   summary        eval/{run}/{retrieval,classify,mlm,lexicon}.json -> eval/{run}/summary.md, the headline
#                  table per configured language ("no data" where a family has none; model/summary.py)
# Write the report after a run with `snakemake --configfile CONFIG --report OUTPUT_DIR/report.html` (`make run`
# does): every file marked report() must exist, so it comes after the run.

REPORT_RUN = config["train"]["run_name"]


rule lid_udhr_plot:
    input:
        out("stats", "lid_udhr.json"),
    output:
        report(out("stats", "lid_udhr.png"), caption="../report/lid_udhr.rst", category="2. Corpus"),
    log:
        out("logs", "lid_udhr_plot.log"),
    run:
        from pipeline.logs import stage_logging
        from pipeline.stats import plot_lid_udhr

        with stage_logging(log[0]):
            plot_lid_udhr(input[0], output[0])


rule summary:
    input:
        retrieval=out("eval", "{run}", "retrieval.json"),
        classify=out("eval", "{run}", "classify.json"),
        mlm=out("eval", "{run}", "mlm.json"),
        lexicon=out("eval", "{run}", "lexicon.json"),
    output:
        report(out("eval", "{run}", "summary.md"), caption="../report/summary.rst", category="1. Summary"),
    log:
        out("logs", "eval", "summary-{run}.log"),
    params:
        languages=lambda wildcards: layout_of(wildcards).languages,
        pivot=lambda wildcards: layout_of(wildcards).config["pivot"],
    run:
        from model.summary import write_summary

        write_summary(params.languages, params.pivot, wildcards.run, input, output[0], log=log[0])


ALL_TARGETS.append(out("stats", "lid_udhr.png"))
# The evaluation families join `all` once a rule makes models/{run}/model.pt; so does their summary.
if "train" in {rule.name for rule in workflow.rules}:
    ALL_TARGETS.append(out("eval", REPORT_RUN, "summary.md"))
