"""Byte-for-byte rebuilds, and a run killed in the middle of the shard stage that is simply run again."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.ipc as ipc
import pytest

from tests.workflow_runner import REPO, run_workflow, snakemake_command

pytestmark = [pytest.mark.workflow, pytest.mark.network, pytest.mark.slow]

# Everything the design promises to be byte-identical (timings live in separate files).
COMPARED = ["extracted", "clean", "rejected", "stats/languages.json", "mixture/vocab.json", "mixture/mixture.json",
            "vocab/spm.model", "vocab/spm.vocab", "vocab/report.json", "shards"]  # fmt: skip


def _digests(root: Path) -> dict[str, str]:
    found = {}
    for name in COMPARED:
        path = root / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            if not file.name.startswith("."):
                found[str(file.relative_to(root))] = hashlib.sha256(file.read_bytes()).hexdigest()
    return found


def test_a_clean_rebuild_is_byte_identical(tiny_run: Path, tmp_path: Path) -> None:
    rebuild = tmp_path / "results"
    # The shards need the vocabulary's mixture (mixture/vocab.json); training's (mixture/mixture.json) is asked for.
    run_workflow(rebuild, targets=[str(rebuild / "shards" / "manifest.json"), str(rebuild / "mixture" / "mixture.json")])
    first, second = _digests(tiny_run), _digests(rebuild)
    assert any(name.startswith("shards/") for name in first)
    assert first == second
    assert (tiny_run / "shards" / "manifest.json").read_bytes() == (rebuild / "shards" / "manifest.json").read_bytes()


def _locking_command(output_dir: Path, *extra: str) -> list[str]:
    """The command as `make run` gives it: with Snakemake's lock on the working directory."""
    return [c for c in snakemake_command(output_dir) if c != "--nolock"] + list(extra)


def _start_killable(output_dir: Path) -> subprocess.Popen:
    command = _locking_command(output_dir, str(output_dir / "shards" / "manifest.json"))
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip


def _wait_for_shard_stage(process: subprocess.Popen, shards: Path, timeout: float = 300) -> bool:
    """Poll until the shard stage has begun writing; True if it was caught before it finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if shards.exists() and any(p.is_file() for p in shards.rglob("*")):
            return not (shards / "manifest.json").exists()
        time.sleep(0.005)
    return False


def test_killed_shard_stage_then_rerun_gives_the_same_manifest(tiny_run: Path, tmp_path: Path) -> None:
    output_dir = tmp_path / "results"
    # Start from the reference run's outputs up to the vocabulary, so only the shard stage is left to run.
    shutil.copytree(tiny_run, output_dir, symlinks=True, ignore=shutil.ignore_patterns("shards"))
    process = _start_killable(output_dir)
    caught = _wait_for_shard_stage(process, output_dir / "shards")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert caught, "the shard stage finished before it could be killed"
    assert not (output_dir / "shards" / "manifest.json").exists()
    for shard in (output_dir / "shards").rglob("*.arrow"):  # whatever looks finished must be whole
        with open(shard, "rb") as handle:
            ipc.open_file(handle).read_all()

    # What `make run` does after a crash: unlock the stale lock, then rerun incomplete jobs.
    subprocess.run(_locking_command(output_dir, "--unlock"), cwd=REPO, check=True, capture_output=True)
    rerun = subprocess.run(_locking_command(output_dir, str(output_dir / "shards" / "manifest.json")), cwd=REPO,
                           capture_output=True, text=True)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    reference = json.loads((tiny_run / "shards" / "manifest.json").read_text())
    assert json.loads((output_dir / "shards" / "manifest.json").read_text()) == reference
    assert _digests(output_dir)["shards/manifest.json"] == _digests(tiny_run)["shards/manifest.json"]


def _make_run(output_dir: Path) -> list[str]:
    """`make run CONFIG=tests/tiny.yaml` into ``output_dir``, as a user types it (SNAKEMAKE_ARGS for the root).

    ``-o .venv/.installed``: never rebuild the environment from inside a test (a fresh checkout's
    requirements.lock can look newer than the stamp); on CI the stamp is up to date and it changes nothing.
    """
    args = f"--config output_dir={output_dir} lock_file={output_dir / 'sources.lock'}"
    return ["make", "--no-print-directory", "-o", ".venv/.installed", "run", "CONFIG=tests/tiny.yaml",
            f"SNAKEMAKE_ARGS={args}"]  # fmt: skip


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 600) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_killed_mid_rule_then_make_run_again(tmp_path: Path) -> None:
    from tests import golden
    from tests.test_unlock import unlock

    output_dir = tmp_path / "results"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(_make_run(output_dir), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)  # fmt: skip
        try:
            started = _wait_for(output_dir / "logs" / "clean.log", first)  # the clean rule is running
            assert started, (tmp_path / "first.log").read_text()[-3000:]
            # While that run lives, its lock is not stale: unlocking is refused.
            refused = subprocess.run([sys.executable, str(REPO / "workflow" / "scripts" / "unlock.py"),
                                      "--configfile", "tests/tiny.yaml"], cwd=REPO, capture_output=True,
                                     text=True)  # fmt: skip
            assert refused.returncode == 1 and "Not unlocking" in refused.stderr, refused.stderr
        finally:
            os.killpg(first.pid, signal.SIGKILL)  # make, snakemake, its job processes and Dask workers
            first.wait()
    assert not (output_dir / "stats" / "languages.json").exists(), "the clean rule finished before the kill"
    assert unlock.stale_locks(REPO), "the killed run left no lock: this test would not test the unlock"
    deadline = time.monotonic() + 30
    while unlock.live_snakemake(REPO) and time.monotonic() < deadline:
        time.sleep(0.1)  # the killed processes are gone once the kernel has reaped them

    again = subprocess.run(_make_run(output_dir), cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "unlocking" in again.stderr
    assert not unlock.stale_locks(REPO)
    expected, found = golden.read_list(), golden.digests(output_dir)
    assert found == expected, sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
