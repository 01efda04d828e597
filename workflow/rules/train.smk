# train: shards/manifest.json + mixture/mixture.json + vocab/spm.model -> the XLM encoder (model/train.py):
# models/{run}/model.pt, a copy of the vocabulary, metrics.jsonl and loss.png. Checkpoints go to
# models/{run}/checkpoints/{fingerprint}/, deliberately not a declared output: Snakemake deletes declared and
# incomplete outputs before a rerun, and a killed run must resume from them (`make run` again).
# model/launch.py builds the command: `python -m model.train`; torchrun (DDP) for train.nproc > 1 (under the
# Slurm profile the jobstep's `srun -n1` already wraps the job: no srun is nested); for train.nodes > 1 the
# executor's `mpi` resource (slurm_resources) makes the rule run `srun ... torchrun --nnodes ...` itself.
# Every process's output goes to the log, whose first line is the command.

from model.launch import slurm_resources

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
        **slurm_resources(config["train"]),
    run:
        from model.launch import launch

        launch(params.train, OUT, out("models", RUN), threads, log[0], launcher=resources.get("mpi"))


ALL_TARGETS.extend([out("models", RUN, name) for name in ("model.pt", "spm.model", "metrics.jsonl", "loss.png")])
