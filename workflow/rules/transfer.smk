# Transfer experiments of issue #12, each a thin rule:
#   unsupervised          models/{run}/model.pt + the lexicon family's words and dictionaries -> eval/{run}/unsupervised.json
#                         (+ .png): MUSE's unsupervised map beside the supervised Procrustes map on the same test words,
#                         ours and the random twin (model/unsupervised.py). Part of `all` beside the other families.
#   monolingual_transfer  models/{variant}/ (a pivot-only model: an experiments variant whose `languages` is the pivot
#                         alone) -> eval/{variant}/monolingual.json (+ .png): per target language a new vocabulary and
#                         embeddings under the frozen body, zero-shot classification with them swapped in, beside the
#                         default run's classify.json (model/monolingual.py). Built by its target; MONOLINGUAL_TARGETS
#                         lists the configured pivot-only variants' results for the experiments target to collect.
# Names from eval_transfer.smk (EVAL_RUN) and common.smk (out, layout_of, sources_of, BASE) are reused; like every
# evaluation rule, `unsupervised` reads its run's own Layout (an experiment variant's vocabulary and clean files).

TRANSFER_TARGETS = [out("eval", EVAL_RUN, f"unsupervised.{ext}") for ext in ("json", "png")]
# Variants trained on the pivot alone: the models monolingual transfer starts from.
MONOLINGUAL_VARIANTS = [name for name, overlay in config.get("experiments", {}).items()
                        if isinstance(overlay, dict) and list(overlay.get("languages") or []) == [config["pivot"]]]
MONOLINGUAL_TARGETS = [out("eval", variant, "monolingual.json") for variant in MONOLINGUAL_VARIANTS]


rule unsupervised:
    input:
        model=out("models", "{run}", "model.pt"),
        spm=lambda wildcards: out(layout_of(wildcards).vocab_file("spm.model")),
        clean=lambda wildcards: [out(path) for path in layout_of(wildcards).clean_files()],
        freedict=lambda wildcards: [out(layout_of(wildcards).extracted(s))
                                    for s in sources_of(layout_of(wildcards), "eval", "freedict")],
    output:
        json=out("eval", "{run}", "unsupervised.json"),
        png=report(out("eval", "{run}", "unsupervised.png"), caption="../report/unsupervised.rst",
                   category="5. Evaluation", subcategory="lexicon induction"),
    log:
        out("logs", "eval", "unsupervised-{run}.log"),
    benchmark:
        out("benchmarks", "eval", "{run}", "unsupervised.tsv")
    params:
        unsupervised=lambda wildcards: layout_of(wildcards).config["eval"]["unsupervised"],
        lexicon=lambda wildcards: layout_of(wildcards).config["eval"]["lexicon"],
        clean=lambda wildcards, input: dict(zip(layout_of(wildcards).languages, input.clean)),
        pivot=lambda wildcards: layout_of(wildcards).config["pivot"],
        seed=lambda wildcards: layout_of(wildcards).config["seed"],
    threads: 1
    run:
        from model.unsupervised import run_unsupervised

        run_unsupervised(input.model, input.spm, input.freedict, params.clean, params.pivot, params.lexicon,
                         params.unsupervised, params.seed, *output, log[0], threads)


rule monolingual_transfer:
    input:
        model=out("models", "{variant}", "model.pt"),
        spm=out("models", "{variant}", "spm.model"),
        clean=[out(path) for path in BASE.clean_files()],  # the default run's languages are the targets
        joint=out("eval", EVAL_RUN, "classify.json"),
    output:
        json=out("eval", "{variant}", "monolingual.json"),
        png=report(out("eval", "{variant}", "monolingual.png"), caption="../report/experiments/monolingual.rst",
                   category="6. Experiments", subcategory="monolingual transfer"),
    log:
        out("logs", "eval", "monolingual-{variant}.log"),
    benchmark:
        out("benchmarks", "eval", "{variant}", "monolingual.tsv")
    params:
        monolingual=config["eval"]["monolingual"],
        classify=config["eval"]["classify"],
        vocab=config["vocab"],
        clean=lambda wildcards, input: dict(zip(BASE.languages, input.clean)),
        targets=[lang for lang in BASE.languages if lang != config["pivot"]],
        pivot=config["pivot"],
        seed=config["seed"],
    threads: 1
    run:
        from model.monolingual import run_monolingual

        run_monolingual(input.model, input.spm, params.clean, params.pivot, params.targets, params.monolingual,
                        params.classify, params.vocab, params.seed, output.json, output.png, input.joint, log[0],
                        threads)


if "train" in {rule.name for rule in workflow.rules}:
    ALL_TARGETS.extend(TRANSFER_TARGETS)
