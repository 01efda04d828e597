"""What every evaluation family shares: the model beside its random twin, "no data" rows, result files.

Every table compares the trained model with its *random twin*: the same ``XLMConfig`` with seeded random
weights (XLM's init), the floor a score must clear before it says anything about training. The model is
refused when the vocabulary the data was encoded with is not the one it was trained with.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sentencepiece as spm
import torch

from model.checkpoint import check_vocabulary, load_model
from model.xlm import XLM
from pipeline.arrow_io import atomic_path, write_json
from pipeline.errors import PolyforgeError

NO_DATA = "no data"
MODELS = ("ours", "twin")  # column order of every table: the trained model, then its random twin


class EvalError(PolyforgeError, ValueError):
    """Evaluation input that cannot be used (a model and vocabulary that do not match, ...); names the files."""


@dataclass
class Models:
    """The trained model and its random twin (both in eval mode), their languages and the vocabulary."""

    ours: XLM
    twin: XLM
    meta: dict[str, Any]
    sp: spm.SentencePieceProcessor

    def items(self) -> list[tuple[str, XLM]]:
        return [("ours", self.ours), ("twin", self.twin)]

    @property
    def languages(self) -> list[str]:
        return list(self.meta["languages"])

    def lang_id(self, lang: str) -> int:
        return int(self.meta["lang2id"][lang])


def random_twin(model: XLM, seed: int) -> XLM:
    """A model of the same config with XLM's random init, from ``seed`` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        twin = XLM(model.cfg)
    return twin.eval()


def load_models(model_pt: str | os.PathLike[str], spm_model: str | os.PathLike[str], seed: int) -> Models:
    """The model at ``model_pt``, checked against the vocabulary ``spm_model`` the data was encoded with.

    A mismatch raises EvalError naming both sha256 hashes (model.checkpoint.check_vocabulary).
    """
    model, meta = load_model(model_pt)
    try:
        data = check_vocabulary(meta, spm_model)
    except ValueError as exc:
        raise EvalError(str(exc)) from None
    sp = spm.SentencePieceProcessor(model_proto=data)
    if sp.get_piece_size() != model.cfg.vocab_size:
        raise EvalError(f"{spm_model} has {sp.get_piece_size()} pieces, the model {model.cfg.vocab_size} token ids")
    return Models(model, random_twin(model, seed), meta, sp)


def no_data(reason: str, **counts: int) -> dict[str, Any]:
    """A table row for a language that could not be scored: shown as "no data", never dropped (with the counts
    that fell short, where there are any)."""
    return {"status": NO_DATA, "reason": reason, **counts}


def dig(data: Any, *keys: str) -> Any:
    """data[k1][k2]..., or None where a key is missing: result JSONs leave out what a family could not score."""
    for key in keys:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(max(1, int(threads)))


def _clean_numbers(value: Any, digits: int) -> Any:
    """Floats rounded (stable, readable files), NaN and infinities as null (JSON has neither)."""
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean_numbers(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_numbers(v, digits) for v in value]
    return value


def write_result(path: str | os.PathLike[str], data: Mapping[str, Any], digits: int = 6) -> None:
    """eval/{run}/<family>.json: atomic, sorted keys, rounded floats."""
    write_json(path, _clean_numbers(data, digits))


def save_figure(fig: Any, path: str | os.PathLike[str]) -> None:
    """A PNG written atomically (matplotlib Agg, no timestamp metadata)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
