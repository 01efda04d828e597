"""fastText language identification: batched, cached per process, labels in canonical codes.

The model is loaded once per process (each Dask worker keeps its own copy in ``_MODELS``).
Texts reach fastText without newlines (it stops a line at ``\\n``), and probabilities are
clipped to 1.0 (lid.176 returns 1.00001 for confident lines).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline import langs

LABEL_PREFIX = "__label__"
PROB_BINS = 10  # fixed histogram bins of LID confidence: [0, .1), ..., [.9, 1.0]

_MODELS: dict[str, object] = {}
_LOCK = threading.Lock()


def load_model(path: str | os.PathLike[str]):
    """The fastText model at ``path``, loaded at most once per process."""
    key = str(Path(path).resolve())
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            import fasttext

            fasttext.FastText.eprint = lambda *_: None  # silence the load_model deprecation banner
            model = fasttext.load_model(key)
            _MODELS[key] = model
    return model


def predict(
    model_path: str | os.PathLike[str], texts: Sequence[str], batch_size: int = 2048
) -> tuple[list[str], np.ndarray]:
    """Top-1 raw model label (without ``__label__``) and probability (float32, ≤ 1.0) per text."""
    model = load_model(model_path)
    labels: list[str] = []
    probs = np.empty(len(texts), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        chunk = [t.replace("\n", " ") for t in texts[start : start + batch_size]]
        got_labels, got_probs = model.predict(chunk, k=1)
        labels.extend(lab[0].removeprefix(LABEL_PREFIX) if lab else "" for lab in got_labels)
        probs[start : start + len(chunk)] = [p[0] if len(p) else 0.0 for p in got_probs]
    np.minimum(probs, np.float32(1.0), out=probs)
    return labels, probs


def expected_label(code: str, overrides: dict[str, str] | None) -> str | None:
    """The model label that counts as language ``code`` (config lid.labels can override)."""
    return langs.lid_label(code, overrides or None)


def to_canonical(labels: Sequence[str]) -> list[str]:
    """Model labels as canonical codes (``zh`` → ``zh-Hans``), via pipeline.langs, once per distinct label."""
    table = {label: langs.label_to_canonical(label) for label in set(labels)}
    return [table[label] for label in labels]


def decide(labels: Sequence[str], probs: np.ndarray, expected: str, threshold: float) -> list[str | None]:
    """Per text: None (keep), "lid-mismatch" or "lid-low-confidence"."""
    match = np.array([label == expected for label in labels], dtype=bool)
    reasons = np.where(match, np.where(np.asarray(probs) < threshold, "lid-low-confidence", ""), "lid-mismatch")
    return [r or None for r in reasons.tolist()]


def histogram(probs: np.ndarray) -> list[int]:
    """Counts of probabilities in the fixed bins [0, .1), ..., [.9, 1.0] (1.0 goes in the last)."""
    bins = np.minimum((np.asarray(probs, dtype=np.float64) * PROB_BINS).astype(np.int64), PROB_BINS - 1)
    return np.bincount(np.maximum(bins, 0), minlength=PROB_BINS).astype(int).tolist()
