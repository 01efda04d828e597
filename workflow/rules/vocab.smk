# vocab: clean/{lang}.arrow + mixture/vocab.json -> one joint SentencePiece model trained on an α-sampled,
# streamed sample (vocab/spm.model, spm.vocab), the per-language tokenizer report (report.json, report.png)
# and the transformers tokenizer folder (vocab/hf/). SentencePiece uses config vocab.num_threads, never
# {threads}: its pieces depend on the thread count; `threads:` only tells the scheduler what it occupies.
# An experiment variant with another vocabulary (vocab.*, or other data before it) gets `vocab_{key}`: vocab/{key}/.


for tree in pfexperiments.stage_instances(LAYOUTS, "vocab"):

    rule:
        name: tree.rule_name("vocab", "vocab")
        input:
            clean=[out(path) for path in tree.clean_files()],
            mixture=out(tree.vocab_mixture),
        output:
            model=out(tree.vocab_file("spm.model")),
            vocab=out(tree.vocab_file("spm.vocab")),
            report=out(tree.vocab_file("report.json")),
            plot=report(out(tree.vocab_file("report.png")), caption="../report/vocab.rst",
                        category="3. Mixture and vocabulary"),
            hf=directory(out(tree.vocab_file("hf"))),
        log:
            out(tree.side_path("logs", "vocab", "vocab.log")),
        benchmark:
            out(tree.side_path("benchmarks", "vocab", "vocab.tsv"))
        threads: tree.config["vocab"]["num_threads"]
        params:
            settings=pfconfig.vocab_slice(tree.config),
            clean=dict(zip(tree.languages, [out(path) for path in tree.clean_files()])),
        run:
            from pipeline import vocab

            vocab.run_vocab_stage(params.settings, params.clean, input.mixture, vocab.VocabOutputs.of(output), log=log[0])


ALL_TARGETS.extend(
    [out("vocab", name) for name in ("spm.model", "spm.vocab", "report.json", "report.png")] + [out("vocab", "hf")]
)
