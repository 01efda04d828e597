"""The trained-model file ``models/{run}/model.pt``: one writer (training) and one reader (export, embed, eval).

Contents: ``{"config": XLMConfig.to_dict(), "model": state_dict, "languages": [sorted canonical codes],
"spm_sha256": sha256 of the vocabulary the model was trained with, "step": int}``. A language's id is its
index in ``languages``. The vocabulary itself is copied beside it as ``spm.model``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from model.xlm import XLM, XLMConfig

MODEL_FILE = "model.pt"
SPM_FILE = "spm.model"


def model_path(run_dir_or_model_pt: str | os.PathLike[str]) -> Path:
    """``models/{run}`` or ``models/{run}/model.pt`` -> the .pt file."""
    path = Path(run_dir_or_model_pt)
    return path / MODEL_FILE if path.is_dir() else path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_model(path: str | os.PathLike[str], model: XLM, languages: list[str], spm_sha256: str, step: int) -> Path:
    """Write the model file atomically (temp file beside it, then rename): a crash never leaves half a file."""
    path = Path(path)
    if list(languages) != sorted(languages) or len(set(languages)) != len(languages):
        raise ValueError(f"languages must be sorted and distinct (language id = index): {languages}")
    if len(languages) != model.cfg.n_langs:
        raise ValueError(f"{len(languages)} languages for a model with n_langs = {model.cfg.n_langs}")
    model = getattr(model, "module", model)  # unwrap DDP / compile wrappers
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"config": model.cfg.to_dict(), "model": state, "languages": list(languages),
               "spm_sha256": spm_sha256, "step": int(step)}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_model(
    run_dir_or_model_pt: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[XLM, dict[str, Any]]:
    """The model in eval mode, and its metadata: languages, lang2id, spm_sha256, step, config, path."""
    path = model_path(run_dir_or_model_pt)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path} (expected models/{{run}}/{MODEL_FILE})")
    payload = torch.load(path, map_location=device, weights_only=True)
    cfg = XLMConfig(**payload["config"])
    model = XLM(cfg).to(device)
    model.load_state_dict(payload["model"])
    model.eval()
    languages = list(payload["languages"])
    meta = {
        "path": path,
        "config": cfg,
        "languages": languages,
        "lang2id": {lang: i for i, lang in enumerate(languages)},
        "spm_sha256": payload["spm_sha256"],
        "step": payload["step"],
    }
    return model, meta


def check_vocabulary(meta: dict[str, Any], spm_path: str | os.PathLike[str]) -> bytes:
    """The SentencePiece model at ``spm_path``, refused when it is not the one the model was trained with."""
    spm_path = Path(spm_path)
    if not spm_path.is_file():
        raise FileNotFoundError(f"no SentencePiece model at {spm_path}")
    data = spm_path.read_bytes()
    found = sha256_bytes(data)
    if found != meta["spm_sha256"]:
        raise ValueError(
            f"{spm_path} has sha256 {found}, but {meta['path']} was trained with a vocabulary of sha256 "
            f"{meta['spm_sha256']}: token ids would not match"
        )
    return data
