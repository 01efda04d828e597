"""Export a checkpoint to a ``transformers`` ``XLMWithLMHeadModel`` folder, with the vocabulary's tokenizer.

    python -m model export models/{run}/model.pt --vocab results/vocab/hf --out models/{run}/hf

Our layout is HF's XLM layout (design.md, "The HF XLM layout"), so export renames weights. What does not
map by name is set explicitly, because HF's defaults differ from ours: its pad index is 2 (our ``</s>``),
its epsilon 1e-12, and with ``n_langs = 1`` it builds no language embedding, so that one language vector is
folded into the position table (a constant added before the first LayerNorm either way). The folder is
staged beside ``--out``, checked by loading it back and comparing logits, then renamed into place.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import check_vocabulary, load_model
from model.xlm import XLM
from pipeline.hf_tokenizer import FILES as TOKENIZER_FILES
from pipeline.hf_tokenizer import SPM_FILE
from pipeline.logs import stage_logging
from pipeline.schemas import BOS, EOS, MASK, PAD, UNK

LOG = logging.getLogger(__name__)

CHECK_TOLERANCE = 1e-4  # fp32 logits of the two implementations agree to ~1e-6; this catches wrong mappings


def hf_config(model: XLM, languages: list[str]) -> Any:
    from transformers import XLMConfig

    cfg = model.cfg
    return XLMConfig(
        vocab_size=cfg.vocab_size, emb_dim=cfg.dim, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
        dropout=cfg.dropout, attention_dropout=cfg.attention_dropout, max_position_embeddings=cfg.max_positions,
        layer_norm_eps=cfg.layer_norm_eps, gelu_activation=True, sinusoidal_embeddings=False, causal=False,
        asm=False, is_encoder=True, n_langs=cfg.n_langs, use_lang_emb=cfg.use_lang_emb,
        lang2id={lang: i for i, lang in enumerate(languages)}, id2lang=dict(enumerate(languages)), lang_id=0,
        pad_index=PAD, bos_index=BOS, eos_index=EOS, unk_index=UNK, mask_index=MASK, mask_token_id=MASK,
        embed_init_std=cfg.dim**-0.5, tie_word_embeddings=True, architectures=["XLMWithLMHeadModel"],
    )  # fmt: skip


def hf_state_dict(model: XLM) -> dict[str, torch.Tensor]:
    """Our weights under XLMWithLMHeadModel's names."""
    sd, cfg = model.state_dict(), model.cfg
    positions = sd["positions.weight"].clone()
    out = {
        "transformer.embeddings.weight": sd["tokens.weight"],
        "transformer.layer_norm_emb.weight": sd["ln_emb.weight"],
        "transformer.layer_norm_emb.bias": sd["ln_emb.bias"],
        "pred_layer.proj.weight": sd["tokens.weight"],  # tied
        "pred_layer.proj.bias": sd["out_bias"],
    }
    if cfg.use_lang_emb and cfg.n_langs > 1:
        out["transformer.lang_embeddings.weight"] = sd["langs.weight"]
    elif cfg.use_lang_emb:
        positions += sd["langs.weight"][0]  # HF has no language table for one language: fold it in
    out["transformer.position_embeddings.weight"] = positions
    for i in range(cfg.n_layers):
        ours, theirs = f"blocks.{i}.", "transformer."
        for a, b in (("attn.q", "q_lin"), ("attn.k", "k_lin"), ("attn.v", "v_lin"), ("attn.out", "out_lin")):
            for p in ("weight", "bias"):
                out[f"{theirs}attentions.{i}.{b}.{p}"] = sd[f"{ours}{a}.{p}"]
        for a, b in (("ln1", f"layer_norm1.{i}"), ("ln2", f"layer_norm2.{i}"), ("ffn_in", f"ffns.{i}.lin1"),
                     ("ffn_out", f"ffns.{i}.lin2")):  # fmt: skip
            for p in ("weight", "bias"):
                out[f"{theirs}{b}.{p}"] = sd[f"{ours}{a}.{p}"]
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def to_hf(model: XLM, languages: list[str]) -> Any:
    from transformers import XLMWithLMHeadModel

    hf = XLMWithLMHeadModel(hf_config(model, languages))
    missing, unexpected = hf.load_state_dict(hf_state_dict(model), strict=False)
    missing = [k for k in missing if k != "pred_layer.proj.weight"]  # tied to the embeddings
    if missing or unexpected:
        raise RuntimeError(f"weight mapping is incomplete: missing {missing}, unexpected {unexpected}")
    return hf.eval()


