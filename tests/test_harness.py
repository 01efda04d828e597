"""The rules tests/conftest.py adds: skips fail under CI=true, and registry-fetching fixtures mark tests network."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parent / "conftest.py"

SKIPPING = '''
import shutil
import pytest

pytestmark = pytest.mark.skipif(shutil.which("no-such-tool-polyforge") is None, reason="no-such-tool is not installed")


def test_needs_the_tool():
    pass
'''

SKIPPING_AT_IMPORT = '''
import pytest

pytest.skip("not root", allow_module_level=True)


def test_as_root():
    pass
'''

USES_THE_LID_MODEL = '''
def test_a(lid_model_path):
    pass


def test_b():
    pass
'''


def _pytest(folder: Path, ci: str | None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", *args],
                          cwd=folder, env=env, capture_output=True, text=True)  # fmt: skip


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_tool.py").write_text(SKIPPING)
    (tmp_path / "test_root.py").write_text(SKIPPING_AT_IMPORT)
    return tmp_path


@pytest.mark.parametrize(("test_file", "reason"), [("test_tool.py", "no-such-tool is not installed"),
                                                   ("test_root.py", "not root")])  # fmt: skip
def test_missing_tool_skips_locally_and_fails_under_ci(folder: Path, test_file: str, reason: str) -> None:
    local = _pytest(folder, None, test_file)
    assert local.returncode in (0, 5) and "1 skipped" in local.stdout, local.stdout  # 5: nothing collected
    ci = _pytest(folder, "true", test_file)
    assert ci.returncode != 0 and f"skipped under CI=true, where `make` installs what the tests need: {reason}" in (
        ci.stdout
    ), ci.stdout
    assert "skipped" not in ci.stdout.splitlines()[-1]
    assert _pytest(folder, "false", test_file).returncode in (0, 5)


def test_a_registry_fixture_marks_the_test_network(tmp_path: Path) -> None:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_lid.py").write_text(USES_THE_LID_MODEL)
    result = _pytest(tmp_path, None, "-m", "not network", "--collect-only")
    assert "test_lid.py::test_b" in result.stdout and "test_lid.py::test_a" not in result.stdout, result.stdout
