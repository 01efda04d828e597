"""Batches from the tiny run's shards: masking statistics, TLM framing, CLM causality, sampling, purity."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from model.batches import IGNORE, N_SPECIAL, DataConfig, TrainBatches, batch_loader, load_corpus
from model.xlm import XLM, XLMConfig
from pipeline.schemas import EOS, MASK, PAD

pytestmark = [pytest.mark.workflow, pytest.mark.network]


@pytest.fixture(scope="module")
def corpus(tiny_run: Path):
    return load_corpus(tiny_run / "shards" / "manifest.json", tiny_run / "mixture" / "mixture.json",
                       tiny_run / "vocab" / "spm.model", {"mlm": 1.0, "tlm": 1.0})  # fmt: skip


def batches(corpus, objectives: dict[str, float], n: int, **kwargs) -> list[dict]:
    data = TrainBatches(corpus, DataConfig(objectives=objectives, bptt=64, **kwargs), slots_per_step=1)
    return [data[k] for k in range(n)]


def originals(batch: dict) -> torch.Tensor:
    """The ids before masking: targets where predicted, inputs elsewhere."""
    return torch.where(batch["targets"] != IGNORE, batch["targets"], batch["tokens"])


@pytest.mark.parametrize("objective", ["mlm", "tlm"])
def test_masking_statistics(corpus, objective: str) -> None:
    counts = Counter()
    for batch in batches(corpus, {objective: 1.0}, 300):
        tokens, targets, orig = batch["tokens"], batch["targets"], originals(batch)
        predicted = targets != IGNORE
        counts["candidates"] += int((orig >= N_SPECIAL).sum())
        counts["padding"] += int((orig == PAD).sum())
        counts["targets"] += int(predicted.sum())
        counts["special_targets"] += int((predicted & (orig < N_SPECIAL)).sum())
        counts["masked"] += int((predicted & (tokens == MASK)).sum())
        counts["kept"] += int((predicted & (tokens == targets)).sum())
        counts["random_special"] += int((predicted & (tokens != MASK) & (tokens < N_SPECIAL)).sum())
        counts["changed_elsewhere"] += int((~predicted & (tokens != orig)).sum())
    assert counts["special_targets"] == 0 and counts["random_special"] == 0 and counts["changed_elsewhere"] == 0
    if objective == "tlm":
        assert counts["padding"] > 0  # padded batches, and padding is never a target (special_targets above)
    n = counts["targets"]
    assert abs(n / counts["candidates"] - 0.15) < 0.005, counts
    assert abs(counts["masked"] / n - 0.8) < 0.01, counts
    assert abs(counts["kept"] / n - 0.1) < 0.01, counts  # kept, plus random draws that hit the same id (~1/2000)
    assert abs((n - counts["masked"] - counts["kept"]) / n - 0.1) < 0.01, counts


def test_tlm_framing(corpus) -> None:
    side_targets = [0, 0]
    for batch in batches(corpus, {"tlm": 1.0}, 40):
        orig, positions, langs, targets = originals(batch), batch["positions"], batch["langs"], batch["targets"]
        src, tgt = (corpus.languages.index(lang) for lang in batch["key"].split("-"))
        for row in range(orig.shape[0]):
            real = int((orig[row] != PAD).sum())
            assert (orig[row, real:] == PAD).all()  # padding only at the end
            starts = torch.nonzero(positions[row, :real] == 0).flatten().tolist()
            assert starts[0] == 0 and len(starts) == 2, "positions restart exactly once, at the target side"
            cut = starts[1]
            assert positions[row, :cut].tolist() == list(range(cut))
            assert positions[row, cut:real].tolist() == list(range(real - cut))
            assert orig[row, 0] == EOS and orig[row, cut - 1] == EOS and orig[row, cut] == EOS and orig[row, real - 1] == EOS
            first, second = int(langs[row, 0]), int(langs[row, cut])
            assert {first, second} == {src, tgt}
            assert (langs[row, :cut] == first).all() and (langs[row, cut:real] == second).all()
            side_targets[0] += int((targets[row, :cut] != IGNORE).sum())
            side_targets[1] += int((targets[row, cut:real] != IGNORE).sum())
    assert min(side_targets) > 0.3 * sum(side_targets), side_targets  # both sides are masked


def test_clm_is_causal(corpus) -> None:
    batch = batches(corpus, {"clm": 1.0}, 1)[0]
    tokens, targets = batch["tokens"][:2], batch["targets"][:2]
    assert batch["causal"] and torch.equal(targets[:, :-1][targets[:, :-1] != IGNORE], tokens[:, 1:][targets[:, :-1] != IGNORE])
    torch.manual_seed(0)
    model = XLM(XLMConfig(vocab_size=corpus.vocab_size, n_langs=len(corpus.languages), dim=32, n_layers=2, n_heads=2)).eval()
    langs = batch["langs"][:2]
    logits, _ = model(tokens, langs, causal=True)
    t = 20
    changed = tokens.clone()
    changed[:, t + 1 :] = torch.randint(N_SPECIAL, corpus.vocab_size, changed[:, t + 1 :].shape)
    logits2, _ = model(changed, langs, causal=True)
    torch.testing.assert_close(logits[:, : t + 1], logits2[:, : t + 1], rtol=0, atol=1e-5)
    assert not torch.allclose(logits[:, t + 1 :], logits2[:, t + 1 :])


def test_language_sampling_follows_the_training_q(corpus) -> None:
    data = TrainBatches(corpus, DataConfig(objectives={"mlm": 1.0, "tlm": 1.0}, batch_size=1, bptt=8), slots_per_step=1)
    seen = Counter(data[k]["key"] for k in range(4000))
    mlm = {lang: seen[lang] for lang in corpus.lang_q}
    pairs = {"-".join(p): seen["-".join(p)] for p in corpus.pair_q}
    for lang, q in corpus.lang_q.items():
        assert abs(mlm[lang] / sum(mlm.values()) - q) < 0.04, (mlm, corpus.lang_q)
    q_nonpivot = {"-".join(p): corpus.lang_q[p[1]] for p in corpus.pair_q}  # en is the pivot of the tiny run
    for pair, n in pairs.items():
        assert abs(n / sum(pairs.values()) - q_nonpivot[pair] / sum(q_nonpivot.values())) < 0.04, pairs


def test_batches_are_a_pure_function_of_seed_step_slot(corpus) -> None:
    data = TrainBatches(corpus, DataConfig(bptt=32), slots_per_step=2)
    direct = [data[k] for k in range(2, 12)]  # steps 1..5, both slots
    again = list(batch_loader(TrainBatches(corpus, DataConfig(bptt=32), 2), 1, 6, rank=0, grad_accum=2, num_workers=2))
    for a, b in zip(direct, again, strict=True):
        assert a["key"] == b["key"] and torch.equal(a["tokens"], b["tokens"]) and torch.equal(a["targets"], b["targets"])
    rank1 = list(batch_loader(data, 1, 6, rank=1, grad_accum=1, num_workers=0))
    assert all(torch.equal(a["tokens"], b["tokens"]) for a, b in zip(direct[1::2], rank1, strict=True))
    other_seed = TrainBatches(corpus, DataConfig(bptt=32, seed=99), slots_per_step=2)[2]
    assert not torch.equal(other_seed["tokens"], direct[0]["tokens"]) or other_seed["key"] != direct[0]["key"]


@pytest.mark.parametrize("objective", ["mlm", "clm"])
def test_short_row_phase_then_full_rows(corpus, objective: str) -> None:
    data = TrainBatches(corpus, DataConfig(objectives={objective: 1.0}, batch_size=4, bptt=64, short_rows=8,
                                           short_steps=3), slots_per_step=1)  # fmt: skip
    width = 8 if objective == "mlm" else 7  # CLM predicts ids 1..T-1 from 0..T-2
    starts = set()
    for step in range(3):  # same tokens per batch: 4 x 64 = 32 rows of 8
        batch = data[step]
        assert batch["tokens"].shape == (32, width) and batch["positions"].shape == (32, width)
        offsets = batch["positions"][:, 0]
        assert torch.equal(batch["positions"], offsets[:, None] + torch.arange(width))  # consecutive in a row
        assert int(offsets.min()) >= 0 and int(batch["positions"].max()) < 64  # inside the full rows' positions
        starts.update(offsets.tolist())
        assert torch.equal(data[step]["tokens"], batch["tokens"])  # still a pure function of the step
    assert len(starts) > 20  # random offsets: every position gets trained, not only 0..7
    full = data[3]
    assert full["tokens"].shape == (4, width + 56) and full["positions"] is None


def test_short_row_phase_trains_the_stream_objective_alone(corpus) -> None:
    data = TrainBatches(corpus, DataConfig(objectives={"mlm": 1.0, "tlm": 1.0}, batch_size=2, bptt=64, short_rows=8,
                                           short_steps=20), slots_per_step=1)  # fmt: skip
    assert {data[k]["objective"] for k in range(20)} == {"mlm"}
    assert {data[k]["objective"] for k in range(20, 40)} == {"mlm", "tlm"}


def test_shards_are_memory_mapped(corpus) -> None:
    rows = corpus.mlm["train"]["en"]
    row = rows.row(0)
    assert row.dtype == np.int32 and not row.flags.owndata and not row.flags.writeable
