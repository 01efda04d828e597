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


def planned_jobs(
    output_dir: Path, configfile: Path, targets: list[str] | None = None, cores: int = 2
) -> dict[str, int]:
    """The jobs a dry run of ``targets`` into ``output_dir`` would run, by rule (empty when nothing is to be done)."""
    command = snakemake_command(output_dir, targets, configfile=str(configfile), cores=cores) + ["--dry-run"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-6000:]
        raise RuntimeError(f"snakemake --dry-run failed ({result.returncode}):\n{tail}")
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1].split("total", 1)[0].splitlines()[3:]  # skip the header and its rule
    return {line.split()[0]: int(line.split()[1]) for line in table if line.strip()}
