# export: models/{run}/model.pt + vocab/hf -> models/{run}/hf, a transformers XLMWithLMHeadModel folder
# (config.json + model.safetensors) with the vocabulary's tokenizer beside it, loadable offline with
# AutoModelForMaskedLM / AutoTokenizer. model.export checks the vocabulary's sha256 against the one the
# model was trained with, compares logits of the written folder with the checkpoint, then renames it in.


rule export:
    input:
        model=out("models", "{run}", "model.pt"),
        vocab=lambda wildcards: out(layout_of(wildcards).vocab_file("hf")),
    output:
        directory(out("models", "{run}", "hf")),
    log:
        out("logs", "export-{run}.log"),
    benchmark:
        out("benchmarks", "export-{run}.tsv")
    run:
        from model import export

        export.export(input.model, input.vocab, output[0], log=log[0])


ALL_TARGETS.append(out("models", config["train"]["run_name"], "hf"))
