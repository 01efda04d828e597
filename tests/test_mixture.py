"""Mixture stage: counts from clean files, the α-sampling formula, empty languages, outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pipeline import config as pfconfig
from pipeline import mixture, schemas
from pipeline.arrow_io import ArrowWriter


def clean_row(lang: str, i: int, text: str, split: str = "train") -> dict:
    return {"row_id": f"t/{lang}/{i}", "source": "t", "lang": lang, "doc_id": f"d{i // 10}", "group": f"g{i}",
            "split": split, "label": None, "text": text, "lid_label": lang, "lid_prob": 0.99}  # fmt: skip


def write_clean(path: Path, lang: str, texts: list[str], splits: list[str] | None = None, batch_rows: int = 7) -> Path:
    with ArrowWriter(path, schemas.CLEAN, batch_rows=batch_rows) as writer:
        for i, text in enumerate(texts):
            writer.write_row(clean_row(lang, i, text, splits[i] if splits else "train"))
    return path


def make_cfg(tmp_path: Path, **mixture_keys) -> dict:
    cfg = {
        "output_dir": str(tmp_path / "out"),
        "languages": {"en": {}, "de": {}, "hi": {}},
        "sources": {"s": {"adapter": "local", "path": "x", "format": "text", "role": "train", "licence": "CC0"}},
        "mixture": mixture_keys,
    }
    return pfconfig.prepare(cfg)


def test_formula_on_constructed_sizes() -> None:
    sizes = {"a": 1000, "b": 100, "c": 10}
    p = mixture.probabilities(sizes)
    assert p == pytest.approx({"a": 1000 / 1110, "b": 100 / 1110, "c": 10 / 1110})
    q = mixture.alpha_sample(p, 0.5)
    norm = sum(v**0.5 for v in p.values())
    assert q == pytest.approx({k: v**0.5 / norm for k, v in p.items()})
    assert sum(q.values()) == pytest.approx(1.0)
    # α = 1 keeps the data proportions.
    assert mixture.alpha_sample(p, 1.0) == pytest.approx(p)
    # Small α approaches uniform; and lowering α only ever raises the smallest language's share.
    assert mixture.alpha_sample(p, 1e-6) == pytest.approx({k: 1 / 3 for k in p}, abs=1e-4)
    shares_c = [mixture.alpha_sample(p, a)["c"] for a in (1.0, 0.7, 0.5, 0.3, 0.1)]
    assert shares_c == sorted(shares_c)
    with pytest.raises(ValueError):
        mixture.alpha_sample(p, 0.0)


def test_compute_mixture_factors_passes_and_empty_language() -> None:
    counts = {"en": {"rows": 900}, "de": {"rows": 100}, "hi": {"rows": 0}}
    mix = mixture.compute_mixture(counts, "sentences", alpha_vocab=0.5, alpha_train=0.7, token_budget=2000)
    assert mix["excluded"] == ["hi"] and "hi" not in mix["languages"]
    assert any("'hi'" in w for w in mix["warnings"])
    de = mix["languages"]["de"]
    p = 0.1
    q_train = p**0.7 / (p**0.7 + 0.9**0.7)
    assert de["p"] == pytest.approx(p)
    assert de["q"]["train"] == pytest.approx(q_train)
    assert de["factor"]["train"] == pytest.approx(q_train / p)
    assert de["factor"]["train"] > 1 > mix["languages"]["en"]["factor"]["train"]  # small up, large down
    assert de["passes"] == pytest.approx(q_train * 2000 / 100)
    assert mix["smallest"] == "de"
    with pytest.raises(ValueError, match="every language is empty"):
        mixture.compute_mixture({"en": {"rows": 0}}, "sentences", 0.5, 0.7, 10)


def test_stage_counts_train_split_in_chosen_unit(tmp_path: Path) -> None:
    en = write_clean(tmp_path / "clean" / "en.arrow", "en", ["a b c"] * 30 + ["valid line"] * 5,
                     ["train"] * 30 + ["valid"] * 5)  # fmt: skip
    de = write_clean(tmp_path / "clean" / "de.arrow", "de", ["Grüße"] * 6 + ["x"] * 2, ["train"] * 6 + ["test"] * 2)
    hi = write_clean(tmp_path / "clean" / "hi.arrow", "hi", [])
    paths = {"en": en, "de": de, "hi": hi}
    out = tmp_path / "out" / "mixture"

    cfg = make_cfg(tmp_path)
    mix = mixture.run_mixture_stage(cfg, paths, out / "mixture.json", out / "alpha.png", log=tmp_path / "m.log")
    assert {k: v["n"] for k, v in mix["languages"].items()} == {"en": 30, "de": 6}
    assert mix["excluded"] == ["hi"]
    assert "excluded from the mixture" in (tmp_path / "m.log").read_text()
    assert json.loads((out / "mixture.json").read_text()) == mix
    assert (out / "alpha.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    cfg_chars = make_cfg(tmp_path, unit="characters", token_budget=500)
    mix_c = mixture.run_mixture_stage(cfg_chars, paths, out / "c.json", out / "c.png")
    assert mix_c["languages"]["de"]["n"] == 6 * len("Grüße")  # characters, not bytes
    assert mix_c["languages"]["en"]["n"] == 30 * 5
    en_c = mix_c["languages"]["en"]
    assert en_c["passes"] == pytest.approx(en_c["q"]["train"] * 500 / 150)
    assert math.isclose(sum(v["q"]["vocab"] for v in mix_c["languages"].values()), 1.0)


def test_same_inputs_same_json_bytes(tmp_path: Path) -> None:
    en = write_clean(tmp_path / "en.arrow", "en", [f"line {i}" for i in range(50)])
    de = write_clean(tmp_path / "de.arrow", "de", [f"Zeile {i}" for i in range(5)])
    cfg = make_cfg(tmp_path)
    mixture.run_mixture_stage(cfg, {"en": en, "de": de}, tmp_path / "a" / "m.json", tmp_path / "a" / "p.png")
    mixture.run_mixture_stage(cfg, {"de": de, "en": en}, tmp_path / "b" / "m.json", tmp_path / "b" / "p.png")
    assert (tmp_path / "a" / "m.json").read_bytes() == (tmp_path / "b" / "m.json").read_bytes()


def test_alpha_outside_range_is_a_schema_error(tmp_path: Path) -> None:
    with pytest.raises(pfconfig.ConfigError, match="mixture.alpha_vocab"):
        make_cfg(tmp_path, alpha_vocab=1.5)
    with pytest.raises(pfconfig.ConfigError, match="mixture.alpha_train"):
        make_cfg(tmp_path, alpha_train=0)
