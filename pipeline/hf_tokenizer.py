"""Export the SentencePiece model as a fast text tokenizer that ``transformers.AutoTokenizer`` loads.

The folder holds ``tokenizer.json`` (built with the ``tokenizers`` library from the SentencePiece model
itself) and ``tokenizer_config.json`` naming ``PreTrainedTokenizerFast``, the generic text class, plus a
copy of the SentencePiece model for users of ``sentencepiece``.  Ids equal ``sp.encode`` exactly, byte
fallback included, because the pipeline repeats sentencepiece's steps:

- normalizer: the model's precompiled character map (NFKC), then its whitespace rules (strip, collapse);
- pre-tokenizer: spaces become ``▁`` with the dummy prefix, then every character that no piece contains is
  cut out on its own, so it becomes ``<unk>`` and then bytes as in sentencepiece, and never lets a piece
  like ``<s>`` or ``<0x3C>`` match literal text (sentencepiece never matches control or byte pieces;
  the ``tokenizers`` Unigram model has no such notion). User-defined symbols (``<mask>``, language tags)
  are cut out whole, as sentencepiece always keeps them one piece;
- model: Unigram (or BPE) with sentencepiece's scores and ``byte_fallback``; control and byte pieces get
  a score no path chooses, user-defined ones sentencepiece's bonus;
- decoder: ``▁`` back to spaces, byte pieces back to characters.

Checked alternatives: XLMRobertaTokenizer shifts every id by one; transformers' generic SpmConverter turns
byte pieces into <unk>; SentencePieceBackend/BertGeneration keep the ids but decode ``<0xE3>`` literally;
Speech2TextTokenizer (used before) works but is a speech model's class.  ``split_special_tokens`` is on
so that text is never cut at special-token strings: ids equal ``sp.encode`` even for text containing
``<s>``.  With ``add_special_tokens=True`` a sentence is framed ``</s> ids </s>`` and a pair
``</s> a </s> </s> b </s>``, as in XLM's streams and TLM pairs (which is what model/embed.py feeds).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sentencepiece as spm

from pipeline.arrow_io import write_json
from pipeline.schemas import EOS, SPECIAL_PIECES

TOKENIZER_CLASS = "PreTrainedTokenizerFast"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
SPM_FILE = "spm.model"  # a copy for sentencepiece users; transformers does not read it
FILES = (TOKENIZER_FILE, CONFIG_FILE, SPM_FILE)

# Strings whose ids the export is checked on: several scripts, and characters that need byte fallback.
CHECK_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Alle Menschen sind frei und gleich an Würde und Rechten geboren.",
    "सभी मनुष्यों को गौरव और अधिकारों के मामले में जन्मजात स्वतन्त्रता प्राप्त है।",
    "人人生而自由，在尊严和权利上一律平等。",
    "rare: 🦩🪿 𠜎 ᚠᛇᚻ",
    "literal <s> </s> <pad> <unk> <0x41> <mask>  spaced\ttabs ",
)

# sentencepiece_model.proto: SentencePiece.Type and TrainerSpec.ModelType
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
UNIGRAM, BPE = 1, 2
NEVER = -1e9  # score of pieces sentencepiece never matches in text; far below any real path


# ---------------------------------------------------------------- reading the model proto


@dataclass
class SpmModel:
    """The parts of a SentencePiece ModelProto a tokenizer.json needs (read without protobuf installed)."""

    pieces: list[tuple[str, float, int]]  # (piece, score, type); index = id
    model_type: int = UNIGRAM
    byte_fallback: bool = False
    charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return out, i


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: ints for varints, bytes otherwise."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            value, i = buf[i : i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield key >> 3, value


def read_spm(model: bytes) -> SpmModel:
    spec = SpmModel(pieces=[])
    for num, value in _fields(model):
        if num == 1:  # pieces: piece=1, score=2 (float), type=3 (default NORMAL)
            piece = dict(_fields(value))
            score = struct.unpack("<f", piece[2])[0] if 2 in piece else 0.0
            spec.pieces.append((piece[1].decode("utf-8"), score, int(piece.get(3, NORMAL))))
        elif num == 2:  # trainer_spec: model_type=3, byte_fallback=35
            trainer = dict(_fields(value))
            spec.model_type, spec.byte_fallback = int(trainer.get(3, UNIGRAM)), bool(trainer.get(35, 0))
        elif num == 3:  # normalizer_spec: precompiled_charsmap=2, add_dummy_prefix=3, remove_extra_whitespaces=4
            norm = dict(_fields(value))
            spec.charsmap = bytes(norm.get(2, b""))
            spec.add_dummy_prefix = bool(norm.get(3, 1))
            spec.remove_extra_whitespaces = bool(norm.get(4, 1))
    return spec


# ---------------------------------------------------------------- building tokenizer.json


def _char_class(chars: Iterable[str]) -> str:
    """A regex character class body of code-point ranges: compact even for thousands of Han characters."""
    points, parts = sorted(ord(c) for c in chars), []
    start = prev = points[0]
    for point in [*points[1:], None]:
        if point is not None and point == prev + 1:
            prev = point
            continue
        parts.append(f"\\x{{{start:x}}}" + (f"-\\x{{{prev:x}}}" if prev > start else ""))
        if point is not None:
            start = prev = point
    return "".join(parts)


def isolate_pattern(spec: SpmModel) -> str:
    """User-defined symbols whole, else any character that no normal piece contains."""
    user = sorted((p for p, _, t in spec.pieces if t == USER_DEFINED), key=lambda p: (-len(p), p))
    known = {c for p, _, t in spec.pieces if t == NORMAL for c in p}
    return "|".join([*(re.escape(p) for p in user), f"[^{_char_class(known)}]"])


def space_like(model: bytes) -> str:
    """Characters sentencepiece's normalizer turns into spaces (tabs, NBSP, ideographic space, ZWSP, ...).

    ``tokenizers``' Precompiled normalizer looks up whole grapheme clusters, so a space-like character
    followed by a combining mark or joiner (NBSP + virama) loses the mark; sentencepiece maps only the
    space. Turning these characters into plain spaces first, which the map leaves alone, avoids that.
    """
    sp = spm.SentencePieceProcessor(model_proto=model)
    candidates = (chr(i) for i in range(0x110000) if unicodedata.category(chr(i)) in ("Zs", "Zl", "Zp", "Cc", "Cf"))
    return "".join(c for c in candidates if c != " " and sp.normalize(f"a{c}b") == sp.normalize("a b"))


def _model(spec: SpmModel) -> Any:
    from tokenizers.models import BPE as BPEModel
    from tokenizers.models import Unigram

    normal = [s for _, s, t in spec.pieces if t == NORMAL]
    if spec.model_type == UNIGRAM:
        # sentencepiece gives a user-defined symbol length * max_score - 0.1 "to always be selected".
        best = max(normal)
        vocab = [
            (p, s if t == NORMAL else len(p) * best - 0.1 if t == USER_DEFINED else NEVER) for p, s, t in spec.pieces
        ]
        unk = next(i for i, (_, _, t) in enumerate(spec.pieces) if t == UNKNOWN)
        return Unigram(vocab, unk_id=unk, byte_fallback=spec.byte_fallback)
    if spec.model_type == BPE:
        # sentencepiece merges the adjacent pair whose union is the best-scored piece: rank merges by score.
        ids = {p: i for i, (p, _, _) in enumerate(spec.pieces)}
        normal_set = {p for p, _, t in spec.pieces if t == NORMAL}
        merges = [
            (p[:k], p[k:])
            for p, _, t in sorted(spec.pieces, key=lambda x: -x[1])
            if t == NORMAL
            for k in range(1, len(p))
            if p[:k] in normal_set and p[k:] in normal_set
        ]
        unk = next(p for p, _, t in spec.pieces if t == UNKNOWN)
        # ignore_merges: an isolated user-defined symbol is looked up whole, as sentencepiece keeps it.
        return BPEModel(ids, merges, unk_token=unk, fuse_unk=True, byte_fallback=spec.byte_fallback, ignore_merges=True)
    raise ValueError(f"SentencePiece model type {spec.model_type} is not unigram (1) or bpe (2)")


def build_tokenizer(model: bytes) -> Any:
    """A ``tokenizers.Tokenizer`` whose ids equal ``sp.encode`` on any text."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors

    spec = read_spm(model)
    tok = Tokenizer(_model(spec))
    steps = []
    if spec.charsmap:
        if spec.remove_extra_whitespaces:  # runs of spaces collapse, so a character -> " " is safe
            steps.append(normalizers.Replace(Regex(f"[{_char_class(space_like(model))}]"), " "))
        steps.append(normalizers.Precompiled(spec.charsmap))
    if spec.remove_extra_whitespaces:
        steps += [normalizers.Strip(), normalizers.Replace(Regex(" {2,}"), " ")]
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace("▁", prepend_scheme="always" if spec.add_dummy_prefix else "never", split=False),
        pre_tokenizers.Split(Regex(isolate_pattern(spec)), "isolated"),
    ])  # fmt: skip
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        + ([decoders.Strip(" ", 1, 0)] if spec.add_dummy_prefix else [])
    )
    specials = [p for p, _, t in spec.pieces if t in (CONTROL, UNKNOWN)] + [SPECIAL_PIECES[4]]
    tok.add_special_tokens([AddedToken(p, special=True, normalized=False) for p in specials])
    tok.encode_special_tokens = True  # never cut text at "<s>": sentencepiece does not
    eos = (SPECIAL_PIECES[EOS], EOS)
    tok.post_processor = processors.TemplateProcessing(
        single="</s> $A </s>", pair="</s> $A </s> </s> $B </s>", special_tokens=[eos]
    )
    return tok


