"""Does the encoder leave the unigram plateau on real shards? Full-mask loss, attention probe, neighbour baseline.

    .venv/bin/python bench/bench_mlm_plateau.py --root RESULTS --steps 1500 --set short_rows=8 --set short_steps=600

RESULTS is a finished run's output folder with shards/, mixture/ and vocab/ (e.g. the tiny run's:
``tests.workflow_runner.run_workflow``). Trains, in one process and on the same batches (tests/tiny.yaml's train
section plus --set overrides; MLM only unless --set objectives=...):

- ``xlm``: model/xlm.py (the tiny model size unless --set model.*);
- ``neighbours``: the floor a context-using model should beat — each masked token predicted from the
  embeddings of its left and right neighbours only (one linear layer, LayerNorm, tied output): no attention to
  learn, so it shows how much the data rewards using the neighbours at all.

Prints, every --every steps, each language's validation loss with every target replaced by <mask>, as a ratio
to that language's unigram cross-entropy (the learning test of tests/test_train.py asks for <= 0.95), and at
the end the mean attention weight from <mask> positions to offsets -2..2 in each layer of ``xlm`` against the
uniform 1/T: a model that learned to use its neighbours puts several times 1/T on offsets -1 and +1.

``--set short_rows=8 --set short_steps=600`` is training's short-row phase (rows of 8 tokens at random position
offsets, then full rows): without it, at the full 64 tokens, the 2 x 64 model's attention from <mask> stays
uniform and its loss at the unigram's for thousands of steps. With --json PATH the figures are also written there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model import batches as B  # noqa: E402
from model.train import TrainConfig, evaluate, load_train_config, lr_factor, make_optimizer  # noqa: E402
from model.xlm import IGNORE, XLM, XLMConfig  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
OFFSETS = (-2, -1, 0, 1, 2)


class Neighbours(nn.Module):
    """A masked token from its two neighbours' embeddings: LN(W [e_left; e_right]) . E + b (tied)."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.tokens.weight, std=0.02)
        self.mix, self.norm = nn.Linear(2 * dim, dim), nn.LayerNorm(dim)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, tokens, langs=None, positions=None, targets=None, attention_mask=None, causal=False):
        e = self.tokens(tokens)  # (B, T, C)
        left, right = F.pad(e, (0, 0, 1, 0))[:, :-1], F.pad(e, (0, 0, 0, 1))[:, 1:]
        predicted = targets != IGNORE
        hidden = self.norm(self.mix(torch.cat([left, right], -1)))[predicted]
        logits = F.linear(hidden, self.tokens.weight, self.bias)
        return logits, F.cross_entropy(logits, targets[predicted])


def unigram_cross_entropy(corpus: B.Corpus) -> dict[str, float]:
    """Train-split unigram frequencies (add-one) scored on each language's valid non-special tokens."""
    out = {}
    for lang in corpus.languages:
        train, counts = corpus.mlm["train"][lang], np.ones(corpus.vocab_size)
        for i in range(len(train)):
            counts += np.bincount(train.row(i), minlength=corpus.vocab_size)
        counts[: B.N_SPECIAL] = 0
        valid = corpus.mlm["valid"][lang]
        ids = np.concatenate([valid.row(i) for i in range(len(valid))])
        out[lang] = float(-np.log(counts[ids[ids >= B.N_SPECIAL]] / counts.sum()).mean())
    return out


def full_mask_ratios(model: nn.Module, corpus: B.Corpus, cfg: TrainConfig, unigram: dict[str, float]) -> dict:
    result = evaluate(model, corpus, cfg, torch.device("cpu"), mask_ratio=1.0, objectives=("mlm",))
    return {lang: round(result[f"mlm/{lang}"]["loss"] / unigram[lang], 3) for lang in corpus.languages}


