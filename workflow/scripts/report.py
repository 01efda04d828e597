"""Write the run's HTML report after `make run`: `snakemake --report OUTPUT_DIR/report.html` with the run's arguments.

    python workflow/scripts/report.py --configfile CONFIG [other snakemake arguments]

OUTPUT_DIR is the config's ``output_dir`` (default ``results``), or the last ``--config output_dir=...`` among
the arguments, as Snakemake itself resolves it. A dry run (``-n``/``--dry-run``) writes no report: the files
the report embeds do not exist yet. `snakemake --report` reads what the run recorded in ``.snakemake/``, so it
runs in the same directory with the same arguments.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

DRY_RUN = {"-n", "--dry-run", "--dryrun"}


def output_dir(argv: Sequence[str]) -> Path:
    """The output root the run used: ``--config output_dir=X`` (last one wins), else the config file's."""
    configfile, override, in_config = None, None, False
    for i, arg in enumerate(argv):
        if arg == "--configfile" and i + 1 < len(argv):
            configfile = argv[i + 1]
        elif arg.startswith("--configfile="):
            configfile = arg.split("=", 1)[1]
        if arg == "--config":
            in_config = True
            continue
        if in_config and arg.startswith("-"):
            in_config = False
        if in_config and arg.startswith("output_dir="):
            override = arg.split("=", 1)[1]
    if override is not None:
        return Path(override)
    data = yaml.safe_load(Path(configfile or "config.yaml").read_text(encoding="utf-8")) or {}
    return Path(data.get("output_dir", "results"))


def main(argv: Sequence[str], snakemake: str | None = None) -> int:
    if DRY_RUN & set(argv):
        print("report: dry run, no report written", file=sys.stderr)
        return 0
    target = output_dir(argv) / "report.html"
    snakemake = snakemake or str(Path(sys.executable).with_name("snakemake"))
    result = subprocess.run([snakemake, *argv, "--report", str(target)])
    if result.returncode == 0:
        print(f"report: {target}", file=sys.stderr)
    else:
        print(f"report: `snakemake --report {target}` failed (exit {result.returncode})", file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
