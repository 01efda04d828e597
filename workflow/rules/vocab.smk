# vocab: clean/{lang}.arrow + mixture/mixture.json -> one joint SentencePiece model trained on an α-sampled,
# streamed sample (vocab/spm.model, spm.vocab), the per-language tokenizer report (report.json, report.png)
# and the transformers tokenizer folder (vocab/hf/). SentencePiece uses config vocab.num_threads, never
# {threads}: its pieces depend on the thread count; `threads:` only tells the scheduler what it occupies.


rule vocab:
    input:
        clean=expand(out("clean", "{lang}.arrow"), lang=LANGUAGES),
        mixture=out("mixture", "mixture.json"),
    output:
        model=out("vocab", "spm.model"),
        vocab=out("vocab", "spm.vocab"),
        report=out("vocab", "report.json"),
        plot=report(out("vocab", "report.png"), caption="../report/vocab.rst", category="3. Mixture and vocabulary"),
        hf=directory(out("vocab", "hf")),
    log:
        out("logs", "vocab.log"),
    benchmark:
        out("benchmarks", "vocab.tsv")
    threads: config["vocab"]["num_threads"]
    params:
        settings=pfconfig.vocab_slice(config),
        clean=lambda wildcards, input: dict(zip(LANGUAGES, input.clean)),
    run:
        from pipeline import vocab

        vocab.run_vocab_stage(params.settings, params.clean, input.mixture, vocab.VocabOutputs.of(output), log=log[0])


ALL_TARGETS.extend(
    [out("vocab", name) for name in ("spm.model", "spm.vocab", "report.json", "report.png")] + [out("vocab", "hf")]
)
