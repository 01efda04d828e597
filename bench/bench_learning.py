"""How fast the XLM encoder learns to use context, against PyTorch's own Transformer encoder.

    .venv/bin/python bench/bench_learning.py --steps 600

A planted copy task: every token appears twice in a row ("a a b b ..."), 15% of tokens are masked, and a
masked token is predicted from its visible twin. A model that ignores context stays at the unigram loss
ln(V - 5); one that learned to attend to its neighbour drives the loss towards 0. Three models of the same
size (2 layers x 64, 2 heads, dropout 0), the same batches and the same AdamW, in the same process:

- ``xlm-fan_in``: model/xlm.py with ``init: fan_in`` (linears N(0, 1/fan_in)), what tests/tiny.yaml trains;
- ``xlm-0.02``: the same model with ``init: xlm`` (every linear at N(0, 0.02), HF XLM's and BERT's init, the
  default at 128 wide and up);
- ``torch``: ``torch.nn.TransformerEncoder`` (post-LN, PyTorch's default init, untied output), the reference.

Prints the loss every 100 steps and the first step whose loss is below 1.0 for each, and the ratio of
the reference's steps to ours (>= 1 means we learn at least as fast; target >= 0.8). With --json PATH the
figures are also written there (what bench/run_all.py collects).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.xlm import IGNORE, XLM, XLMConfig  # noqa: E402

V, DIM, LAYERS, HEADS, BATCH, PAIRS = 60, 64, 2, 2, 32, 16
MASK, FIRST_ID, SOLVED = 4, 5, 1.0


def copy_batch(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) of the planted copy task: each id twice in a row, 15% masked."""
    tokens = torch.randint(FIRST_ID, V, (BATCH, PAIRS), generator=g).repeat_interleave(2, dim=1)
    masked = torch.rand(tokens.shape, generator=g) < 0.15
    return torch.where(masked, MASK, tokens), torch.where(masked, tokens, IGNORE)


class TorchEncoder(nn.Module):
    """The reference: PyTorch's post-LN encoder with learned positions and its default init."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(V, DIM), nn.Embedding(2 * PAIRS, DIM)
        layer = nn.TransformerEncoderLayer(DIM, HEADS, 4 * DIM, 0.0, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.out = nn.Linear(DIM, V)

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(self.tokens(inputs) + self.positions(torch.arange(inputs.shape[1])))
        predicted = targets != IGNORE
        return nn.functional.cross_entropy(self.out(hidden[predicted]), targets[predicted])


def xlm(init: str = "fan_in") -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    model = XLM(XLMConfig(vocab_size=V, n_langs=1, dim=DIM, n_layers=LAYERS, n_heads=HEADS, dropout=0.0,
                          attention_dropout=0.0, use_lang_emb=False, init=init))  # fmt: skip
    forward = lambda inputs, targets: model(inputs, None, None, targets)[1]  # noqa: E731
    forward.parameters = model.parameters  # type: ignore[attr-defined]
    return forward


def train(model, steps: int) -> list[float]:
    """Losses of every step; batches from a fixed generator, so every model sees the same ones."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g, losses = torch.Generator().manual_seed(0), []
    for _ in range(steps):
        loss = model(*copy_batch(g))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def first_solved(losses: list[float], window: int = 20) -> int | None:
    """First step whose mean loss over the next `window` steps is below SOLVED (one lucky batch is not enough)."""
    for step in range(len(losses) - window):
        if sum(losses[step : step + window]) / window < SOLVED:
            return step
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for name, build in (("xlm-fan_in", xlm), ("xlm-0.02", lambda: xlm("xlm")), ("torch", TorchEncoder)):
        torch.manual_seed(0)
        losses = train(build(), args.steps)
        results[name] = {"losses_every_100": [round(x, 3) for x in losses[99::100]], "solved_at": first_solved(losses)}
        print(f"{name:10s} loss every 100 steps {results[name]['losses_every_100']}  solved at step "
              f"{results[name]['solved_at']}", flush=True)  # fmt: skip
    ours, reference = results["xlm-fan_in"]["solved_at"], results["torch"]["solved_at"]
    ratio = reference / ours if ours and reference else 0.0
    print(f"unigram loss ln({V - FIRST_ID}) = {math.log(V - FIRST_ID):.2f}; steps to solve, torch / xlm-fan_in: {ratio:.3f}x "
          f"(target >= 0.8x) {'PASS' if ratio >= 0.8 else 'FAIL'}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"models": results, "ratio": ratio}, indent=1) + "\n")


if __name__ == "__main__":
    main()
