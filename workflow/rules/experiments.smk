# experiments: the variants of config `experiments:` (pipeline/experiments.py), each trained and evaluated as its
# own runs (models/{run}/, eval/{run}/; run k > 0 of `experiments.seeds` is {variant}-seed{k}), compared with the
# default run. Stages a variant shares with the default run are not rebuilt: the stage rule files build one copy
# per distinct folder (common.smk). Targets, none of them part of `all` (`make run` runs no experiment):
#   experiments             every variant, then eval/experiments/comparison.{json,md,png} and differences.png
#   experiment_{variant}    one variant's runs, trained and evaluated (e.g. `snakemake experiment_mlm_only`); or a
#                           path target such as results/eval/mlm_only/summary.md
#   comparison              model/comparison.py: per language, each variant's retrieval P@1, zero-shot accuracy and
#                           MLM perplexity beside the default run's, with the difference and every seed's number

# group -> run names: "default" first (the default run and its seed reruns, or with `experiments.common` the
# reference runs: the default config with the common overlay alone), then each variant's.
EXPERIMENT_GROUPS = pfexperiments.comparison_groups(config)
# What a variant's target builds: the families the comparison reads (eval/{run}/summary.md by its path).
EXPERIMENT_FILES = ("retrieval.json", "classify.json", "mlm.json")
# Every language some run trained on: the default config's first, then those only a variant has.
EXPERIMENT_LANGUAGES = list(dict.fromkeys(lang for layout in LAYOUTS.values() for lang in layout.languages))



for _variant, _runs in EXPERIMENT_GROUPS.items():
    if _variant == "default":
        continue

    rule:
        name: f"experiment_{_variant}"
        input:
            run_outputs(_runs),


rule comparison:
    input:
        [out("eval", run, f"{family}.json") for runs in EXPERIMENT_GROUPS.values() for run in runs
         for family in ("retrieval", "classify", "mlm")],
    output:
        json=out("eval", "experiments", "comparison.json"),
        md=report(out("eval", "experiments", "comparison.md"), caption="../report/comparison_table.rst",
                  category="6. Experiments"),
        png=report(out("eval", "experiments", "comparison.png"), caption="../report/comparison.rst",
                   category="6. Experiments"),
        differences=report(out("eval", "experiments", "differences.png"), caption="../report/differences.rst",
                           category="6. Experiments"),
    log:
        out("logs", "eval", "comparison.log"),
    params:
        groups=EXPERIMENT_GROUPS,
        languages=EXPERIMENT_LANGUAGES,
        run_languages={run: layout.languages for run, layout in LAYOUTS.items()},
        train_seeds={run: layout.config["train"]["seed"] for run, layout in LAYOUTS.items()},
    run:
        from model.comparison import run_comparison

        run_comparison(params.groups, params.languages, params.run_languages, params.train_seeds, out("eval"),
                       output.json, output.md, output.png, output.differences, log=log[0])  # fmt: skip


rule experiments:
    input:
        run_outputs([run for runs in EXPERIMENT_GROUPS.values() for run in runs]),
        rules.comparison.output,
        MONOLINGUAL_TARGETS,  # pivot-only variants: monolingual transfer (rules/transfer.smk)
