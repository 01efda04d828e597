# Evaluation, transfer families: models/{run}/model.pt (+ the run's held-out data) -> eval/{run}/<family>.json
# and a PNG beside it, each row with the random twin (same config, seeded random weights) beside the model:
#   eval_mlm  per-language MLM perplexity/accuracy on shards/mlm/test; TLM accuracy with the other side
#             visible vs <mask> on shards/tlm/test (model/mlm_eval.py)
#   classify  zero-shot help-module classification: fine-tune on the pivot, test every language on blocks
#             aligned across all of them; frozen-feature probe (model/classify.py)
#   lexicon   FreeDict lexicon induction: Procrustes on seed words, P@1 by NN and CSLS (model/lexicon.py)
# One rule per family, so they run in parallel and `snakemake results/eval/{run}/classify.json` builds one.
# The model is checked against vocab/spm.model (the vocabulary the data was encoded with). One thread each:
# on a busy 2-core machine torch with 2 threads ran a forward pass 6x slower than with 1 (measured).
# An experiment run reads its own Layout's vocabulary, shards and clean files (layout_of in common.smk).

EVAL_RUN = config["train"]["run_name"]
FREEDICT_SOURCES = [s for s in EVAL_SOURCES if config["sources"][s]["format"] == "freedict"]


rule eval_mlm:
    input:
        model=out("models", "{run}", "model.pt"),
        spm=lambda wildcards: out(layout_of(wildcards).vocab_file("spm.model")),
        manifest=lambda wildcards: out(layout_of(wildcards).manifest),
    output:
        json=out("eval", "{run}", "mlm.json"),
        png=report(out("eval", "{run}", "mlm.png"), caption="../report/mlm.rst", category="5. Evaluation", subcategory="language modelling"),
    log:
        out("logs", "eval", "mlm-{run}.log"),
    benchmark:
        out("benchmarks", "eval", "{run}", "mlm.tsv")
    params:
        mlm=lambda wildcards: layout_of(wildcards).config["eval"]["mlm"],
        pivot=lambda wildcards: layout_of(wildcards).config["pivot"],
        seed=lambda wildcards: layout_of(wildcards).config["seed"],
    threads: 1
    run:
        from model.mlm_eval import run_mlm_eval

        run_mlm_eval(input.model, input.spm, input.manifest, params.pivot, params.mlm, params.seed, *output, log[0], threads)


rule classify:
    input:
        model=out("models", "{run}", "model.pt"),
        spm=lambda wildcards: out(layout_of(wildcards).vocab_file("spm.model")),
        clean=lambda wildcards: [out(path) for path in layout_of(wildcards).clean_files()],
    output:
        json=out("eval", "{run}", "classify.json"),
        png=report(out("eval", "{run}", "classify.png"), caption="../report/classify.rst", category="5. Evaluation",
                   subcategory="zero-shot transfer"),
    log:
        out("logs", "eval", "classify-{run}.log"),
    benchmark:
        out("benchmarks", "eval", "{run}", "classify.tsv")
    params:
        classify=lambda wildcards: layout_of(wildcards).config["eval"]["classify"],
        clean=lambda wildcards, input: dict(zip(layout_of(wildcards).languages, input.clean)),
        pivot=lambda wildcards: layout_of(wildcards).config["pivot"],
        seed=lambda wildcards: layout_of(wildcards).config["seed"],
    threads: 1
    run:
        from model.classify import run_classify

        run_classify(input.model, input.spm, params.clean, params.pivot, params.classify, params.seed, *output, log[0], threads)


rule lexicon:
    input:
        model=out("models", "{run}", "model.pt"),
        spm=lambda wildcards: out(layout_of(wildcards).vocab_file("spm.model")),
        clean=lambda wildcards: [out(path) for path in layout_of(wildcards).clean_files()],
        freedict=lambda wildcards: [out(layout_of(wildcards).extracted(s)) for s in sources_of(layout_of(wildcards), "eval", "freedict")],
    output:
        json=out("eval", "{run}", "lexicon.json"),
        png=report(out("eval", "{run}", "lexicon.png"), caption="../report/lexicon.rst", category="5. Evaluation",
                   subcategory="lexicon induction"),
    log:
        out("logs", "eval", "lexicon-{run}.log"),
    benchmark:
        out("benchmarks", "eval", "{run}", "lexicon.tsv")
    params:
        lexicon=lambda wildcards: layout_of(wildcards).config["eval"]["lexicon"],
        clean=lambda wildcards, input: dict(zip(layout_of(wildcards).languages, input.clean)),
        pivot=lambda wildcards: layout_of(wildcards).config["pivot"],
        seed=lambda wildcards: layout_of(wildcards).config["seed"],
    threads: 1
    run:
        from model.lexicon import run_lexicon

        run_lexicon(input.model, input.spm, input.freedict, params.clean, params.pivot, params.lexicon, params.seed, *output, log[0], threads)


EVAL_TRANSFER_TARGETS = [out("eval", EVAL_RUN, f"{family}.{ext}")
                         for family in ("mlm", "classify", "lexicon") for ext in ("json", "png")]
# models/{run}/model.pt comes from the train rule; the families join `all` once a rule makes it.
if "train" in {rule.name for rule in workflow.rules}:
    ALL_TARGETS.extend(EVAL_TRANSFER_TARGETS)
