"""Per-language MLM and the TLM "does it look across?" test, on the held-out test shards.

MLM: test streams of each language (shards/mlm/test), cut into windows of at most ``max_tokens`` ids;
``mlm_probability`` of the non-special ids are targets and every target is replaced by ``<mask>`` (no
random or kept targets at evaluation: the score is then a plain function of the context). Reported per
language: perplexity exp(mean cross-entropy over targets) and top-1 accuracy, with a bootstrap interval
over windows, for our model and its random twin on exactly the same masked inputs.

Masking and framing are training's own (model/batches.py: ``mask_tokens`` with mask_ratio 1.0, ``frame_pair``).

TLM: test pairs (shards/tlm/test), framed as in training (``</s> src </s></s> tgt </s>``, positions
restarting at 0 on the target, one language id per side). Targets are masked on one side; the other side
is either visible or replaced token for token by ``<mask>`` (same length and positions, so only its content
is gone). Accuracy with the other side visible minus hidden says how much the model uses the other
language; both directions (predict the target language, predict the pivot) are reported.
"""

from __future__ import annotations

import logging
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import torch
import torch.nn.functional as F

from model.batches import N_SPECIAL, DataConfig, frame_pair, mask_tokens
from model.eval_common import (
    MODELS,
    EvalError,
    Models,
    load_models,
    no_data,
    pyplot,
    save_figure,
    set_threads,
    write_result,
)
from model.geometry import bootstrap_mean_ci
from model.xlm import IGNORE, XLM
from pipeline import plots
from pipeline.logs import stage_logging
from pipeline.manifest import read_manifest
from pipeline.schemas import EOS, MASK, PAD

LOG = logging.getLogger(__name__)


@dataclass
class MLMEvalConfig:
    """eval.mlm in config (workflow/schemas/config.schema.yaml describes each key)."""

    max_sequences: int = 100
    max_pairs: int = 200
    max_tokens: int = 256
    mlm_probability: float = 0.15
    batch_size: int = 16
    bootstrap: int = 1000

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> MLMEvalConfig:
        return cls(**{k: v for k, v in (params or {}).items() if k in cls.__dataclass_fields__})


# ------------------------------------------------------------------------------------- shards


def read_test_shards(manifest_path: str | os.PathLike[str], kind: str) -> dict[tuple[str, ...], list[pa.Table]]:
    """Test shard tables of one kind (mlm or tlm) by language(s), in path order."""
    manifest_path = Path(manifest_path)
    found: dict[tuple[str, ...], list[pa.Table]] = {}
    entries = sorted(read_manifest(manifest_path)["shards"], key=lambda e: e["path"])
    for entry in entries:
        if entry["kind"] == kind and entry["split"] == "test" and entry["rows"]:
            with open(manifest_path.parent / entry["path"], "rb") as handle:
                found.setdefault(tuple(entry["languages"]), []).append(ipc.open_file(handle).read_all())
    return found


def check_shards_vocabulary(manifest_path: str | os.PathLike[str], meta: Mapping[str, Any]) -> None:
    """The shards must be encoded with the model's vocabulary; the error names both hashes."""
    shards_sha = read_manifest(manifest_path).get("spm_model", {}).get("sha256")
    if shards_sha != meta["spm_sha256"]:
        raise EvalError(f"{manifest_path}: shards encoded with a vocabulary of sha256 {shards_sha}, but "
                         f"{meta['path']} was trained with sha256 {meta['spm_sha256']}: token ids would not match")  # fmt: skip


def windows(tables: Sequence[pa.Table], max_tokens: int, cap: int) -> list[np.ndarray]:
    """Consecutive pieces of at most ``max_tokens`` ids of the test streams, the first ``cap`` of them."""
    out: list[np.ndarray] = []
    for table in tables:
        for ids in table.column("input_ids").to_pylist():
            out += [np.asarray(ids[s : s + max_tokens], dtype=np.int64) for s in range(0, len(ids), max_tokens)]
            if len(out) >= cap:
                return out[:cap]
    return out


