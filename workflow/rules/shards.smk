# shards: clean/{lang}.arrow + clean/pairs/{src}-{tgt}.arrow + vocab/spm.model -> MLM streams of bptt ids
# (shards/mlm/{split}/{lang}-{i:05d}.arrow), filtered TLM pairs (shards/tlm/{split}/{src}-{tgt}-{i:05d}.arrow)
# and shards/manifest.json. The manifest is the declared output and is written last (each shard file is
# atomic on its own), so a killed run never leaves a manifest; the stage resets mlm/ and tlm/ on a rerun.
# An experiment variant with other shards (another vocabulary, other data, shards.*) gets `shards_{key}`:
# shards/{key}/. The training mixture is not read here: a variant changing alpha_train shares the shards.


for tree in pfexperiments.stage_instances(LAYOUTS, "shards"):

    rule:
        name: tree.rule_name("shards", "shards")
        input:
            clean=[out(path) for path in tree.clean_files()],
            pairs=[out(path) for path in tree.pair_files()],
            model=out(tree.vocab_file("spm.model")),
        output:
            manifest=out(tree.manifest),
        log:
            out(tree.side_path("logs", "shards", "shards.log")),
        benchmark:
            out(tree.side_path("benchmarks", "shards", "shards.tsv"))
        # Encoding threads, from config (never workflow.cores, which is 1 inside a Slurm job); ids do not depend on them.
        threads: config["shards"]["threads"]
        params:
            settings=pfconfig.shards_slice(tree.config),
            clean=dict(zip(tree.languages, [out(path) for path in tree.clean_files()])),
        run:
            from pipeline.shards import run_shards_stage

            run_shards_stage(params.settings, params.clean, input.pairs, input.model, output.manifest, log=log[0],
                             threads=threads)  # fmt: skip


ALL_TARGETS.append(out("shards", "manifest.json"))
