"""Export to transformers' XLMWithLMHeadModel gives the same logits as our model, with our special ids."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest
import sentencepiece as spm
import torch

from model import export
from model.checkpoint import SPM_FILE, load_model, save_model
from model.xlm import XLM, XLMConfig
from pipeline import hf_tokenizer
from pipeline.schemas import EOS, PAD
from tests.test_vocab import udhr_paragraphs

LANGS = ["de", "en", "hi"]


def train_small_vocab(folder: Path) -> Path:
    """A real SentencePiece model with our special ids (pad 0, <s> 1, </s> 2, <unk> 3, <mask> 4), and its hf/ folder."""
    texts = [t for code in ("deu_1996", "eng", "hin") for t in udhr_paragraphs(code)]
    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=writer, vocab_size=400, byte_fallback=True,
        character_coverage=0.9995, pad_id=0, bos_id=1, eos_id=2, unk_id=3, user_defined_symbols=["<mask>"],
        num_threads=1, minloglevel=1,
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spm.model").write_bytes(writer.getvalue())
    hf_tokenizer.export_hf_tokenizer(folder / "spm.model", folder / "hf", {"vocab": {"model_max_length": 64}})
    return folder


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_small_vocab(tmp_path_factory.mktemp("vocab"))


def random_run(run_dir: Path, vocab_dir: Path, n_langs: int = 3, use_lang_emb: bool = True, seed: int = 0) -> Path:
    """models/{run}/model.pt + spm.model for a small XLM whose every weight (norms, biases too) is random."""
    torch.manual_seed(seed)
    model_bytes = (vocab_dir / "spm.model").read_bytes()
    vocab_size = spm.SentencePieceProcessor(model_proto=model_bytes).get_piece_size()
    cfg = XLMConfig(vocab_size=vocab_size, n_langs=n_langs, dim=32, n_layers=2, n_heads=4, max_positions=40,
                    layer_norm_eps=1e-5, use_lang_emb=use_lang_emb, dropout=0.3, attention_dropout=0.3)  # fmt: skip
    model = XLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(vocab_dir / "spm.model", run_dir / SPM_FILE)
    return save_model(run_dir / "model.pt", model, LANGS[:n_langs], hashlib.sha256(model_bytes).hexdigest(), step=3)


def tlm_batch(model: XLM, n_langs: int) -> dict[str, torch.Tensor]:
    """Three right-padded rows `</s> src </s></s> tgt </s>`: positions restart at the target, langs per side."""
    g = torch.Generator().manual_seed(1)
    rows, positions, langs = [], [], []
    for src_len, tgt_len, (src, tgt) in ((7, 9, (0, n_langs - 1)), (3, 4, (n_langs - 1, 0)), (5, 2, (0, 0))):
        src_ids = torch.randint(5, model.cfg.vocab_size, (src_len,), generator=g).tolist()
        tgt_ids = torch.randint(5, model.cfg.vocab_size, (tgt_len,), generator=g).tolist()
        rows.append([EOS, *src_ids, EOS, EOS, *tgt_ids, EOS])
        positions.append([*range(src_len + 2), *range(tgt_len + 2)])
        langs.append([src] * (src_len + 2) + [tgt] * (tgt_len + 2))
    T = max(map(len, rows))

    def pad(seqs: list[list[int]], value: int) -> torch.Tensor:
        return torch.tensor([s + [value] * (T - len(s)) for s in seqs])

    tokens = pad(rows, PAD)
    return {"tokens": tokens, "positions": pad(positions, 0), "langs": pad(langs, 0), "attention_mask": tokens != PAD}


@pytest.mark.parametrize(("n_langs", "use_lang_emb"), [(3, True), (1, True), (2, False)])
def test_exported_model_gives_our_logits(tmp_path: Path, vocab_dir: Path, n_langs: int, use_lang_emb: bool) -> None:
    from transformers import AutoModelForMaskedLM

    model_pt = random_run(tmp_path / "run", vocab_dir, n_langs, use_lang_emb)
    out = export.export(model_pt, vocab_dir / "hf", tmp_path / "run" / "hf")
    ours, _ = load_model(model_pt)
    theirs = AutoModelForMaskedLM.from_pretrained(out)
    assert type(theirs).__name__ == "XLMWithLMHeadModel" and not theirs.training
    b = tlm_batch(ours, n_langs)
    real = b["attention_mask"]
    with torch.no_grad():
        expected, _ = ours(b["tokens"], b["langs"], b["positions"], attention_mask=real)
        masked = theirs(input_ids=b["tokens"], langs=b["langs"], position_ids=b["positions"],
                        attention_mask=real.long()).logits  # fmt: skip
        # Without attention_mask HF finds the padding through config.pad_index.
        unmasked = theirs(input_ids=b["tokens"], langs=b["langs"], position_ids=b["positions"]).logits
    assert expected.shape == masked.shape == (*b["tokens"].shape, ours.cfg.vocab_size)
    torch.testing.assert_close(masked[real], expected[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(unmasked[real], expected[real], atol=1e-5, rtol=0)


def test_exported_config_carries_our_ids_epsilon_and_languages(tmp_path: Path, vocab_dir: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    model_pt = random_run(tmp_path / "run", vocab_dir)
    out = export.export(model_pt, vocab_dir / "hf", tmp_path / "run" / "hf")
    cfg = AutoConfig.from_pretrained(out)
    ours = load_model(model_pt)[0].cfg
    assert cfg.layer_norm_eps == 1e-5 and cfg.gelu_activation and cfg.causal is False
    assert (cfg.pad_index, cfg.bos_index, cfg.eos_index, cfg.unk_index, cfg.mask_token_id) == (0, 1, 2, 3, 4)
    assert (cfg.n_langs, cfg.use_lang_emb, cfg.lang2id) == (3, True, {"de": 0, "en": 1, "hi": 2})
    assert {int(k): v for k, v in cfg.id2lang.items()} == {0: "de", 1: "en", 2: "hi"}
    assert (cfg.emb_dim, cfg.n_layers, cfg.n_heads, cfg.n_words) == (
        ours.dim,
        ours.n_layers,
        ours.n_heads,
        ours.vocab_size,
    )
    assert (cfg.dropout, cfg.attention_dropout, cfg.max_position_embeddings) == (0.3, 0.3, 40)
    raw = json.loads((out / "config.json").read_text())
    assert (raw["pad_index"], raw["eos_index"], raw["n_words"]) == (0, 2, ours.vocab_size)  # for transformers 4.x
    assert (out / "model.safetensors").is_file()
    # The tokenizer beside it gives sentencepiece's ids.
    tok = AutoTokenizer.from_pretrained(out)
    sp = spm.SentencePieceProcessor(model_file=str(vocab_dir / "spm.model"))
    text = "Alle Menschen sind frei 🦩 𠜎 सभी मनुष्यों"
    assert tok(text, add_special_tokens=False)["input_ids"] == sp.encode(text)
    assert (tok.pad_token_id, tok.eos_token_id, tok.mask_token_id) == (0, 2, 4)


def test_export_refuses_another_vocabulary(tmp_path: Path, vocab_dir: Path) -> None:
    model_pt = random_run(tmp_path / "run", vocab_dir)
    payload = torch.load(model_pt, weights_only=True)
    payload["spm_sha256"] = "0" * 64
    torch.save(payload, model_pt)
    found = hashlib.sha256((vocab_dir / "hf" / hf_tokenizer.SPM_FILE).read_bytes()).hexdigest()
    with pytest.raises(ValueError, match=f"sha256 {found}.*sha256 {'0' * 64}"):
        export.export(model_pt, vocab_dir / "hf", tmp_path / "run" / "hf")
    assert not (tmp_path / "run" / "hf").exists()