# ---------------------------------------------------------------------------- masking, framing


# ---------------------------------------------------------------------------------- scoring


@dataclass
class Example:
    """One model input: ids with targets replaced by <mask>, targets (IGNORE elsewhere), langs, positions."""

    inputs: np.ndarray
    targets: np.ndarray
    langs: np.ndarray
    positions: np.ndarray


def _pad(rows: Sequence[np.ndarray], value: int) -> torch.Tensor:
    out = np.full((len(rows), max(len(r) for r in rows)), value, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return torch.from_numpy(out)


@torch.no_grad()
def score_examples(model: XLM, examples: Sequence[Example], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per example: summed cross-entropy over its targets and number of correct top-1 predictions."""
    loss, correct = np.zeros(len(examples)), np.zeros(len(examples))
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        tokens = _pad([e.inputs for e in batch], PAD)
        targets = _pad([e.targets for e in batch], IGNORE)
        logits, _ = model(tokens, _pad([e.langs for e in batch], 0), _pad([e.positions for e in batch], 0),
                          targets=targets, attention_mask=tokens != PAD)  # fmt: skip
        predicted = targets != IGNORE  # (B, T); logits rows follow its row-major order
        row = torch.nonzero(predicted)[:, 0].numpy()
        gold = targets[predicted]
        ce = F.cross_entropy(logits.float(), gold, reduction="none").numpy()
        hit = (logits.argmax(dim=1) == gold).double().numpy()
        np.add.at(loss, start + row, ce)
        np.add.at(correct, start + row, hit)
    return loss, correct


def _per_target(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-example sums as (per-target share, groups) for a bootstrap over examples weighted by targets."""
    groups = np.repeat(np.arange(len(counts)), counts.astype(np.int64))
    shares = np.repeat(np.divide(values, np.maximum(counts, 1)), counts.astype(np.int64))
    return shares, groups


def mlm_language(models: Models, lang: str, seqs: Sequence[np.ndarray], cfg: MLMEvalConfig, seed: int) -> dict:
    rng = np.random.default_rng([seed, zlib.crc32(lang.encode())])
    lang_id, masking, vocab = models.lang_id(lang), _masking(cfg), models.ours.cfg.vocab_size
    examples = []
    for ids in seqs:
        inputs, targets = mask_tokens(ids, rng, vocab, masking, mask_ratio=1.0)  # every target -> <mask>
        examples.append(Example(inputs, targets, np.full_like(ids, lang_id), np.arange(len(ids))))
    counts = np.array([(e.targets != IGNORE).sum() for e in examples], dtype=np.float64)
    row: dict[str, Any] = {"status": "ok", "n_sequences": len(examples), "n_targets": int(counts.sum())}
    if not counts.sum():
        return no_data("no token to predict in the test windows")
    for name, model in models.items():
        loss, correct = score_examples(model, examples, cfg.batch_size)
        shares, groups = _per_target(correct, counts)
        ci = bootstrap_mean_ci(shares, groups, seed, cfg.bootstrap)
        mean_loss = float(loss.sum() / counts.sum())
        row[name] = {"loss": mean_loss, "perplexity": math.exp(mean_loss), "accuracy": float(correct.sum() / counts.sum()),
                     "ci_low": ci.low, "ci_high": ci.high}  # fmt: skip
    return row


def _masking(cfg: MLMEvalConfig) -> DataConfig:
    """Training's masking (model/batches.py) at the evaluation's rate; callers pass mask_ratio=1.0."""
    return DataConfig(mlm_probability=cfg.mlm_probability)


def tlm_examples(pairs: Sequence[tuple[np.ndarray, np.ndarray]], ids: tuple[int, int], predict: str,
                 hide_other: bool, cfg: MLMEvalConfig, seed: int, vocab_size: int) -> list[Example]:  # fmt: skip
    """Targets on the ``predict`` side ("src" or "tgt"); the other side intact or every id -> <mask>.

    The target draw depends only on the seed and the pair, so both conditions mask the same tokens.
    """
    rng = np.random.default_rng([seed, 7, int(predict == "tgt")])
    examples = []
    for src, tgt in pairs:
        side, other = (src, tgt) if predict == "src" else (tgt, src)
        masked_side, side_targets = mask_tokens(side, rng, vocab_size, _masking(cfg), mask_ratio=1.0)
        other_in = np.where(other >= N_SPECIAL, MASK, other) if hide_other else other
        other_targets = np.full_like(other, IGNORE)
        s_in, t_in = (masked_side, other_in) if predict == "src" else (other_in, masked_side)
        s_tg, t_tg = (side_targets, other_targets) if predict == "src" else (other_targets, side_targets)
        inputs, positions, langs = frame_pair(s_in, t_in, *ids)
        targets, _, _ = frame_pair(s_tg, t_tg, *ids)
        targets[inputs == EOS] = IGNORE  # the framing </s> are never targets
        examples.append(Example(inputs, targets, langs, positions))
    return examples


def tlm_pair(models: Models, pair: tuple[str, str], tables: Sequence[pa.Table], cfg: MLMEvalConfig, seed: int) -> dict:
    src_lang, tgt_lang = pair
    pairs = []
    for table in tables:
        for s, t in zip(table.column("src_ids").to_pylist(), table.column("tgt_ids").to_pylist(), strict=True):
            pairs.append((np.asarray(s, dtype=np.int64), np.asarray(t, dtype=np.int64)))
    pairs = pairs[: cfg.max_pairs]
    ids = (models.lang_id(src_lang), models.lang_id(tgt_lang))
    row: dict[str, Any] = {"status": "ok", "n_pairs": len(pairs)}
    for predict, lang in (("tgt", tgt_lang), ("src", src_lang)):
        visible = tlm_examples(pairs, ids, predict, False, cfg, seed, models.ours.cfg.vocab_size)
        hidden = tlm_examples(pairs, ids, predict, True, cfg, seed, models.ours.cfg.vocab_size)
        counts = np.array([(e.targets != IGNORE).sum() for e in visible], dtype=np.float64)
        entry: dict[str, Any] = {"n_targets": int(counts.sum())}
        for name, model in models.items():
            _, hit_visible = score_examples(model, visible, cfg.batch_size)
            _, hit_hidden = score_examples(model, hidden, cfg.batch_size)
            gain, groups = _per_target(hit_visible - hit_hidden, counts)
            ci = bootstrap_mean_ci(gain, groups, seed, cfg.bootstrap)
            entry[name] = {"accuracy_visible": float(hit_visible.sum() / counts.sum()),
                           "accuracy_hidden": float(hit_hidden.sum() / counts.sum()),
                           "gain": ci.estimate, "gain_ci_low": ci.low, "gain_ci_high": ci.high}  # fmt: skip
        row[f"predict_{lang}"] = entry
    return row


def evaluate(models: Models, manifest_path: str | os.PathLike[str], pivot: str, cfg: MLMEvalConfig,
             seed: int) -> dict[str, Any]:  # fmt: skip
    check_shards_vocabulary(manifest_path, models.meta)
    max_tokens = min(cfg.max_tokens, models.ours.cfg.max_positions)
    mlm_tables = {key[0]: tables for key, tables in read_test_shards(manifest_path, "mlm").items()}
    tlm_tables = read_test_shards(manifest_path, "tlm")
    result: dict[str, Any] = {"pivot": pivot, "config": asdict(cfg), "seed": seed, "mlm": {}, "tlm": {}}
    for lang in models.languages:
        seqs = windows(mlm_tables.get(lang, []), max_tokens, cfg.max_sequences)
        result["mlm"][lang] = mlm_language(models, lang, seqs, cfg, seed) if seqs else no_data("no MLM test shard rows")
        LOG.info("mlm: %s: %s", lang, result["mlm"][lang])
    # Every configured pair: the pivot with each other language (the shards' TLM pairs), no data when absent.
    side_cap = models.ours.cfg.max_positions  # positions restart on the target: each framed side must fit
    for lang in models.languages:
        if lang == pivot:
            continue
        tables = tlm_tables.get((pivot, lang), [])
        key = f"{pivot}-{lang}"
        too_long = any(max(map(len, t.column(c).to_pylist()), default=0) + 2 > side_cap
                       for t in tables for c in ("src_ids", "tgt_ids"))  # fmt: skip
        if too_long:
            raise EvalError(f"TLM test pairs of {key} are longer than the model's {side_cap} positions per side")
        result["tlm"][key] = (
            tlm_pair(models, (pivot, lang), tables, cfg, seed) if tables else no_data("no TLM test pairs")
        )
        LOG.info("tlm: %s: %s", key, result["tlm"][key])
    return result


# ----------------------------------------------------------------------------------- plot


def plot(result: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write mlm.png (``draw``) atomically."""
    save_figure(draw(result), path)


def draw(result: Mapping[str, Any]) -> Any:
    """MLM accuracy and perplexity per language (ours vs twin) above; TLM visible vs <mask> across the bottom."""
    plt = pyplot()
    langs = list(result["mlm"])
    groups = _tlm_groups(result)
    panel_w = max(5.0, 0.9 * len(langs) + 1.5)
    fig = plt.figure(figsize=(max(2 * panel_w, 0.9 * len(groups) + 3.5), 8.4), layout="constrained")
    grid = fig.add_gridspec(2, 2)
    acc_ax, ppl_ax, tlm_ax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, :])
    _plot_mlm(acc_ax, ppl_ax, result, langs)
    _plot_tlm(tlm_ax, result, groups)
    return fig


def _plot_mlm(acc_ax: Any, ppl_ax: Any, result: Mapping[str, Any], langs: Sequence[str]) -> None:
    rows = [result["mlm"][lang] for lang in langs]
    ok = [r.get("status") == "ok" for r in rows]
    acc_ax.set_title("MLM accuracy per language (targets <mask>)", fontsize=plots.TITLE_SIZE)
    ppl_ax.set_title("MLM perplexity per language (lower is better)", fontsize=plots.TITLE_SIZE)
    if not any(ok):
        for ax in (acc_ax, ppl_ax):
            plots.no_data_panel(ax, "no language has test windows")
        return
    x = np.arange(len(langs))
    columns = {name: {key: _column(rows, ok, name, key) for key in ("accuracy", "ci_low", "ci_high", "perplexity")}
               for name in MODELS}  # fmt: skip
    for ax in (acc_ax, ppl_ax):
        ax.set_xlim(-0.6, len(langs) - 0.4)
        plots.category_ticks(ax, x, langs)
        for i in np.flatnonzero(~np.array(ok)):
            plots.no_data_bar_note(ax, i)
    ppl_values = [v for c in columns.values() for v in c["perplexity"] if np.isfinite(v)]
    ppl_ax.set_yscale("log")
    ppl_ax.set_ylim(min(ppl_values) / 1.5, max(ppl_values) * 2.0)  # headroom for the value labels
    plots.plain_log_axis(ppl_ax.yaxis, *ppl_ax.get_ylim())
    acc_ax.set_ylim(0, plots.value_top([v for c in columns.values() for v in c["ci_high"]], headroom=1.35))
    for j, (name, label, color) in enumerate([("ours", "ours", plots.OURS), ("twin", "random twin", plots.TWIN)]):
        c = columns[name]
        bars = acc_ax.bar(x + (j - 0.5) * 0.4, c["accuracy"], 0.4, label=label, color=color, capsize=2,
                          yerr=[c["accuracy"] - c["ci_low"], c["ci_high"] - c["accuracy"]],
                          error_kw={"linewidth": 0.8, "ecolor": "#555555"})  # fmt: skip
        plots.label_bars(acc_ax, bars, c["accuracy"], "{:.3f}")
        bars = ppl_ax.bar(x + (j - 0.5) * 0.4, c["perplexity"], 0.4, label=label, color=color)
        plots.label_bars(ppl_ax, bars, c["perplexity"], "{:,.0f}")
    acc_ax.set_ylabel("masked-token accuracy (95% CI over windows)", fontsize=plots.LABEL_SIZE)
    ppl_ax.set_ylabel("perplexity (log scale)", fontsize=plots.LABEL_SIZE)
    acc_ax.legend(fontsize=plots.TICK_SIZE, loc="upper left")


def _column(rows: Sequence[Mapping[str, Any]], ok: Sequence[bool], name: str, key: str) -> np.ndarray:
    return np.array([r[name][key] if o else np.nan for r, o in zip(rows, ok, strict=True)])


def _tlm_groups(result: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """(pair, "predict_<lang>") for every scored side; (pair, None) for a pair with no data."""
    groups = [(pair, key) for pair, row in result["tlm"].items() for key in sorted(row) if key.startswith("predict_")]
    return groups + [(pair, None) for pair, row in result["tlm"].items() if row.get("status") != "ok"]


def _plot_tlm(ax: Any, result: Mapping[str, Any], groups: Sequence[tuple[str, str | None]]) -> None:
    ax.set_title("TLM on test pairs: does seeing the other language help? (visible above <mask> = it helps)",
                 fontsize=plots.TITLE_SIZE)  # fmt: skip
    if not groups:
        plots.no_data_panel(ax, "no test pairs")
        return
    bars = [("ours", "accuracy_visible", "ours, other side visible", plots.OURS),
            ("ours", "accuracy_hidden", "ours, other side <mask>", plots.OURS_LIGHT),
            ("twin", "accuracy_visible", "twin, other side visible", plots.TWIN),
            ("twin", "accuracy_hidden", "twin, other side <mask>", plots.TWIN_LIGHT)]  # fmt: skip
    x = np.arange(len(groups))
    values = [[result["tlm"][pair][key][name][field] if key else np.nan for pair, key in groups]
              for name, field, _, _ in bars]  # fmt: skip
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylim(0, plots.value_top([v for row in values for v in row], headroom=1.35))
    plots.category_ticks(ax, x, [f"{pair}\npredict {key.removeprefix('predict_')}" if key else pair
                                 for pair, key in groups])  # fmt: skip
    for j, ((_name, _field, label, color), vals) in enumerate(zip(bars, values, strict=True)):
        plots.label_bars(ax, ax.bar(x + (j - 1.5) * 0.2, vals, 0.2, label=label, color=color), vals, "{:.3f}")
    for i, (_pair, key) in enumerate(groups):
        if key is None:
            plots.no_data_bar_note(ax, i)
    ax.set_ylabel("accuracy on one side's masked tokens", fontsize=plots.LABEL_SIZE)
    ax.legend(fontsize=plots.TICK_SIZE, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def run_mlm_eval(model_pt: str, spm_model: str, manifest: str, pivot: str, params: Mapping[str, Any], seed: int,
                 out_json: str, out_png: str, log: str | None = None, threads: int | None = None) -> dict:  # fmt: skip
    """The ``eval_mlm`` rule: eval/{run}/mlm.json and mlm.png."""
    with stage_logging(log):
        set_threads(threads)
        cfg = MLMEvalConfig.from_params(params)
        models = load_models(model_pt, spm_model, seed)
        result = evaluate(models, manifest, pivot, cfg, seed)
        result["model"] = {"path": Path(model_pt).name, "step": models.meta["step"],
                           "spm_sha256": models.meta["spm_sha256"]}  # fmt: skip
        result["models"] = list(MODELS)
        write_result(out_json, result)
        plot(result, out_png)
        LOG.info("mlm: wrote %s", out_json)
        return result
