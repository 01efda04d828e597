"""Training and validation batches, read straight from the Arrow shards through their manifest.

Every shard is memory-mapped (``pa.memory_map`` + ``ipc.open_file``) and indexed by its record batches, so
memory holds offsets per record batch, never the corpus. A training batch is a pure function of
(seed, step, slot), where slot = rank * grad_accum + micro-step: resume and DDP are exact by construction,
DataLoader workers hold no state, and one process with grad_accum = k sees exactly the batches of k ranks.

Objectives (XLM, Conneau & Lample 2019):
- MLM: a window of ``bptt`` ids of one language's stream; 15% of the non-special ids are targets, of which
  80% become ``<mask>``, 10% a random non-special id and 10% stay.
- TLM: ``</s> src </s></s> tgt </s>``, positions restarting at 0 for the target side, each side with its own
  language id, masked like MLM on both sides. Pairs fill a batch up to batch_size x bptt padded ids.
- CLM: a window of one language's stream, causal attention, each id predicts the next.

A batch's language is drawn from the training q of mixture/mixture.json; a TLM pair's probability is the q of
its non-pivot language, renormalized over the pairs that have train rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import torch

from pipeline.arrow_io import sha256_file
from pipeline.manifest import ManifestError, read_manifest
from pipeline.schemas import BOS, EOS, MASK, PAD, SPECIAL_PIECES, UNK

IGNORE = -100  # same as model.xlm.IGNORE; kept here so DataLoader workers need not import the model
N_SPECIAL = max(SPECIAL_PIECES) + 1  # ids below this are special: never targets, never random replacements
OBJECTIVES = ("mlm", "tlm", "clm")
GOLDEN = (math.sqrt(5) - 1) / 2  # low-discrepancy objective schedule: near-alternation for equal weights
assert {PAD, BOS, EOS, UNK, MASK} == set(range(N_SPECIAL))


class DataError(ValueError):
    """Training input that cannot be used, naming the file or config key."""


@dataclass
class DataConfig:
    batch_size: int = 16
    """Rows per MLM/CLM batch; TLM batches hold pairs up to batch_size x bptt padded ids."""
    bptt: int = 128
    """Tokens per MLM/CLM row: a random window of a shard row (at most the shards' bptt)."""
    objectives: dict[str, float] = field(default_factory=lambda: {"mlm": 1.0, "tlm": 1.0})
    """Objective weights: the share of batches of each of mlm, tlm, clm."""
    mlm_probability: float = 0.15
    """Share of non-special tokens that are MLM/TLM targets."""
    mask_ratio: float = 0.8
    """Share of targets replaced by <mask>."""
    random_ratio: float = 0.1
    """Share of targets replaced by a random non-special id (the rest stay as they are)."""
    seed: int = 1234
    """Seed of every batch (with the step and slot)."""
    short_rows: int = 0
    """First phase: MLM/CLM rows of this many tokens, at random position offsets (0: no short phase)."""
    short_steps: int = 0
    """Optimizer steps of the short phase; then rows of bptt tokens."""

    def row_shape(self, step: int) -> tuple[int, int]:
        """(rows, tokens per row) of an MLM/CLM batch at ``step``; rows x tokens stays batch_size x bptt.

        Short rows first, as BERT trained on 128 tokens before 512: among a few tokens the neighbours are easy
        to find, and a small model learns to attend to them. At the full length from the start, its attention
        from <mask> stayed uniform for thousands of steps and the loss at the unigram's (bench_mlm_plateau.py).
        """
        if self.short_rows and step < self.short_steps:  # TrainBatches also leaves TLM out of this phase
            return self.batch_size * self.bptt // self.short_rows, self.short_rows
        return self.batch_size, self.bptt


# ---------------------------------------------------------------- memory-mapped shards


class ShardRows:
    """The rows of a list of shard files as one indexable collection of int32 id arrays (per column).

    Files are opened lazily and memory-mapped; only per-record-batch offsets live in Python. The open
    files are dropped when pickled, so a DataLoader worker opens its own.
    """

    def __init__(self, paths: Sequence[Path], rows: Sequence[int], columns: Sequence[str]) -> None:
        self.paths, self.columns = list(paths), tuple(columns)
        self.starts = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)  # first row of each file
        self._files: dict[int, tuple[np.ndarray, list[dict[str, tuple[np.ndarray, np.ndarray]]]]] = {}

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_files": {}}

    def _open(self, i: int) -> tuple[np.ndarray, list[dict[str, tuple[np.ndarray, np.ndarray]]]]:
        if i not in self._files:
            reader = ipc.open_file(pa.memory_map(str(self.paths[i]), "r"))
            batches, starts = [], [0]
            for b in range(reader.num_record_batches):
                batch = reader.get_batch(b)
                # Zero-copy views into the mapped file: (offsets, values) of each list<int32> column.
                batches.append({c: (batch.column(c).offsets.to_numpy(), batch.column(c).values.to_numpy())
                                for c in self.columns})  # fmt: skip
                starts.append(starts[-1] + batch.num_rows)
            self._files[i] = (np.asarray(starts, dtype=np.int64), batches)
        return self._files[i]

    def row(self, index: int, column: str | None = None) -> np.ndarray:
        f = int(np.searchsorted(self.starts, index, side="right") - 1)
        starts, batches = self._open(f)
        local = index - int(self.starts[f])
        b = int(np.searchsorted(starts, local, side="right") - 1)
        offsets, values = batches[b][column or self.columns[0]]
        j = local - int(starts[b])
        return values[offsets[j] : offsets[j + 1]]

    def length(self, index: int) -> int:
        return sum(len(self.row(index, c)) for c in self.columns)