def tokenizer_config(sp: spm.SentencePieceProcessor, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """tokenizer_config.json: our special pieces by name, language tags as extra special tokens."""
    lang_tags = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if sp.id_to_piece(i).startswith("<lang:")]
    return {
        "tokenizer_class": TOKENIZER_CLASS,
        "pad_token": sp.id_to_piece(sp.pad_id()),
        "bos_token": sp.id_to_piece(sp.bos_id()),
        "eos_token": sp.id_to_piece(sp.eos_id()),
        "unk_token": sp.id_to_piece(sp.unk_id()),
        "mask_token": SPECIAL_PIECES[4],
        "extra_special_tokens": lang_tags,
        "model_max_length": cfg["vocab"]["model_max_length"],
        "split_special_tokens": True,
        "clean_up_tokenization_spaces": False,
    }


def write_folder(model: bytes, folder: Path, cfg: Mapping[str, Any]) -> None:
    sp = spm.SentencePieceProcessor(model_proto=model)
    tok = json.loads(build_tokenizer(model).to_str())
    (folder / TOKENIZER_FILE).write_text(json.dumps(tok, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    write_json(folder / CONFIG_FILE, tokenizer_config(sp, cfg))
    (folder / SPM_FILE).write_bytes(model)


def check_ids(folder: str | os.PathLike[str], model: bytes, texts: Iterable[str] = CHECK_TEXTS) -> None:
    """Load the folder through AutoTokenizer and insist on sentencepiece's ids and decoding."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    sp = spm.SentencePieceProcessor(model_proto=model)
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if ids != sp.encode(text):
            raise RuntimeError(f"exported tokenizer in {folder} disagrees with sentencepiece on {text!r}")
        if "<" not in text and tok.decode(ids) != sp.decode(ids):  # special-token strings decode as pieces
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
