# download: each source in config -> raw/{source}/ (unpacked, with resolved.json), verified by sha256 and
# cached by hash in cache_dir; the LID model -> raw/_lid/model.ftz; every resolved.json -> sources.lock.

import re


rule download:
    output:
        directory(out("raw", "{source}")),
    log:
        out("logs", "download", "{source}.log"),
    wildcard_constraints:
        source="|".join(re.escape(s) for s in ALL_SOURCES),
    retries: 1
    run:
        from pipeline import download

        download.fetch_source(config, wildcards.source, output[0], log=log[0])


rule lid_model:
    output:
        out("raw", "_lid", "model.ftz"),
    log:
        out("logs", "download", "lid_model.log"),
    run:
        from pipeline import download

        download.fetch_lid_model(config, output[0], log=log[0])


rule lock:
    input:
        expand(out("raw", "{source}"), source=ALL_SOURCES),
    output:
        config["lock_file"],
    log:
        out("logs", "download", "lock.log"),
    run:
        from pipeline import download

        download.write_lock(config, [f"{d}/resolved.json" for d in input], output[0])


ALL_TARGETS.extend([out("raw", s) for s in ALL_SOURCES])
ALL_TARGETS.extend([out("raw", "_lid", "model.ftz"), config["lock_file"]])
