# mixture, in two rules so that α_train reaches training alone (pipeline/mixture.py):
#   vocab_mixture  clean/{lang}.arrow (train split) -> mixture/vocab.json: n, p and q for alpha_vocab (what the
#                  vocab stage reads)
#   mixture        mixture/vocab.json -> mixture/mixture.json (the same plus q for alpha_train, q/p factors, passes
#                  over each language for mixture.token_budget; what training reads) and mixture/alpha.png
# Editing alpha_train or token_budget reruns `mixture` and training, never the vocabulary or the shards. An
# experiment variant with another mixture gets `vocab_mixture_{key}` / `mixture_{key}` writing mixture/{key}/.


for tree in pfexperiments.stage_instances(LAYOUTS, "mixture"):

    rule:
        name: tree.rule_name("vocab_mixture", "mixture")
        input:
            [out(path) for path in tree.clean_files()],
        output:
            out(tree.vocab_mixture),
        log:
            out(tree.side_path("logs", "mixture", "vocab_mixture.log")),
        benchmark:
            out(tree.side_path("benchmarks", "mixture", "vocab_mixture.tsv"))
        params:
            settings=pfconfig.vocab_mixture_slice(tree.config),
            clean=dict(zip(tree.languages, [out(path) for path in tree.clean_files()])),
        run:
            from pipeline import mixture

            mixture.run_vocab_mixture_stage(params.settings, params.clean, output[0], log=log[0])


for tree in pfexperiments.stage_instances(LAYOUTS, "train_mixture"):

    rule:
        name: tree.rule_name("mixture", "train_mixture")
        input:
            out(tree.vocab_mixture),
        output:
            json=out(tree.train_mixture),
            png=report(out(tree.folder("train_mixture"), "alpha.png"), caption="../report/alpha.rst",
                       category="3. Mixture and vocabulary"),
        log:
            out(tree.side_path("logs", "train_mixture", "mixture.log")),
        benchmark:
            out(tree.side_path("benchmarks", "train_mixture", "mixture.tsv"))
        params:
            settings=pfconfig.train_mixture_slice(tree.config),
        run:
            from pipeline import mixture

            mixture.run_train_mixture_stage(params.settings, input[0], output.json, output.png, log=log[0])


ALL_TARGETS.extend([out("mixture", "vocab.json"), out("mixture", "mixture.json"), out("mixture", "alpha.png")])
