"""Remove a stale Snakemake lock left by a killed run, unless a Snakemake process still runs here.

`make run` calls this before Snakemake, so a user whose run was killed (SIGKILL, a closed terminal, a
lost machine) just runs `make run` again:

    python workflow/scripts/unlock.py --configfile CONFIG [other snakemake arguments]

* No lock in ``.snakemake/locks``: nothing to do.
* A lock, and a live Snakemake process whose working directory is this one (its ``--directory``, or
  its current directory): the lock may be that run's; refuse, name the process, exit 1.
* A lock and no such process: the lock is stale; ``snakemake --unlock --cores 1`` with the given
  arguments (``--cores`` because rules size their threads from ``workflow.cores``); its errors show.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import psutil

LOCKS = Path(".snakemake") / "locks"
# Arguments of `snakemake --unlock` beyond those given: it parses the Snakefile, and some rules ask for cores.
UNLOCK_ARGS = ("--unlock", "--cores", "1")


def is_snakemake(cmdline: Sequence[str]) -> bool:
    """``snakemake ...``, ``python .venv/bin/snakemake ...`` or ``python -m snakemake ...`` (also its job processes)."""
    head = [Path(arg).name for arg in cmdline[:2]]
    return "snakemake" in head or list(cmdline[1:3]) == ["-m", "snakemake"]


def working_directory(cmdline: Sequence[str], cwd: str) -> Path:
    """Where a Snakemake process keeps ``.snakemake/``: its ``--directory`` (``-d``), else its current directory."""
    where = None
    for i, arg in enumerate(cmdline):
        if arg in ("-d", "--directory") and i + 1 < len(cmdline):
            where = cmdline[i + 1]
        elif arg.startswith("--directory="):
            where = arg.split("=", 1)[1]
    return (Path(cwd) / where).resolve() if where else Path(cwd).resolve()


def live_snakemake(directory: Path) -> list[psutil.Process]:
    """Live Snakemake processes (not this one or its parents) working in ``directory``."""
    directory = directory.resolve()
    me = psutil.Process()
    exclude = {me.pid} | {p.pid for p in me.parents()}
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        try:
            cmdline, cwd = proc.info["cmdline"] or [], proc.info["cwd"]
            if proc.pid in exclude or proc.info["status"] == psutil.STATUS_ZOMBIE or not cwd:
                continue
            if is_snakemake(cmdline) and working_directory(cmdline, cwd) == directory:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def stale_locks(directory: Path) -> list[Path]:
    return sorted((directory / LOCKS).glob("*.lock"))


def main(argv: Sequence[str], directory: Path | None = None, snakemake: str | None = None) -> int:
    directory = (directory or Path.cwd()).resolve()
    locks = stale_locks(directory)
    if not locks:
        return 0
    running = live_snakemake(directory)
    if running:
        names = "; ".join(f"pid {p.pid}: {' '.join(p.info['cmdline'])[:200]}" for p in running)
        print(
            f"unlock: {directory} is locked and Snakemake still runs there ({names}). Not unlocking: wait for "
            "it to finish or stop it, then run again.",
            file=sys.stderr,
        )
        return 1
    snakemake = snakemake or str(Path(sys.executable).with_name("snakemake"))
    print(f"unlock: {len(locks)} stale lock file(s) in {directory / LOCKS} and no Snakemake running there: "
          "unlocking (a killed run; --rerun-incomplete redoes its unfinished jobs)", file=sys.stderr)  # fmt: skip
    result = subprocess.run([snakemake, *UNLOCK_ARGS, *argv], cwd=directory)
    if result.returncode != 0:
        print(f"unlock: `snakemake --unlock` failed (exit {result.returncode})", file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
