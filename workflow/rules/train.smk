# train: shards/manifest.json + mixture/mixture.json + vocab/spm.model -> the XLM encoder (model/train.py):
# models/{run}/model.pt, a copy of the vocabulary, metrics.jsonl and loss.png. Checkpoints go to
# models/{run}/checkpoints/{fingerprint}/, deliberately not a declared output: Snakemake deletes declared and
# incomplete outputs before a rerun, and a killed run must resume from them (`make run` again).
# model/launch.py builds the command: `python -m model.train`; torchrun (DDP) for train.nproc > 1 (under the
# Slurm profile the jobstep's `srun -n1` already wraps the job: no srun is nested); for train.nodes > 1 the
# executor's `mpi` resource (slurm_resources) makes the rule run `srun ... torchrun --nnodes ...` itself.
# Every process's output goes to the log, whose first line is the command.
# {run} is the default run (train.run_name) or a run of an experiment variant (pipeline/experiments.py): each reads
# its own Layout's shards, training mixture and vocabulary, and trains with its own train section.

from model.launch import slurm_resources

RUN = config["train"]["run_name"]


rule train:
    input:
        unpack(train_inputs),
    output:
        model=out("models", "{run}", "model.pt"),
        spm=out("models", "{run}", "spm.model"),
        metrics=out("models", "{run}", "metrics.jsonl"),
        plot=report(out("models", "{run}", "loss.png"), caption="../report/loss.rst", category="4. Training",
                    subcategory="{run}"),
    log:
        out("logs", "train-{run}.log"),
    benchmark:
        out("benchmarks", "train-{run}.tsv")
    wildcard_constraints:
        run=RUN_PATTERN,
    params:
        train=lambda wildcards: LAYOUTS[wildcards.run].config["train"],
    threads: config["train"]["threads"]
    resources:
        mem_mb=4000,
        **slurm_resources(config["train"]),
    run:
        from model.launch import launch

        data = {"manifest": input.manifest, "mixture": input.mixture, "spm": input.spm}
        launch(params.train, OUT, out("models", wildcards.run), threads, log[0], data=data,
               launcher=resources.get("mpi"))


ALL_TARGETS.extend([out("models", RUN, name) for name in ("model.pt", "spm.model", "metrics.jsonl", "loss.png")])