def attention_from_masks(model: XLM, batch: dict) -> list[dict[int, float]]:
    """Per layer: mean attention weight from <mask> positions to each offset in OFFSETS (all heads)."""
    weights = []

    def capture(module, args, output):  # recompute the softmax SDPA does not return
        x = args[0]
        b, t, c = x.shape
        q, k = (proj(x).view(b, t, module.n_heads, -1).transpose(1, 2) for proj in (module.q, module.k))
        weights.append(torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, -1))  # (B, H, T, T)

    hooks = [block.attn.register_forward_hook(capture) for block in model.blocks]
    model.eval()
    with torch.no_grad():
        model(batch["tokens"], batch["langs"], batch["positions"])
    for hook in hooks:
        hook.remove()
    masked, out = batch["tokens"] == B.MASK, []
    for w in weights:
        t, layer = w.shape[-1], {}
        for d in OFFSETS:
            i = torch.arange(max(0, -d), min(t, t - d))
            chosen = masked[:, i].unsqueeze(1).expand(-1, w.shape[1], -1)
            layer[d] = round(w[:, :, i, i + d][chosen].mean().item(), 3)
        out.append(layer)
    return out


def train(name: str, model: nn.Module, corpus: B.Corpus, cfg: TrainConfig, args, unigram) -> dict:
    torch.manual_seed(cfg.seed)
    batches = B.TrainBatches(corpus, cfg.data_config(), 1)
    optimizer = make_optimizer(model, cfg, torch.device("cpu"))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    curve, start = {}, time.perf_counter()
    model.train()
    for k in range(args.steps + 1):
        if k and (k % args.every == 0 or k == args.steps):
            curve[k] = full_mask_ratios(model, corpus, cfg, unigram)
            model.train()
            print(f"{name:10s} step {k:5d} {time.perf_counter() - start:5.0f} s  full-mask loss / unigram {curve[k]}",
                  flush=True)  # fmt: skip
        if k == args.steps:
            break
        batch = batches[k]
        _, loss = model(batch["tokens"], batch["langs"], batch["positions"], batch["targets"], None, batch["causal"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
    return {"curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="a run's output folder (shards, mixture, vocab)")
    parser.add_argument("--config", type=Path, default=REPO / "tests" / "tiny.yaml")
    parser.add_argument("--set", action="append", default=[], help="train.* override, e.g. model.dropout=0")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_train_config(args.config, None, ["objectives={mlm: 1.0}", *args.set, "eval_batches=1000"])
    cfg.max_steps = args.steps
    root = args.root
    corpus = B.load_corpus(root / "shards" / "manifest.json", root / "mixture" / "mixture.json",
                           root / "vocab" / "spm.model", cfg.objectives)  # fmt: skip
    unigram = unigram_cross_entropy(corpus)
    print(f"unigram cross-entropy {({k: round(v, 3) for k, v in unigram.items()})}; target ratio <= 0.95")
    torch.manual_seed(cfg.seed)
    xlm = XLM(XLMConfig(vocab_size=corpus.vocab_size, n_langs=len(corpus.languages), **vars(cfg.model)))
    results = {"xlm": train("xlm", xlm, corpus, cfg, args, unigram)}
    probe = B.TrainBatches(corpus, cfg.data_config(), 1)[args.steps + 1]
    results["xlm"]["attention"] = attention_from_masks(xlm, probe)
    uniform = 1 / probe["tokens"].shape[1]
    for layer, weights in enumerate(results["xlm"]["attention"]):
        print(f"xlm layer {layer}: attention from <mask> at offsets {weights} (uniform {uniform:.3f})")
    torch.manual_seed(cfg.seed)
    neighbours = Neighbours(corpus.vocab_size, cfg.model.dim)
    results["neighbours"] = train("neighbours", neighbours, corpus, cfg, args, unigram)
    if args.json:
        args.json.write_text(json.dumps({"steps": args.steps, "set": args.set, "unigram": unigram, **results}, indent=1))


if __name__ == "__main__":
    main()
