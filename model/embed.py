"""Sentence vectors: the mean of one layer's hidden states over a sentence's non-special tokens.

    python -m model embed models/{run} --lang de --layer 6 < lines.txt > vectors.npy

A line is encoded as XLM's streams frame a sentence, ``</s> ids </s>``, with the language id of ``--lang``
on every token. Layer 0 is the embedding output, layer n the n-th block's. Sentences are sorted by length
and batched, so padding stays small; the order of the output rows is the order of the input lines.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch

from model.checkpoint import SPM_FILE, check_vocabulary, load_model
from model.xlm import XLM
from pipeline.errors import PolyforgeError
from pipeline.schemas import BOS, EOS, MASK, PAD

SPECIAL = (PAD, BOS, EOS, MASK)  # framing, not content: left out of the mean (<unk> stands for text)


class EmbedError(PolyforgeError, ValueError):
    """A request the model cannot serve (unknown language, layer out of range); the message says what is allowed."""


def lang_id(meta: dict, lang: str) -> int:
    if lang not in meta["lang2id"]:
        raise EmbedError(f"language {lang!r} is not one of this model's languages: {', '.join(meta['languages'])}")
    return meta["lang2id"][lang]


def check_layers(model: XLM, layers: Sequence[int]) -> list[int]:
    n = model.cfg.n_layers
    for layer in layers:
        if not 0 <= layer <= n:
            raise EmbedError(f"layer {layer} is out of range: this model has layers 0 (embeddings) to {n}")
    return list(layers)


def encode(sp: spm.SentencePieceProcessor, lines: Sequence[str], max_positions: int) -> list[list[int]]:
    """``</s> ids </s>`` per line, the ids cut to fit the position table."""
    return [[EOS, *ids[: max_positions - 2], EOS] for ids in sp.encode(list(lines))]


@torch.no_grad()
def sentence_vectors(
    model: XLM, sequences: Sequence[Sequence[int]], lang: int, layers: Sequence[int], batch_size: int = 64
) -> np.ndarray:
    """(len(layers), N, C) float32: mean-pooled hidden states of each requested layer."""
    layers = check_layers(model, layers)
    device = next(model.parameters()).device
    out = np.zeros((len(layers), len(sequences), model.cfg.dim), dtype=np.float32)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        T = max(len(sequences[i]) for i in rows)
        tokens = torch.full((len(rows), T), PAD, dtype=torch.long)
        for b, i in enumerate(rows):
            tokens[b, : len(sequences[i])] = torch.tensor(sequences[i])
        tokens = tokens.to(device)
        states = model.hidden_states(tokens, torch.full_like(tokens, lang), attention_mask=tokens != PAD)
        content = ~torch.isin(tokens, torch.tensor(SPECIAL, device=device))  # (B, T)
        empty = ~content.any(dim=1, keepdim=True)  # an empty line: average its two </s> instead of nothing
        weights = (content | (empty & (tokens != PAD))).float()  # (B, T)
        weights = weights / weights.sum(dim=1, keepdim=True)
        for j, layer in enumerate(layers):
            pooled = torch.einsum("btc,bt->bc", states[layer].float(), weights)  # (B, C)
            out[j, rows] = pooled.cpu().numpy()
    return out


def load_for_embedding(run_dir: str | Path) -> tuple[XLM, dict, spm.SentencePieceProcessor]:
    """The model of ``models/{run}`` and the vocabulary beside it, refused if that is not its vocabulary."""
    model, meta = load_model(run_dir)
    data = check_vocabulary(meta, meta["path"].parent / SPM_FILE)
    return model, meta, spm.SentencePieceProcessor(model_proto=data)


def embed_lines(run_dir: str | Path, lines: Sequence[str], lang: str, layer: int, batch_size: int = 64) -> np.ndarray:
    """(N, C) vectors of ``lines`` in language ``lang`` from one layer of the model in ``run_dir``."""
    model, meta, sp = load_for_embedding(run_dir)
    lid = lang_id(meta, lang)
    check_layers(model, [layer])
    return sentence_vectors(model, encode(sp, lines, model.cfg.max_positions), lid, [layer], batch_size)[0]


def write_vectors(vectors: np.ndarray, output: str | None) -> None:
    """``.npy`` to stdout (no output) or to a file; ``.arrow`` as an IPC file with one fixed-size list column."""
    if output is None:
        np.save(sys.stdout.buffer, vectors)
        sys.stdout.buffer.flush()
        return
    import pyarrow as pa

    from pipeline.arrow_io import atomic_path, write_table

    if output.endswith(".arrow"):
        flat = pa.array(vectors.reshape(-1), type=pa.float32())
        column = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
        write_table(output, pa.table({"row": pa.array(range(len(vectors)), pa.int64()), "vector": column}))
    elif output.endswith(".npy"):
        with atomic_path(output) as tmp, open(tmp, "wb") as handle:
            np.save(handle, vectors)
    else:
        raise EmbedError(f"--output {output}: expected a .npy or .arrow file name")


def read_lines(data: bytes) -> list[str]:
    """One sentence per "\n"-terminated line (not str.splitlines, which also splits at U+2028 and friends)."""
    text = data.decode("utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start an empty one
    return [line.removesuffix("\r") for line in lines]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model embed", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="models/{run} (holding model.pt and spm.model)")
    parser.add_argument("--lang", required=True, help="language of every input line, one of the model's")
    parser.add_argument("--layer", type=int, required=True, help="0 = embeddings, n = output of block n")
    parser.add_argument("--output", help="x.npy or x.arrow (default: .npy to stdout)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    lines = read_lines(sys.stdin.buffer.read())
    try:
        vectors = embed_lines(args.run_dir, lines, args.lang, args.layer, args.batch_size)
        write_vectors(vectors, args.output)
    except (EmbedError, FileNotFoundError, ValueError) as exc:
        print(f"python -m model embed: {exc}", file=sys.stderr)
        return 2
    return 0
