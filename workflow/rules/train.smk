# train: shards/manifest.json + mixture/mixture.json + vocab/spm.model -> the XLM encoder (model/train.py):
# models/{run}/model.pt, a copy of the vocabulary, metrics.jsonl and loss.png. Checkpoints go to
# models/{run}/checkpoints/{fingerprint}/, deliberately not a declared output: Snakemake deletes declared and
# incomplete outputs before a rerun, and a killed run must resume from them (`make run` again).
# train.nproc > 1 runs torchrun (DDP); otherwise `python -m model.train`. Output of either goes to the log.

RUN = config["train"]["run_name"]


rule train:
    input:
        manifest=out("shards", "manifest.json"),
        mixture=out("mixture", "mixture.json"),
        spm=out("vocab", "spm.model"),
    output:
        model=out("models", RUN, "model.pt"),
        spm=out("models", RUN, "spm.model"),
        metrics=out("models", RUN, "metrics.jsonl"),
        plot=report(out("models", RUN, "loss.png"), caption="../report/loss.rst", category="4. Training"),
    log:
        out("logs", f"train-{RUN}.log"),
    benchmark:
        out("benchmarks", f"train-{RUN}.tsv")
    params:
        train=config["train"],
    threads: config["train"]["threads"]
    resources:
        mem_mb=4000,
        gpus=1 if config["train"]["device"] == "cuda" else 0,
    run:
        from model.train import launch

        launch(params.train, OUT, out("models", RUN), threads, log[0])


ALL_TARGETS.extend([out("models", RUN, name) for name in ("model.pt", "spm.model", "metrics.jsonl", "loss.png")])
