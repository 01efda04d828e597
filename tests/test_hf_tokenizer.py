"""The exported transformers tokenizer (a fast text tokenizer) keeps sentencepiece's ids exactly, byte fallback included."""

from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path

import pytest
import sentencepiece as spm

from pipeline import hf_tokenizer, vocab
from tests.test_vocab import build_clean, make_cfg, run_mixture, udhr_paragraphs

TRAIN = {"de": "deu_1996", "en": "eng", "hi": "hin", "ru": "rus", "zh-Hans": "cmn_hans"}
# Not in training: their characters need byte fallback (Thai, Arabic, Japanese kana, emoji, rare Han).
UNSEEN = ("tha", "arb", "jpn")
EXTRA = ["🦩 flamingo, 🪿 goose, 𠜎𠜱 rare Han", "mixed: Grüße, привет, 你好, नमस्ते!", "  spaces\tand\ttabs  ",
         "literal <mask> and <s> inside text", "a\u00a0b c\u3000d soft\u00adhyphen",
         "<s></s><pad><unk><0x41><0xE3> look like pieces", "<lang:de>x<mask>y", "\u2581 a\u2581b", ""]  # fmt: skip


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    tmp = tmp_path_factory.mktemp("hf")
    texts = {lang: udhr_paragraphs(code) for lang, code in TRAIN.items()}
    cfg = make_cfg(tmp, list(texts), vocab_size=1200, sample_sentences=1200, language_tags=True,
                   compare_alpha_one=False, model_max_length=256)  # fmt: skip
    paths = build_clean(tmp, texts)
    vocab.run_vocab_stage(cfg, paths, run_mixture(cfg, paths, tmp / "mixture"), tmp / "vocab")
    return tmp / "vocab" / "hf", (tmp / "vocab" / "spm.model").read_bytes()


def sample_texts() -> list[str]:
    texts = [t for code in (*TRAIN.values(), *UNSEEN) for t in udhr_paragraphs(code)[:8]]
    return texts + EXTRA


def test_autotokenizer_gives_sentencepiece_ids(exported: tuple[Path, bytes]) -> None:
    from transformers import AutoTokenizer

    folder, model = exported
    sp = spm.SentencePieceProcessor(model_proto=model)
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.is_fast and "XLMRoberta" not in type(tok).__name__ and "Speech" not in type(tok).__name__
    texts = sample_texts()
    byte_ids = 0
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert ids == sp.encode(text), text
        byte_ids += sum(sp.is_byte(i) for i in ids)
    assert byte_ids > 50  # the sample really exercises byte fallback
    batch = tok(texts, add_special_tokens=False)["input_ids"]
    assert batch == sp.encode(texts)


def test_decode_round_trips_like_sentencepiece(exported: tuple[Path, bytes]) -> None:
    from transformers import AutoTokenizer

    folder, model = exported
    sp = spm.SentencePieceProcessor(model_proto=model)
    tok = AutoTokenizer.from_pretrained(folder)
    for text in sample_texts():
        if "<" in text:
            continue  # decode puts a space after special-token strings; ids are checked above
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == sp.decode(ids)
        # Byte-fallback characters come back; only sentencepiece's normalization (NFKC, spaces) differs.
        assert tok.decode(ids) == sp.decode(sp.encode(text))
    assert tok.decode(tok("🦩 𠜎", add_special_tokens=False)["input_ids"]) == "🦩 𠜎"


def test_special_tokens_config(exported: tuple[Path, bytes]) -> None:
    from transformers import AutoTokenizer

    folder, model = exported
    sp = spm.SentencePieceProcessor(model_proto=model)
    tok = AutoTokenizer.from_pretrained(folder)
    ids = (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id, tok.mask_token_id)
    assert ids == (0, 1, 2, 3, 4)
    assert tok.model_max_length == 256
    assert tok.convert_tokens_to_ids([f"<lang:{c}>" for c in sorted(TRAIN)]) == [5, 6, 7, 8, 9]
    assert len(tok) == spm.SentencePieceProcessor(model_proto=model).get_piece_size()
    # With special tokens a sentence is framed by </s>, as in XLM's streams; a pair as in TLM.
    ids = tok("Hello world", add_special_tokens=False)["input_ids"]
    assert tok("Hello world")["input_ids"] == [2, *ids, 2]
    assert tok("Hello", "world")["input_ids"] == [2, *sp.encode("Hello"), 2, 2, *sp.encode("world"), 2]
    assert tok.decode(tok("Hello world")["input_ids"], skip_special_tokens=True) == "Hello world"
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == hf_tokenizer.TOKENIZER_CLASS and config["mask_token"] == "<mask>"
    assert (folder / hf_tokenizer.SPM_FILE).read_bytes() == model


def test_export_refuses_a_mismatching_folder(tmp_path: Path, exported: tuple[Path, bytes]) -> None:
    folder, model = exported
    other = tmp_path / "broken"
    shutil.copytree(folder, other)
    tok = json.loads((other / hf_tokenizer.TOKENIZER_FILE).read_text(encoding="utf-8"))
    vocab = tok["model"]["vocab"]
    vocab[11:] = vocab[12:] + vocab[11:12]  # every id above 10 shifted by one, like a fairseq offset
    (other / hf_tokenizer.TOKENIZER_FILE).write_text(json.dumps(tok), encoding="utf-8")
    with pytest.raises(RuntimeError, match="disagrees with sentencepiece"):
        hf_tokenizer.check_ids(other, model)


def fuzz_texts(n: int, seed: int = 0) -> list[str]:
    """Random strings over characters and strings where a tokenizer port goes wrong."""
    rng = random.Random(seed)
    pool = [*"<>/sx0123456789ABCDEFpadunk ▁\t\u00a0\u3000 abcäöü人生权利ъыमन्\u200dﬁ①🦩𠜎", "<mask>", "<lang:de>", "<s>",
            "</s>", "<0x41>", "<unk>", "<pad>", "  "]  # fmt: skip
    return ["".join(rng.choice(pool) for _ in range(rng.randint(0, 24))) for _ in range(n)]


def test_random_strings_get_sentencepiece_ids(exported: tuple[Path, bytes]) -> None:
    from transformers import AutoTokenizer

    folder, model = exported
    sp = spm.SentencePieceProcessor(model_proto=model)
    tok = AutoTokenizer.from_pretrained(folder)
    texts = fuzz_texts(2000)
    assert tok(texts, add_special_tokens=False)["input_ids"] == sp.encode(texts)


def test_bpe_vocabulary_exports_too(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    texts = [t for code in TRAIN.values() for t in udhr_paragraphs(code)]
    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=writer, model_type="bpe", vocab_size=1000, byte_fallback=True,
        character_coverage=0.9995, pad_id=0, bos_id=1, eos_id=2, unk_id=3, user_defined_symbols=["<mask>", "<lang:de>"],
        num_threads=1, minloglevel=1,
    )  # fmt: skip
    (tmp_path / "spm.model").write_bytes(writer.getvalue())
    folder = hf_tokenizer.export_hf_tokenizer(
        tmp_path / "spm.model", tmp_path / "hf", {"vocab": {"model_max_length": 64}}
    )
    sp = spm.SentencePieceProcessor(model_proto=writer.getvalue())
    tok = AutoTokenizer.from_pretrained(folder)
    probe = sample_texts() + fuzz_texts(1000)
    assert tok(probe, add_special_tokens=False)["input_ids"] == sp.encode(probe)
