# export: models/{run}/model.pt + vocab/hf -> models/{run}/hf, a transformers XLMWithLMHeadModel folder
# (config.json + model.safetensors) with the vocabulary's tokenizer beside it, loadable offline with
# AutoModelForMaskedLM / AutoTokenizer. model.export checks the vocabulary's sha256 against the one the
# model was trained with, compares logits of the written folder with the checkpoint, then renames it in.


rule export:
    input:
        model=out("models", "{run}", "model.pt"),
        vocab=out("vocab", "hf"),
    output:
        directory(out("models", "{run}", "hf")),
    log:
        out("logs", "export-{run}.log"),
    run:
        import contextlib

        from model import export

        with open(log[0], "w") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
            export.main([input.model, "--vocab", input.vocab, "--out", output[0]])


ALL_TARGETS.append(out("models", config["train"]["run_name"], "hf"))
