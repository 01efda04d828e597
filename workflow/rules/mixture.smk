# mixture: clean/{lang}.arrow (train split) -> mixture/mixture.json (n, p, q for alpha_vocab and alpha_train,
# q/p factors, passes over each language for mixture.token_budget) and mixture/alpha.png (p vs q for several α).


rule mixture:
    input:
        expand(out("clean", "{lang}.arrow"), lang=LANGUAGES),
    output:
        json=out("mixture", "mixture.json"),
        png=report(out("mixture", "alpha.png"), caption="../report/alpha.rst", category="3. Mixture and vocabulary"),
    log:
        out("logs", "mixture.log"),
    benchmark:
        out("benchmarks", "mixture.tsv")
    params:
        settings=pfconfig.mixture_slice(config),
    run:
        from pipeline import mixture

        mixture.run_mixture_stage(params.settings, dict(zip(LANGUAGES, input)), output.json, output.png, log=log[0])


ALL_TARGETS.extend([out("mixture", "mixture.json"), out("mixture", "alpha.png")])