# ---------------------------------------------------------------- the corpus: manifest, mixture, checks


@dataclass
class Corpus:
    """The shards of one build, checked against the manifest, and the training mixture."""

    manifest_path: Path
    languages: list[str]  # sorted canonical codes; a language's id is its index
    pivot: str | None
    vocab_size: int
    spm_sha256: str
    manifest_sha256: str
    mixture_sha256: str
    shards_bptt: int
    mlm: dict[str, dict[str, ShardRows]]  # split -> lang -> rows
    tlm: dict[str, dict[tuple[str, str], ShardRows]]  # split -> (src, tgt) -> rows
    lang_q: dict[str, float]  # training q per language (mixture.json), over languages with MLM train rows
    pair_q: dict[tuple[str, str], float]  # renormalized over pairs with TLM train rows
    max_side_tokens: int  # longest TLM side the shards allow (shards.tlm.max_tokens)



def load_corpus(manifest_path: str | Path, mixture_path: str | Path, spm_path: str | Path,
                objectives: Mapping[str, float], verify: bool = True) -> Corpus:  # fmt: skip
    """Read and check the manifest, shards, vocabulary and mixture; every problem names its file or key."""
    manifest_path, mixture_path, spm_path = Path(manifest_path), Path(mixture_path), Path(spm_path)
    try:
        manifest = read_manifest(manifest_path)
    except ManifestError as exc:
        raise DataError(str(exc)) from None
    spm_sha256 = _check_spm(manifest, manifest_path, spm_path)
    if verify:
        _check_shards(manifest, manifest_path)
    cfg = manifest.get("config", {})
    languages = sorted(cfg.get("languages", {}))
    mlm: dict[str, dict[str, ShardRows]] = {}
    tlm: dict[str, dict[tuple[str, str], ShardRows]] = {}
    grouped: dict[tuple[str, str, tuple[str, ...]], list[dict[str, Any]]] = {}
    for entry in manifest["shards"]:
        grouped.setdefault((entry["kind"], entry["split"], tuple(entry["languages"])), []).append(entry)
    for (kind, split, langs), entries in sorted(grouped.items()):
        entries.sort(key=lambda e: e["path"])
        paths = [manifest_path.parent / e["path"] for e in entries]
        if kind == "mlm":
            mlm.setdefault(split, {})[langs[0]] = ShardRows(paths, [e["rows"] for e in entries], ["input_ids"])
        else:
            tlm.setdefault(split, {})[langs] = ShardRows(paths, [e["rows"] for e in entries], ["src_ids", "tgt_ids"])
    lang_q, pair_q = _mixture(mixture_path, languages, cfg.get("pivot"), mlm.get("train", {}),
                              tlm.get("train", {}), objectives)  # fmt: skip
    return Corpus(manifest_path, languages, cfg.get("pivot"), _vocab_size(spm_path), spm_sha256,
                  sha256_file(manifest_path), sha256_file(mixture_path), int(cfg.get("shards", {}).get("bptt", 256)),
                  mlm, tlm, lang_q, pair_q, int(cfg.get("shards", {}).get("tlm", {}).get("max_tokens", 120)))  # fmt: skip


