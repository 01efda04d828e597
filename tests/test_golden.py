"""A fresh tiny run reproduces the committed golden list of data-file checksums (tests/golden/tiny.sha256)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import golden

pytestmark = [pytest.mark.workflow, pytest.mark.network]


def test_tiny_run_matches_the_golden_list(tiny_run: Path) -> None:
    expected, found = golden.read_list(), golden.digests(tiny_run)
    assert any(name.startswith("shards/") for name in expected)
    missing, extra = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    changed = sorted(name for name in expected.keys() & found.keys() if expected[name] != found[name])
    assert not (missing or extra or changed), (
        f"tiny run differs from {golden.GOLDEN}: missing {missing}, extra {extra}, changed {changed}. "
        "If the change is deliberate, regenerate it (see tests/golden.py) in the same commit and say why."
    )
