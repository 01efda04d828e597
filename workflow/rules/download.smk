# download: each source in config -> raw/{source}/ (unpacked, with resolved.json), verified by sha256 and
# cached by hash in cache_dir; the LID model -> raw/_lid/model.ftz; every resolved.json -> sources.lock.
# Sources an experiment variant adds are downloaded too (FETCHED_SOURCES); the lock holds the default config's.


rule download:
    output:
        directory(out("raw", "{source}")),
    log:
        out("logs", "download", "{source}.log"),
    benchmark:
        out("benchmarks", "download", "{source}.tsv")
    wildcard_constraints:
        source="|".join(re.escape(s) for s in FETCHED_SOURCES),
    retries: 1
    params:
        settings=lambda wildcards: pfconfig.download_slice({"sources": FETCHED_SOURCES}, wildcards.source),
    run:
        from pipeline import download

        settings = pfconfig.with_local_settings(params.settings, config)
        download.fetch_source(settings, wildcards.source, output[0], log=log[0])


rule lid_model:
    output:
        out("raw", "_lid", "model.ftz"),
    log:
        out("logs", "download", "lid_model.log"),
    benchmark:
        out("benchmarks", "download", "lid_model.tsv")
    params:
        settings=pfconfig.lid_model_slice(config),
    run:
        from pipeline import download

        download.fetch_lid_model(pfconfig.with_local_settings(params.settings, config), output[0], log=log[0])


# The lock file may be shared by several configs (each writes its own sources, keeps the others'), so it is
# an update() output: Snakemake neither deletes it before the rule runs nor after a failure (it restores it).
rule lock:
    input:
        expand(out("raw", "{source}"), source=ALL_SOURCES),
    output:
        update(config["lock_file"]),
    log:
        out("logs", "download", "lock.log"),
    benchmark:
        out("benchmarks", "download", "lock.tsv")
    run:
        from pipeline import download

        download.write_lock([f"{d}/resolved.json" for d in input], output[0], log=log[0])


ALL_TARGETS.extend([out("raw", s) for s in ALL_SOURCES])
ALL_TARGETS.extend([out("raw", "_lid", "model.ftz"), config["lock_file"]])
