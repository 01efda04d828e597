# shards: clean/{lang}.arrow + clean/pairs/{src}-{tgt}.arrow + vocab/spm.model -> MLM streams of bptt ids
# (shards/mlm/{split}/{lang}-{i:05d}.arrow), filtered TLM pairs (shards/tlm/{split}/{src}-{tgt}-{i:05d}.arrow)
# and shards/manifest.json. The manifest is the declared output and is written last (each shard file is
# atomic on its own), so a killed run never leaves a manifest; the stage resets mlm/ and tlm/ on a rerun.


rule shards:
    input:
        clean=expand(out("clean", "{lang}.arrow"), lang=LANGUAGES),
        pairs=[out("clean", "pairs", f"{p}.arrow") for p in PAIRS],
        model=out("vocab", "spm.model"),
    output:
        manifest=out("shards", "manifest.json"),
    log:
        out("logs", "shards.log"),
    benchmark:
        out("benchmarks", "shards.tsv")
    # Encoding threads, from config (never workflow.cores, which is 1 inside a Slurm job); ids do not depend on them.
    threads: config["shards"]["threads"]
    params:
        settings=pfconfig.shards_slice(config),
        clean=lambda wildcards, input: dict(zip(LANGUAGES, input.clean)),
    run:
        from pipeline.shards import run_shards_stage

        run_shards_stage(params.settings, params.clean, input.pairs, input.model, output.manifest, log=log[0],
                         threads=threads)  # fmt: skip

ALL_TARGETS.append(out("shards", "manifest.json"))