def _check_spm(manifest: Mapping[str, Any], manifest_path: Path, spm_path: Path) -> str:
    if not spm_path.is_file():
        raise DataError(f"{spm_path}: SentencePiece model not found")
    actual, expected = sha256_file(spm_path), manifest.get("spm_model", {}).get("sha256")
    if actual != expected:
        raise DataError(f"{spm_path}: sha256 {actual} differs from the spm_model sha256 {expected} in {manifest_path}: "
                        "the shards were encoded with another vocabulary; rebuild the shards")  # fmt: skip
    return actual


def _check_shards(manifest: Mapping[str, Any], manifest_path: Path) -> None:
    for entry in manifest["shards"]:
        path = manifest_path.parent / entry["path"]
        if not path.is_file():
            raise DataError(f"{path}: shard listed in {manifest_path} is missing")
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise DataError(f"{path}: sha256 {actual} does not match {manifest_path} ({entry['sha256']}); rebuild the shards")


def _vocab_size(spm_path: Path) -> int:
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(spm_path)).get_piece_size()


def _mixture(path: Path, languages: list[str], pivot: str | None, mlm_train: Mapping[str, ShardRows],
             tlm_train: Mapping[tuple[str, str], ShardRows], objectives: Mapping[str, float]) -> tuple[dict, dict]:  # fmt: skip
    """Training q per language and per TLM pair, checked against the shards."""
    try:
        mixture = json.loads(path.read_text(encoding="utf-8"))["languages"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: not a readable mixture.json ({exc})") from None
    lang_q = {}
    for lang in sorted(mixture):
        entry = mixture[lang]
        q = float(entry.get("q", {}).get("train", 0.0))
        if entry.get("n", 0) <= 0 or q <= 0:
            raise DataError(f"{path}: language {lang!r} is empty in the mixture (n = {entry.get('n')}, q = {q})")
        if lang not in mlm_train or len(mlm_train[lang]) == 0:
            raise DataError(f"{path}: language {lang!r} has q = {q:.3g} but no MLM train rows in the shards")
        if lang not in languages:
            raise DataError(f"{path}: language {lang!r} is not one of the shards' configured languages {languages}")
        lang_q[lang] = q
    if not lang_q:
        raise DataError(f"{path}: the mixture has no languages")
    total = sum(lang_q.values())
    lang_q = {lang: q / total for lang, q in lang_q.items()}
    pair_q = {}
    for pair, rows in sorted(tlm_train.items()):
        if len(rows):
            other = [lang for lang in pair if lang != pivot] or list(pair)
            pair_q[pair] = sum(lang_q.get(lang, 0.0) for lang in other) / len(other)
    pair_q = {p: q for p, q in pair_q.items() if q > 0}
    if objectives.get("tlm", 0) > 0 and not pair_q:
        raise DataError("train.objectives.tlm > 0 but the shards hold no TLM train pairs (shards/tlm/train); "
                        "set train.objectives.tlm to 0 or add a parallel source")  # fmt: skip
    total = sum(pair_q.values())
    return lang_q, {p: q / total for p, q in pair_q.items()}


# ---------------------------------------------------------------- masking and framing


def mask_tokens(tokens: np.ndarray, rng: np.random.Generator, vocab_size: int, cfg: DataConfig,
                mask_ratio: float | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(inputs, targets): mlm_probability of the non-special ids become targets; 80/10/10 mask/random/keep."""
    mask_ratio = cfg.mask_ratio if mask_ratio is None else mask_ratio
    candidates = tokens >= N_SPECIAL  # padding and special tokens are never targets
    chosen = candidates & (rng.random(tokens.shape) < cfg.mlm_probability)
    targets = np.where(chosen, tokens, IGNORE)
    action = rng.random(tokens.shape)
    inputs = tokens.copy()
    inputs[chosen & (action < mask_ratio)] = MASK
    randomized = chosen & (action >= mask_ratio) & (action < mask_ratio + cfg.random_ratio)
    inputs[randomized] = rng.integers(N_SPECIAL, vocab_size, size=int(randomized.sum()))
    return inputs, targets


def frame_pair(src: np.ndarray, tgt: np.ndarray, src_lang: int, tgt_lang: int) -> tuple[np.ndarray, ...]:
    """XLM's TLM framing: ids ``</s> src </s></s> tgt </s>``, positions 0.. per side, one language id per side."""
    ids = np.concatenate([[EOS], src, [EOS, EOS], tgt, [EOS]])
    positions = np.concatenate([np.arange(len(src) + 2), np.arange(len(tgt) + 2)])
    langs = np.concatenate([np.full(len(src) + 2, src_lang), np.full(len(tgt) + 2, tgt_lang)])
    return ids, positions, langs


def pad_rows(rows: Sequence[np.ndarray], length: int, value: int) -> np.ndarray:
    out = np.full((len(rows), length), value, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def to_batch(objective: str, tokens: np.ndarray, targets: np.ndarray, langs: np.ndarray,
             positions: np.ndarray | None, key: str) -> dict[str, Any]:  # fmt: skip
    return {
        "objective": objective,  # mlm | tlm | clm
        "key": key,  # language or pair (src-tgt) of the batch
        "tokens": torch.from_numpy(tokens),  # (B, T) int64
        "targets": torch.from_numpy(targets),  # (B, T) int64, IGNORE where nothing is predicted
        "langs": torch.from_numpy(langs),  # (B, T) int64 language ids
        "positions": None if positions is None else torch.from_numpy(positions),  # (B, T) or default 0..T-1
        "causal": objective == "clm",
    }


# ---------------------------------------------------------------- training batches


class TrainBatches(torch.utils.data.Dataset):
    """Batch k = step * slots_per_step + slot, a pure function of (seed, step, slot); stateless.

    slots_per_step = world_size * grad_accum; this rank's slots are rank * grad_accum + micro.
    """

    def __init__(self, corpus: Corpus, cfg: DataConfig, slots_per_step: int) -> None:
        if cfg.bptt > corpus.shards_bptt:
            raise DataError(f"train.bptt {cfg.bptt} exceeds the shards' bptt {corpus.shards_bptt} (shards.bptt)")
        self.corpus, self.cfg, self.slots_per_step = corpus, cfg, slots_per_step
        weights = {o: float(cfg.objectives.get(o, 0.0)) for o in OBJECTIVES}
        if any(w < 0 for w in weights.values()) or not sum(weights.values()) > 0:
            raise DataError(f"train.objectives {dict(cfg.objectives)} needs non-negative weights, one positive")
        unknown = set(cfg.objectives) - set(OBJECTIVES)
        if unknown:
            raise DataError(f"train.objectives: unknown objective(s) {sorted(unknown)}; known: {OBJECTIVES}")
        total = sum(weights.values())
        self.objectives = [o for o in OBJECTIVES if weights[o] > 0]
        self.stream_objective = next((o for o in self.objectives if o != "tlm"), None)  # what short rows train
        self.edges = np.cumsum([weights[o] / total for o in self.objectives])
        self.lang_ids = {lang: i for i, lang in enumerate(corpus.languages)}
        self.langs, self.lang_p = list(corpus.lang_q), np.array(list(corpus.lang_q.values()))
        self.pairs, self.pair_p = list(corpus.pair_q), np.array(list(corpus.pair_q.values()))

    def __len__(self) -> int:
        return 2**62  # indexed by step and slot; the sampler decides which

    def objective(self, k: int) -> str:
        u = (k * GOLDEN) % 1.0
        return self.objectives[min(int(np.searchsorted(self.edges, u, side="right")), len(self.objectives) - 1)]

    def __getitem__(self, k: int) -> dict[str, Any]:
        step, slot = divmod(int(k), self.slots_per_step)
        rng = np.random.default_rng([self.cfg.seed, step, slot])
        objective = self.objective(int(k))
        if objective == "tlm" and self.cfg.row_shape(step)[1] < self.cfg.bptt and self.stream_objective:
            # The short-row phase trains the stream objective alone: with TLM batches mixed in (even 1 in 5),
            # attention learned to look across the pair instead of at the neighbours (bench_mlm_plateau.py).
            objective = self.stream_objective
        if objective == "tlm":
            return self.tlm_batch(rng)
        return self.stream_batch(rng, objective, step)

    def stream_batch(self, rng: np.random.Generator, objective: str, step: int) -> dict[str, Any]:
        lang = self.langs[rng.choice(len(self.langs), p=self.lang_p)]
        rows = self.corpus.mlm["train"][lang]
        n_rows, T = self.cfg.row_shape(step)
        windows = []
        for index in rng.integers(len(rows), size=n_rows):
            row = rows.row(int(index))
            start = int(rng.integers(len(row) - T + 1)) if len(row) > T else 0
            windows.append(row[start : start + T])
        tokens = pad_rows(windows, T, PAD)
        langs = np.full_like(tokens, self.lang_ids[lang])
        positions = None  # 0..T-1; short rows start at a random offset so every position up to bptt is trained
        if self.cfg.bptt > T:  # the short-row phase
            positions = rng.integers(self.cfg.bptt - T + 1, size=(n_rows, 1)) + np.arange(T)
        if objective == "clm":
            return clm_batch(tokens, langs, lang, positions)
        inputs, targets = mask_tokens(tokens, rng, self.corpus.vocab_size, self.cfg)
        return to_batch("mlm", inputs, targets, langs, positions, lang)

    def tlm_batch(self, rng: np.random.Generator) -> dict[str, Any]:
        src_lang, tgt_lang = self.pairs[rng.choice(len(self.pairs), p=self.pair_p)]
        rows = self.corpus.tlm["train"][(src_lang, tgt_lang)]
        budget, framed, longest = self.cfg.batch_size * self.cfg.bptt, [], 0
        while True:  # pairs until the padded batch would exceed batch_size x bptt ids
            index = int(rng.integers(len(rows)))
            src, tgt = rows.row(index, "src_ids"), rows.row(index, "tgt_ids")
            ids = (src, tgt, src_lang, tgt_lang)
            if rng.random() < 0.5:  # both directions, so neither language is always first
                ids = (tgt, src, tgt_lang, src_lang)
            length = len(src) + len(tgt) + 4
            if framed and (len(framed) + 1) * max(longest, length) > budget:
                break
            framed.append(frame_pair(ids[0], ids[1], self.lang_ids[ids[2]], self.lang_ids[ids[3]]))
            longest = max(longest, length)
        return tlm_tensors(framed, rng, self.corpus.vocab_size, self.cfg, f"{src_lang}-{tgt_lang}")


def tlm_tensors(framed: Sequence[tuple[np.ndarray, ...]], rng: np.random.Generator, vocab_size: int,
                cfg: DataConfig, key: str, mask_ratio: float | None = None) -> dict[str, Any]:  # fmt: skip
    longest = max(len(f[0]) for f in framed)
    tokens = pad_rows([f[0] for f in framed], longest, PAD)
    positions = pad_rows([f[1] for f in framed], longest, 0)
    langs = pad_rows([f[2] for f in framed], longest, 0)
    inputs, targets = mask_tokens(tokens, rng, vocab_size, cfg, mask_ratio)
    return to_batch("tlm", inputs, targets, langs, positions, key)


def clm_batch(tokens: np.ndarray, langs: np.ndarray, key: str, positions: np.ndarray | None = None) -> dict[str, Any]:
    """Next-token prediction: inputs are ids 0..T-2, targets ids 1..T-1 (padding never a target)."""
    targets = tokens[:, 1:].copy()
    targets[targets == PAD] = IGNORE
    positions = None if positions is None else positions[:, :-1].copy()
    return to_batch("clm", tokens[:, :-1].copy(), targets, langs[:, :-1].copy(), positions, key)


def batch_loader(batches: TrainBatches, first_step: int, last_step: int, rank: int, grad_accum: int,
                 num_workers: int) -> Iterator[dict[str, Any]]:  # fmt: skip
    """This rank's batches for steps first_step..last_step-1, in order (grad_accum per step)."""
    indices = [step * batches.slots_per_step + rank * grad_accum + micro
               for step in range(first_step, last_step) for micro in range(grad_accum)]  # fmt: skip
    loader = torch.utils.data.DataLoader(batches, batch_size=None, sampler=indices, num_workers=num_workers,
                                         prefetch_factor=4 if num_workers else None,
                                         # its own generator: creating the iterator must not draw from the global
                                         # RNG, or a resumed run's dropout would drift from the uninterrupted one
                                         generator=torch.Generator().manual_seed(0))  # fmt: skip
    return iter(loader)


# ---------------------------------------------------------------- validation batches


def valid_batches(corpus: Corpus, cfg: DataConfig, objective: str, key: str | tuple[str, str], max_batches: int,
                  split: str = "valid", mask_ratio: float | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Deterministic batches over a split's rows of one language (MLM) or pair (TLM), in order."""
    rng = np.random.default_rng([cfg.seed, 1_000_003, OBJECTIVES.index(objective), _key_number(key)])
    lang_ids = {lang: i for i, lang in enumerate(corpus.languages)}
    if objective == "tlm":
        rows = corpus.tlm.get(split, {}).get(key)
        n = 0 if rows is None else min(len(rows), max_batches * cfg.batch_size)
        for start in range(0, n, cfg.batch_size):
            framed = [frame_pair(rows.row(i, "src_ids"), rows.row(i, "tgt_ids"), lang_ids[key[0]], lang_ids[key[1]])
                      for i in range(start, min(n, start + cfg.batch_size))]  # fmt: skip
            yield tlm_tensors(framed, rng, corpus.vocab_size, cfg, "-".join(key), mask_ratio)
        return
    rows = corpus.mlm.get(split, {}).get(key)
    windows = [] if rows is None else _windows(rows, cfg.bptt, max_batches * cfg.batch_size)
    for start in range(0, len(windows), cfg.batch_size):
        tokens = pad_rows(windows[start : start + cfg.batch_size], cfg.bptt, PAD)
        langs = np.full_like(tokens, lang_ids[key])
        if objective == "clm":
            yield clm_batch(tokens, langs, key)
        else:
            inputs, targets = mask_tokens(tokens, rng, corpus.vocab_size, cfg, mask_ratio)
            yield to_batch("mlm", inputs, targets, langs, None, key)


def _windows(rows: ShardRows, bptt: int, limit: int) -> list[np.ndarray]:
    """Consecutive bptt-long pieces of the rows (every token once), at most ``limit``."""
    out = []
    for i in range(len(rows)):
        row = rows.row(i)
        out += [row[s : s + bptt] for s in range(0, len(row), bptt)]
        if len(out) >= limit:
            return out[:limit]
    return out


def _key_number(key: str | tuple[str, str]) -> int:
    return int.from_bytes(("-".join(key) if isinstance(key, tuple) else key).encode()[:16].ljust(16, b"\0"), "little")
