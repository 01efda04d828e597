"""The clean stage gives the same bytes with 1 worker, 2 workers and an external scheduler."""

from __future__ import annotations

import logging

import pytest

from pipeline.clean import clean_corpus
from tests.test_clean import ENGLISH, GERMAN, make_cfg, output_hashes, write_mono, write_pairs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two sources, en and de rows with duplicates and rejects, an en-de pair file: many 4-row partitions."""
    root = tmp_path_factory.mktemp("dask")
    de = [f"{GERMAN[i % len(GERMAN)]} Abschnitt {i % 17}." for i in range(40)] + [ENGLISH[0], "Kurz"]
    en = [f"{ENGLISH[i % len(ENGLISH)]} See section {i % 13}." for i in range(30)]
    for source in ("a", "b"):
        write_mono(root, source, "de", de if source == "a" else de[::-1])
        write_mono(root, source, "en", en)
    write_pairs(root, "a", "en", "de", [(en[i], de[i]) for i in range(20)] + [(en[0], de[0])])
    return root


def _run(corpus, tmp_path, model, threads: int, scheduler: str | None = None):
    cfg = make_cfg(corpus, sources=("a", "b"), partition_rows=4, scheduler=scheduler)
    out = tmp_path / f"out-{threads}-{bool(scheduler)}"
    extracted = {s: corpus / "extracted" / s for s in ("a", "b")}
    summary = clean_corpus(cfg, extracted, model, out, threads=threads)
    return output_hashes(out), summary


def test_one_worker_two_workers_and_an_external_scheduler_write_the_same_bytes(corpus, tmp_path, lid_model_path):
    from distributed import LocalCluster

    one, summary_one = _run(corpus, tmp_path, lid_model_path, threads=1)
    two, summary_two = _run(corpus, tmp_path, lid_model_path, threads=2)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    ) as cluster:
        external, summary_ext = _run(corpus, tmp_path, lid_model_path, threads=1, scheduler=cluster.scheduler_address)

    partitions = sum(summary_one["tasks_by_worker"].values())
    assert partitions >= 20  # (42 + 30 rows) × 2 sources in 4-row partitions, plus the pairs
    assert len(summary_one["tasks_by_worker"]) == 1
    for summary in (summary_two, summary_ext):
        assert len(summary["tasks_by_worker"]) == 2, summary["tasks_by_worker"]
        assert all(n > 0 for n in summary["tasks_by_worker"].values())
        assert sum(summary["tasks_by_worker"].values()) == partitions
    assert summary_one["languages"]["de"].kept > 0 and summary_one["languages"]["de"].rejected["duplicate"] > 0
    assert sorted(one) == [
        "clean/de.arrow", "clean/en.arrow", "clean/pairs/en-de.arrow",
        "rejected/de.arrow", "rejected/en.arrow", "rejected/pairs/en-de.arrow",
        "stats/languages.json", "stats/lid_udhr.json", "stats/rejections.png", "stats/sizes.png",
    ]  # fmt: skip
    assert one == two == external
