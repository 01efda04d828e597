"""Export the SentencePiece model as a folder ``transformers.AutoTokenizer.from_pretrained`` loads.

The class is transformers' ``Speech2TextTokenizer`` (5.x): a slow, SentencePiece-backed tokenizer that
encodes with ``sp_model.encode``, maps pieces to ids through ``vocab.json`` (which we write from the
model itself, so ids are sentencepiece's), and decodes with ``sp_model.decode`` (so byte-fallback
pieces turn back into characters).  Checked alternatives: XLMRobertaTokenizer shifts every id by one;
converted fast tokenizers turn byte pieces into <unk>; ``SentencePieceBackend``/BertGeneration keep the
ids but decode ``<0xE3>`` literally; GPTSw3 rewrites whitespace and drops NBSP before encoding.
``split_special_tokens`` is on so that text is never cut at special-token strings before
sentencepiece sees it: ids then equal ``sp.encode`` even for text containing ``<mask>``.
With ``add_special_tokens=True`` the class appends ``</s>`` (XLM's sentence end).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import sentencepiece as spm

from pipeline.arrow_io import write_json

TOKENIZER_CLASS = "Speech2TextTokenizer"
SPM_FILE = "sentencepiece.bpe.model"  # the file name the class expects, whatever the model type
VOCAB_FILE = "vocab.json"

# Strings whose ids the export is checked on: several scripts, and characters that need byte fallback.
CHECK_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Alle Menschen sind frei und gleich an Würde und Rechten geboren.",
    "सभी मनुष्यों को गौरव और अधिकारों के मामले में जन्मजात स्वतन्त्रता प्राप्त है।",
    "人人生而自由，在尊严和权利上一律平等。",
    "rare: 🦩🪿 𠜎 ᚠᛇᚻ",
)


def tokenizer_config(sp: spm.SentencePieceProcessor, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """tokenizer_config.json: our special pieces by name, language tags as extra special tokens."""
    lang_tags = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if sp.id_to_piece(i).startswith("<lang:")]
    return {
        "tokenizer_class": TOKENIZER_CLASS,
        "pad_token": sp.id_to_piece(sp.pad_id()),
        "bos_token": sp.id_to_piece(sp.bos_id()),
        "eos_token": sp.id_to_piece(sp.eos_id()),
        "unk_token": sp.id_to_piece(sp.unk_id()),
        "mask_token": "<mask>",
        "additional_special_tokens": lang_tags,
        "model_max_length": cfg["vocab"]["model_max_length"],
        "split_special_tokens": True,
        "do_lower_case": False,
        "do_upper_case": False,
        "clean_up_tokenization_spaces": False,
    }


def write_folder(model: bytes, folder: Path, cfg: Mapping[str, Any]) -> None:
    sp = spm.SentencePieceProcessor(model_proto=model)
    (folder / SPM_FILE).write_bytes(model)
    write_json(folder / VOCAB_FILE, {sp.id_to_piece(i): i for i in range(sp.get_piece_size())})
    write_json(folder / "tokenizer_config.json", tokenizer_config(sp, cfg))


def check_ids(folder: str | os.PathLike[str], model: bytes, texts: Iterable[str] = CHECK_TEXTS) -> None:
    """Load the folder through AutoTokenizer and insist on sentencepiece's ids and decoding."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    sp = spm.SentencePieceProcessor(model_proto=model)
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if ids != sp.encode(text):
            raise RuntimeError(f"exported tokenizer in {folder} disagrees with sentencepiece on {text!r}")
        if tok.decode(ids) != sp.decode(ids):
            raise RuntimeError(f"exported tokenizer in {folder} decodes {text!r} unlike sentencepiece")


def export_hf_tokenizer(
    model_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], cfg: Mapping[str, Any], check: bool = True
) -> Path:
    """Write ``out_dir`` whole or not at all: a staged folder beside it, checked, then renamed."""
    out_dir = Path(out_dir)
    model = Path(model_path).read_bytes()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    staged.chmod(0o755)  # mkdtemp makes it private; the folder is meant to be shared
    try:
        write_folder(model, staged, cfg)
        if check:
            check_ids(staged, model)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staged, out_dir)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return out_dir
