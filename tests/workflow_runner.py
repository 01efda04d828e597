"""Run the real Snakemake workflow on a config, into a chosen output root (used by the tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def snakemake_command(
    output_dir: Path, targets: list[str] | None = None, configfile: str = "tests/tiny.yaml", cores: int = 2
) -> list[str]:
    return [
        str(SNAKEMAKE),
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(REPO),
        "--configfile", str(REPO / configfile),
        "--config", f"output_dir={output_dir}", f"lock_file={output_dir / 'sources.lock'}",
        "--cores", str(cores),
        "--rerun-incomplete",
        "--nolock",
        *(targets or []),
    ]  # fmt: skip


def run_workflow(output_dir: Path, targets: list[str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run snakemake to completion; raise with its log tail if it fails."""
    log = output_dir.parent / f"{output_dir.name}.snakemake.log"
    with open(log, "w") as handle:
        result = subprocess.run(
            snakemake_command(output_dir, targets, **kwargs),
            cwd=REPO, stdout=handle, stderr=subprocess.STDOUT,
        )  # fmt: skip
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
        raise RuntimeError(f"snakemake failed ({result.returncode}); log {log}:\n{tail}")
    return result
