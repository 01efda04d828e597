"""workflow/scripts/unlock.py, which `make run` calls first: a stale lock is removed, a live run's is not."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("unlock", REPO / "workflow" / "scripts" / "unlock.py")
unlock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(unlock)


@pytest.fixture()
def locked(tmp_path: Path) -> Path:
    """A working directory with the lock files a killed Snakemake leaves."""
    work = tmp_path / "work"
    (work / ".snakemake" / "locks").mkdir(parents=True)
    for name in ("0.input.lock", "0.output.lock"):
        (work / ".snakemake" / "locks" / name).write_text("/some/path\n")
    return work


def _fake(tmp_path: Path, body: str) -> Path:
    """An executable named snakemake (what `ps` shows for the real one: python .venv/bin/snakemake ...)."""
    path = tmp_path / "bin" / "snakemake"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{body}\n")
    path.chmod(0o755)
    return path


def _wait_until_seen(directory: Path, timeout: float = 20) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := unlock.live_snakemake(directory):
            return found
        time.sleep(0.05)
    return []


@pytest.mark.parametrize(("cmdline", "expected"), [
    (["/repo/.venv/bin/python", "/repo/.venv/bin/snakemake", "--cores", "2"], True),
    (["snakemake", "-n"], True),
    (["/usr/bin/python3", "-m", "snakemake", "--target-jobs", "x"], True),  # a job process of a run
    (["/usr/bin/python3", "workflow/scripts/unlock.py", "--configfile", "snakemake.yaml"], False),
    (["make", "run"], False),
    ([], False),
])  # fmt: skip
def test_what_counts_as_snakemake(cmdline: list[str], expected: bool) -> None:
    assert unlock.is_snakemake(cmdline) is expected


def test_working_directory_is_the_directory_option_else_the_cwd(tmp_path: Path) -> None:
    assert unlock.working_directory(["snakemake"], str(tmp_path)) == tmp_path.resolve()
    assert unlock.working_directory(["snakemake", "--directory", "sub"], str(tmp_path)) == (tmp_path / "sub").resolve()
    assert unlock.working_directory(["snakemake", "-d", "/x"], str(tmp_path)) == Path("/x")
    assert unlock.working_directory(["snakemake", "--directory=/y"], str(tmp_path)) == Path("/y")


def test_no_lock_means_nothing_to_do(tmp_path: Path) -> None:
    assert unlock.main([], tmp_path, snakemake=str(tmp_path / "never-called")) == 0


@pytest.mark.parametrize("how", ["cwd", "directory option"])
def test_a_live_snakemake_in_the_directory_keeps_its_lock(tmp_path: Path, locked: Path, capsys, how: str) -> None:
    fake = _fake(tmp_path, "import time; time.sleep(60)")
    args, cwd = ([], locked) if how == "cwd" else (["--directory", str(locked)], tmp_path)
    process = subprocess.Popen([str(fake), *args], cwd=cwd)
    try:
        assert _wait_until_seen(locked), "the fake snakemake process was not found"
        assert unlock.main(["--configfile", "c.yaml"], locked, snakemake=str(tmp_path / "never-called")) == 1
        assert f"pid {process.pid}" in capsys.readouterr().err
        assert len(unlock.stale_locks(locked)) == 2
        assert not unlock.live_snakemake(tmp_path / "elsewhere")  # other directories are not held
    finally:
        process.kill()
        process.wait()


def test_a_stale_lock_is_unlocked_with_cores(tmp_path: Path, locked: Path) -> None:
    record = tmp_path / "args.txt"
    fake = _fake(tmp_path, "import shutil, sys\n"
                           f"open({str(record)!r}, 'w').write(' '.join(sys.argv[1:]))\n"
                           "shutil.rmtree('.snakemake/locks')")  # fmt: skip
    assert unlock.main(["--configfile", "tests/tiny.yaml"], locked, snakemake=str(fake)) == 0
    assert record.read_text() == "--unlock --cores 1 --configfile tests/tiny.yaml"
    assert not unlock.stale_locks(locked)


def test_a_failing_unlock_is_not_hidden(tmp_path: Path, locked: Path, capsys) -> None:
    fake = _fake(tmp_path, "import sys; sys.exit(3)")
    assert unlock.main([], locked, snakemake=str(fake)) == 3
    assert "failed (exit 3)" in capsys.readouterr().err