def probe_batch(model: XLM, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A padded two-row batch with TLM positions and per-side languages, to compare both implementations."""
    cfg = model.cfg
    B, T = 2, min(12, cfg.max_positions)
    tokens = torch.randint(5, cfg.vocab_size, (B, T), generator=generator)
    tokens[:, 0] = EOS
    tokens[1, T - 3 :] = PAD
    half = T // 2
    positions = torch.cat([torch.arange(half), torch.arange(T - half)]).expand(B, T).clone()
    langs = torch.zeros(B, T, dtype=torch.long)
    langs[:, half:] = cfg.n_langs - 1
    return {"tokens": tokens, "positions": positions, "langs": langs, "attention_mask": tokens != PAD}


@torch.no_grad()
def max_logit_difference(model: XLM, hf: Any, batch: dict[str, torch.Tensor]) -> float:
    ours, _ = model(batch["tokens"], batch["langs"], batch["positions"], attention_mask=batch["attention_mask"])
    theirs = hf(input_ids=batch["tokens"], langs=batch["langs"], position_ids=batch["positions"],
                attention_mask=batch["attention_mask"].long()).logits  # fmt: skip
    real = batch["attention_mask"]
    return (ours[real] - theirs[real]).abs().max().item()


def add_legacy_keys(config_json: Path) -> None:
    """transformers 5 stores pad_index & co. as pad_token_id & co.; 4.x reads the XLM names (default pad 2)."""
    config = json.loads(config_json.read_text(encoding="utf-8"))
    legacy = {
        "pad_index": "pad_token_id",
        "bos_index": "bos_token_id",
        "eos_index": "eos_token_id",
        "n_words": "vocab_size",
    }
    config.update({old: config[new] for old, new in legacy.items()})
    config_json.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def copy_tokenizer(vocab_dir: Path, out: Path) -> None:
    for name in TOKENIZER_FILES:
        if not (vocab_dir / name).is_file():
            raise FileNotFoundError(f"{vocab_dir} lacks {name}: is it the vocab stage's hf/ folder?")
        shutil.copyfile(vocab_dir / name, out / name)


def export(
    model_pt: str | os.PathLike[str],
    vocab_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    log: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``out_dir`` whole or not at all: config + safetensors + tokenizer, staged, checked, renamed."""
    from transformers import AutoModelForMaskedLM

    vocab_dir, out_dir = Path(vocab_dir), Path(out_dir)
    with stage_logging(log):
        model, meta = load_model(model_pt)
        check_vocabulary(meta, vocab_dir / SPM_FILE)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
        staged.chmod(0o755)
        try:
            to_hf(model, meta["languages"]).save_pretrained(staged)
            add_legacy_keys(staged / "config.json")
            copy_tokenizer(vocab_dir, staged)
            loaded = AutoModelForMaskedLM.from_pretrained(staged).eval()
            diff = max_logit_difference(model, loaded, probe_batch(model, torch.Generator().manual_seed(0)))
            if not diff <= CHECK_TOLERANCE:
                raise RuntimeError(f"exported model disagrees with {meta['path']}: max logit difference {diff:.3g}")
            if out_dir.exists():
                shutil.rmtree(out_dir)
            os.replace(staged, out_dir)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        LOG.info("export: %s (step %d, %s) -> %s; max logit difference %.2g",
                    meta["path"], meta["step"], ", ".join(meta["languages"]), out_dir, diff)  # fmt: skip
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model export", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_pt", help="models/{run}/model.pt (or the run folder)")
    parser.add_argument("--vocab", required=True, help="the vocab stage's transformers folder, e.g. results/vocab/hf")
    parser.add_argument("--out", required=True, help="output folder, e.g. models/{run}/hf")
    parser.add_argument("--log", help="also write the log here")
    args = parser.parse_args(argv)
    export(args.model_pt, args.vocab, args.out, args.log)
    return 0
