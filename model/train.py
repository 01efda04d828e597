"""Train the XLM encoder on the shards: MLM/TLM/CLM batches, AdamW, warmup + decay, bf16, DDP, exact resume.

    python -m model.train --root results --out results/models/RUN --config config.yaml
    torchrun --standalone --nproc_per_node 2 -m model.train ...   (gloo on CPU, nccl on GPU)

The run is decided by ``max_steps``; ``max_minutes`` may stop it early (metrics then say ``truncated``).
Checkpoints (model, optimizer, scheduler, RNG states, step) go to ``{out}/checkpoints/{fingerprint}/``
every ``checkpoint_every`` steps, atomically; the fingerprint hashes the model config, the training params,
the vocabulary, shards manifest and mixture, so a restarted run resumes from the last checkpoint of the same
configuration, and a changed one starts afresh. Batches are a pure function of (seed, step, slot), so on CPU
the resumed loss sequence equals the uninterrupted one step for step.

DDP: the loss of each rank is its sum of cross-entropies divided by the GLOBAL number of predicted tokens
(all-reduced), times the world size (DDP averages gradients), so every predicted token weighs the same
whatever rank or micro-batch it lands in; one process with grad_accum = k computes the same update as k ranks.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from model.batches import Corpus, DataConfig, DataError, TrainBatches, batch_loader, load_corpus, valid_batches
from model.checkpoint import save_model
from model.xlm import IGNORE, XLM, XLMConfig
from pipeline.arrow_io import atomic_path

LOGGER = logging.getLogger("model.train")
CHECKPOINT_PREFIX = "step-"


# ---------------------------------------------------------------- configuration


@dataclass
class ModelParams:
    """The model part of ``train.model``; vocab_size and n_langs come from the vocabulary and the shards."""

    dim: int = 128
    """Model width."""
    n_layers: int = 4
    """Transformer blocks."""
    n_heads: int = 4
    """Attention heads."""
    dropout: float = 0.1
    """Dropout on embeddings and block outputs."""
    attention_dropout: float = 0.1
    """Dropout on attention probabilities."""
    max_positions: int = 512
    """Learned positions; must cover bptt and each TLM side."""
    layer_norm_eps: float = 1e-12
    """LayerNorm epsilon (XLM's)."""
    use_lang_emb: bool = True
    """Learned language embeddings (XLM); false for an XLM-R-style encoder."""
    init: str = "xlm"
    """Weight init: xlm (N(0, 0.02), XLM's) | fan_in (linears N(0, 1/fan_in), embeddings N(0, 0.02))."""


@dataclass
class TrainConfig:
    run_name: str = "xlm-tiny"
    """Name of models/{run}/."""
    model: ModelParams = field(default_factory=ModelParams)
    """Model size and regularization."""
    objectives: dict[str, float] = field(default_factory=lambda: {"mlm": 1.0, "tlm": 1.0})
    """Share of batches per objective (mlm, tlm, clm)."""
    batch_size: int = 16
    """Rows per MLM/CLM batch per rank and micro-step; TLM batches hold up to batch_size x bptt padded ids."""
    bptt: int = 128
    """Tokens per MLM/CLM row (at most the shards' bptt)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    max_steps: int = 2000
    """Optimizer steps: decides the run (and the schedule)."""
    max_minutes: float | None = None
    """Optional wall-clock cap; stopping early marks the metrics 'truncated'."""
    lr: float = 2e-3
    """Peak learning rate."""
    min_lr_ratio: float = 0.0
    """Final learning rate as a share of lr (linear and cosine decay)."""
    warmup_steps: int = 100
    """Linear warmup steps."""
    decay: str = "linear"
    """After warmup: linear | cosine | inverse_sqrt | constant."""
    weight_decay: float = 0.01
    """AdamW weight decay (matrices only; biases, LayerNorm and embeddings' padding row untouched)."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.98
    """AdamW beta2 (XLM's)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0: off)."""
    precision: str = "fp32"
    """fp32 | bf16 (autocast on CUDA and on CPUs with native bf16; elsewhere fp32 with a warning)."""
    seed: int = 1234
    """Seed of the weights, dropout and every batch."""
    mlm_probability: float = 0.15
    """Share of non-special tokens predicted by MLM/TLM."""
    short_rows: int = 0
    """First phase: MLM/CLM rows of this many tokens (more rows, same tokens per batch) at random positions."""
    short_steps: int = 0
    """Optimizer steps of the short-row phase (0: none); then rows of bptt tokens."""
    num_workers: int = 0
    """DataLoader worker processes per rank (batches are stateless: any number gives the same run)."""
    nproc: int = 1
    """Processes (torchrun) on this node; > 1 trains with DistributedDataParallel."""
    nodes: int = 1
    """Nodes (Slurm); > 1: one torchrun per node, started by srun (model/launch.py)."""
    gpus_per_node: int | None = None
    """GPUs asked of Slurm per node; None: nproc when device is cuda, else 0."""
    rdzv_port: int = 29500
    """Port of the c10d rendezvous on the first node (nodes > 1)."""
    device: str = "auto"
    """auto (cuda when available) | cpu | cuda."""
    log_every: int = 10
    """Steps between metrics lines (and progress-bar updates)."""
    eval_every: int = 500
    """Steps between validation passes (and one at the end)."""
    eval_batches: int = 8
    """Validation batches per language and per pair."""
    checkpoint_every: int = 200
    """Steps between checkpoints (and one at the end)."""
    keep_checkpoints: int = 2
    """Checkpoints kept per fingerprint."""
    threads: int = 2
    """CPU threads for the whole run (split across processes); --threads overrides."""

    # Keys that do not change what is computed, so not part of the fingerprint.
    NOT_FINGERPRINTED = ("run_name", "max_minutes", "num_workers", "log_every", "eval_every", "eval_batches",
                         "checkpoint_every", "keep_checkpoints", "device", "threads", "nodes", "gpus_per_node",
                         "rdzv_port")  # fmt: skip

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"train: unknown key(s) {sorted(unknown)}")
        values = dict(values)
        model = values.pop("model", None) or {}
        model_names = {f.name for f in dataclasses.fields(ModelParams)}
        if set(model) - model_names:
            raise ValueError(f"train.model: unknown key(s) {sorted(set(model) - model_names)}")
        return cls(model=ModelParams(**model), **values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def data_config(self) -> DataConfig:
        return DataConfig(batch_size=self.batch_size, bptt=self.bptt, objectives=dict(self.objectives),
                          mlm_probability=self.mlm_probability, seed=self.seed, short_rows=self.short_rows,
                          short_steps=self.short_steps)  # fmt: skip


class TrainError(ValueError):
    """A configuration or input the run cannot start with, naming the key or file."""


# ---------------------------------------------------------------- distributed setup


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(requested: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and requested in ("auto", "cuda")
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainError("train.device is cuda but no CUDA device is available")
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank, world, local, device)


def all_reduce_sum(value: torch.Tensor, ddp: Dist) -> torch.Tensor:
    if ddp.enabled:
        dist.all_reduce(value)
    return value


# ---------------------------------------------------------------- fingerprint and checkpoints


def fingerprint_fields(cfg: TrainConfig, model_cfg: XLMConfig, corpus: Corpus, world_size: int) -> dict[str, Any]:
    """Everything that decides the weights of a run, field by field (so a mismatch can be named)."""
    params = {k: v for k, v in cfg.to_dict().items() if k not in TrainConfig.NOT_FINGERPRINTED and k != "model"}
    params["world_size"] = world_size
    return {
        "model": model_cfg.to_dict(),
        "train": params,
        "languages": corpus.languages,
        "spm_sha256": corpus.spm_sha256,
        "manifest_sha256": corpus.manifest_sha256,
        "mixture_sha256": corpus.mixture_sha256,
    }


def fingerprint(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def differing_fields(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the leaves that differ between two fingerprint dicts."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += differing_fields(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key} ({va!r} in the checkpoint, {vb!r} now)")
    return out


def checkpoint_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"{CHECKPOINT_PREFIX}*.pt"))


def save_checkpoint(folder: Path, state: dict[str, Any], keep: int) -> Path:
    path = folder / f"{CHECKPOINT_PREFIX}{state['step']:08d}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for old in checkpoint_paths(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def gather_rng_states(ddp: Dist) -> list[dict[str, Any]]:
    """Every rank's RNG state (dropout differs per rank), gathered to all ranks."""
    mine = rng_state(ddp.device)
    if not ddp.enabled:
        return [mine]
    states: list[Any] = [None] * ddp.world_size
    dist.all_gather_object(states, mine)
    return states


# ---------------------------------------------------------------- optimizer and schedule


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kwargs = {"lr": cfg.lr, "betas": (cfg.beta1, cfg.beta2), "eps": 1e-6}
    try:  # fused AdamW: one kernel for every parameter (CUDA, and CPU in recent torch)
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, foreach=device.type == "cuda", **kwargs)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to lr over warmup_steps, then the chosen decay to min_lr_ratio x lr at max_steps."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.decay == "constant":
        return 1.0
    if cfg.decay == "inverse_sqrt":
        return math.sqrt(max(cfg.warmup_steps, 1) / (step + 1))
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    shape = 1.0 - progress if cfg.decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * shape


# ---------------------------------------------------------------- precision


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(check() for check in checks if check is not None)


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------- checks before training


def check_inputs(cfg: TrainConfig, corpus: Corpus) -> None:
    """Bad configurations, each naming its key, before any training starts."""
    m = cfg.model
    if cfg.bptt > m.max_positions:
        raise TrainError(f"train.bptt {cfg.bptt} is larger than train.model.max_positions {m.max_positions}")
    if cfg.objectives.get("tlm", 0) > 0 and corpus.max_side_tokens + 2 > m.max_positions:
        raise TrainError(f"a TLM side can hold shards.tlm.max_tokens + 2 = {corpus.max_side_tokens + 2} positions, more "
                         f"than train.model.max_positions {m.max_positions}")  # fmt: skip
    if cfg.short_steps and not 0 < cfg.short_rows < cfg.bptt:
        raise TrainError(f"train.short_rows must be between 1 and train.bptt - 1 ({cfg.bptt - 1}) when "
                         f"train.short_steps is set, got {cfg.short_rows}")  # fmt: skip
    if cfg.precision not in ("fp32", "bf16"):
        raise TrainError(f"train.precision must be fp32 or bf16, not {cfg.precision!r}")
    if cfg.decay not in ("linear", "cosine", "inverse_sqrt", "constant"):
        raise TrainError(f"train.decay must be linear, cosine, inverse_sqrt or constant, not {cfg.decay!r}")
    for key in ("max_steps", "batch_size", "grad_accum", "checkpoint_every", "log_every", "eval_every", "nproc"):
        if getattr(cfg, key) < 1:
            raise TrainError(f"train.{key} must be at least 1, got {getattr(cfg, key)}")


# ---------------------------------------------------------------- one step, evaluation


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def forward_sum(model: torch.nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
    """The sum of cross-entropies over the batch's predicted tokens."""
    _, loss = model(batch["tokens"], batch["langs"], batch["positions"], batch["targets"], None, batch["causal"])
    return loss * int((batch["targets"] != IGNORE).sum())


def forward_sum_correct(model: torch.nn.Module, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of cross-entropies over predicted tokens, number of correct predictions): for validation (an argmax
    over the vocabulary at every predicted token costs a training step a few percent)."""
    logits, loss = model(batch["tokens"], batch["langs"], batch["positions"], batch["targets"], None, batch["causal"])
    targets = batch["targets"][batch["targets"] != IGNORE]
    correct = (logits.argmax(-1) == targets).sum() if len(targets) else torch.zeros((), device=targets.device)
    return loss * len(targets), correct


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, micro_batches: Sequence[Mapping[str, Any]],
               cfg: TrainConfig, ddp: Dist) -> tuple[float, int]:  # fmt: skip
    """One optimizer step over this rank's micro-batches; returns (global mean loss, global predicted tokens)."""
    local = sum(int((b["targets"] != IGNORE).sum()) for b in micro_batches)
    count = all_reduce_sum(torch.tensor([float(local)], device=ddp.device), ddp)
    scale = ddp.world_size / max(count.item(), 1.0)  # DDP averages over ranks: undo it, divide by the global count
    loss_sum = torch.zeros((), device=ddp.device)
    for i, batch in enumerate(micro_batches):
        sync = ddp.enabled and i < len(micro_batches) - 1
        with model.no_sync() if sync else contextlib.nullcontext():  # all-reduce gradients once, at the last
            with autocast(cfg.precision, ddp.device):
                summed = forward_sum(model, batch)
            (summed * scale).backward()
        loss_sum += summed.detach().float()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    total = all_reduce_sum(loss_sum.reshape(1), ddp)
    return total.item() / max(count.item(), 1.0), int(count.item())


@torch.no_grad()
def evaluate(model: XLM, corpus: Corpus, cfg: TrainConfig, device: torch.device, split: str = "valid",
             mask_ratio: float | None = None, objectives: Iterable[str] = ("mlm", "tlm")) -> dict[str, Any]:  # fmt: skip
    """Masked-token loss and accuracy per language (MLM) and per pair (TLM) on a split's first batches."""
    was_training = model.training
    model.eval()
    data, result = cfg.data_config(), {}
    keys = {"mlm": sorted(corpus.mlm.get(split, {})), "tlm": sorted(corpus.tlm.get(split, {})),
            "clm": sorted(corpus.mlm.get(split, {}))}  # fmt: skip
    for objective in objectives:
        for key in keys[objective]:
            loss = correct = count = 0.0
            for batch in valid_batches(corpus, data, objective, key, cfg.eval_batches, split, mask_ratio):
                batch = to_device(batch, device)
                with autocast(cfg.precision, device):
                    summed, right = forward_sum_correct(model, batch)
                loss, correct = loss + summed.item(), correct + right.item()
                count += int((batch["targets"] != IGNORE).sum())
            if count:
                name = "-".join(key) if isinstance(key, tuple) else key
                result[f"{objective}/{name}"] = {"loss": loss / count, "accuracy": correct / count, "tokens": int(count)}
    model.train(was_training)
    return result


# ---------------------------------------------------------------- metrics


class Metrics:
    """metrics.jsonl, appended and flushed line by line; cut back to a checkpoint's step on resume."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def truncate(self, step: int) -> None:
        """Keep only records up to ``step`` (a fresh run: step 0 keeps nothing)."""
        if not self.enabled:
            return
        kept = []
        if self.path.exists() and step > 0:
            for line in self.path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if record.get("step", 0) <= step and "final" not in record:
                        kept.append(line + "\n")
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(kept), encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, sort_keys=True) + "\n")

    def read(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_losses(records: Sequence[Mapping[str, Any]], out_png: Path, title: str) -> None:
    """Training loss per objective and validation loss per language/pair against steps (atomic write)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    train: dict[str, list[tuple[int, float]]] = {}
    valid: dict[str, list[tuple[int, float]]] = {}
    for r in records:
        if "loss" in r:
            train.setdefault(r.get("objective", "train"), []).append((r["step"], r["loss"]))
        for key, v in r.get("valid", {}).items():
            valid.setdefault(key, []).append((r["step"], v["loss"]))
    for name, points in sorted(train.items()):
        ax.plot(*zip(*points, strict=True), linewidth=0.8, alpha=0.7, label=f"train {name}")
    for name, points in sorted(valid.items()):
        ax.plot(*zip(*points, strict=True), "o--", markersize=3, label=f"valid {name}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per predicted token)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    with atomic_path(out_png) as tmp:
        tmp.write_bytes(buffer.getvalue())


# ---------------------------------------------------------------- the run


@dataclass
class Paths:
    manifest: Path
    mixture: Path
    spm: Path
    out: Path  # models/{run}/

    @classmethod
    def from_root(cls, root: Path, out: Path) -> Paths:
        return cls(root / "shards" / "manifest.json", root / "mixture" / "mixture.json", root / "vocab" / "spm.model", out)


def build(cfg: TrainConfig, paths: Paths) -> tuple[Corpus, XLMConfig]:
    """Load and check everything a run needs; raises before any training."""
    corpus = load_corpus(paths.manifest, paths.mixture, paths.spm, cfg.objectives)
    model_cfg = XLMConfig(vocab_size=corpus.vocab_size, n_langs=len(corpus.languages), **dataclasses.asdict(cfg.model))
    check_inputs(cfg, corpus)
    TrainBatches(corpus, cfg.data_config(), 1)  # checks bptt and objectives
    return corpus, model_cfg


def find_resume(folder: Path, explicit: Path | None, fields: Mapping[str, Any]) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise TrainError(f"--resume {explicit}: no such checkpoint")
        saved = torch.load(explicit, map_location="cpu", weights_only=False)["fingerprint"]
        diff = differing_fields(saved, fields)
        if diff:
            raise TrainError(f"--resume {explicit}: the checkpoint was made with a different configuration: " + "; ".join(diff))
        return explicit
    found = checkpoint_paths(folder)
    return found[-1] if found else None


def train(cfg: TrainConfig, paths: Paths, threads: int | None = None, resume: Path | None = None) -> dict[str, Any]:
    """The whole run; returns the final metrics record (on every rank)."""
    ddp = setup_distributed(cfg.device)
    local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", ddp.world_size))  # this node's share of the world
    torch.set_num_threads(max(1, (threads or cfg.threads) // local_procs))
    corpus, model_cfg = build(cfg, paths)
    precision = cfg.precision
    if precision == "bf16" and not native_bf16(ddp.device):
        LOGGER.warning("train.precision bf16: no native bf16 on %s, training in fp32", ddp.device)
        cfg = dataclasses.replace(cfg, precision="fp32")
    fields = fingerprint_fields(cfg, model_cfg, corpus, ddp.world_size)
    fields["train"]["precision"] = precision  # as configured: the fallback is a property of the machine
    folder = paths.out / "checkpoints" / fingerprint(fields)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = XLM(model_cfg).to(ddp.device)
    optimizer = make_optimizer(model, cfg, ddp.device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    metrics = Metrics(paths.out / "metrics.jsonl", ddp.main)
    step = 0
    resume_path = find_resume(folder, resume, fields)
    if resume_path is not None:
        state = torch.load(resume_path, map_location=ddp.device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"][ddp.rank], ddp.device)
        step = state["step"]
        LOGGER.info("resumed from %s (step %d)", resume_path, step)
    else:
        torch.manual_seed(cfg.seed + 1 + ddp.rank)  # dropout differs per rank
    metrics.truncate(step)
    if ddp.main:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "fingerprint.json").write_text(json.dumps(fields, indent=1, sort_keys=True), encoding="utf-8")
        LOGGER.info("model: %s, %.2fM parameters; %d languages %s; fingerprint %s", model_cfg,
                    model.num_parameters() / 1e6, len(corpus.languages), corpus.languages, folder.name)  # fmt: skip
    wrapped = DDP(model, device_ids=[ddp.device.index] if ddp.device.type == "cuda" else None) if ddp.enabled else model
    final = run_steps(cfg, corpus, model, wrapped, optimizer, scheduler, metrics, folder, fields, ddp, step)
    if ddp.main:
        save_model(paths.out / "model.pt", model, corpus.languages, corpus.spm_sha256, final["step"])
        shutil.copyfile(paths.spm, paths.out / "spm.model")
        plot_losses(metrics.read(), paths.out / "loss.png", f"{cfg.run_name}: {model_cfg.n_layers} x {model_cfg.dim}")
    if ddp.enabled:
        dist.barrier()
        dist.destroy_process_group()
    return final


def run_steps(cfg: TrainConfig, corpus: Corpus, model: XLM, wrapped: torch.nn.Module, optimizer: torch.optim.Optimizer,
              scheduler: Any, metrics: Metrics, folder: Path, fields: Mapping[str, Any], ddp: Dist,
              step: int) -> dict[str, Any]:  # fmt: skip
    slots = ddp.world_size * cfg.grad_accum
    loader = batch_loader(TrainBatches(corpus, cfg.data_config(), slots), step, cfg.max_steps, ddp.rank,
                          cfg.grad_accum, cfg.num_workers)  # fmt: skip
    start, tokens_seen, truncated = time.monotonic(), 0, False
    window_tokens, window_start = 0, time.monotonic()
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not ddp.main or None, desc=cfg.run_name, unit="step")
    wrapped.train()
    while step < cfg.max_steps:
        micro = [to_device(next(loader), ddp.device) for _ in range(cfg.grad_accum)]
        ids = all_reduce_sum(torch.tensor([float(sum(int((b["tokens"] != 0).sum()) for b in micro))], device=ddp.device), ddp)
        loss, predicted = train_step(wrapped, optimizer, micro, cfg, ddp)
        scheduler.step()
        step += 1
        tokens_seen += int(ids.item())
        window_tokens += int(ids.item())
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            elapsed = time.monotonic() - window_start
            rate = window_tokens / max(elapsed, 1e-9)
            metrics.write({"step": step, "loss": loss, "objective": micro[0]["objective"], "key": micro[0]["key"],
                           "lr": scheduler.get_last_lr()[0], "predicted": predicted, "tokens": tokens_seen,
                           "tokens_per_s": rate})  # fmt: skip
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{rate:,.0f}")
            window_tokens, window_start = 0, time.monotonic()
        bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            validate(cfg, corpus, model, metrics, step, ddp)
        out_of_time = cfg.max_minutes is not None and time.monotonic() - start > 60 * cfg.max_minutes
        stop = all_reduce_sum(torch.tensor([float(out_of_time)], device=ddp.device), ddp).item() > 0
        if step % cfg.checkpoint_every == 0 or step == cfg.max_steps or stop:
            checkpoint(model, optimizer, scheduler, folder, fields, step, cfg, ddp)
        if stop and step < cfg.max_steps:
            truncated = True
            validate(cfg, corpus, model, metrics, step, ddp)
            break
    bar.close()
    final = {"step": step, "final": True, "truncated": truncated, "max_steps": cfg.max_steps,
             "minutes": (time.monotonic() - start) / 60, "tokens": tokens_seen,
             "rank_param_sha256": param_digests(model, ddp)}  # fmt: skip
    metrics.write(final)
    return final


def validate(cfg: TrainConfig, corpus: Corpus, model: XLM, metrics: Metrics, step: int, ddp: Dist) -> None:
    if ddp.main:
        result = evaluate(model, corpus, cfg, ddp.device)
        metrics.write({"step": step, "valid": result})
        LOGGER.info("step %d valid: %s", step, {k: round(v["loss"], 3) for k, v in result.items()})
    if ddp.enabled:
        dist.barrier()


def checkpoint(model: XLM, optimizer: torch.optim.Optimizer, scheduler: Any, folder: Path, fields: Mapping[str, Any],
               step: int, cfg: TrainConfig, ddp: Dist) -> None:  # fmt: skip
    rng = gather_rng_states(ddp)
    if ddp.main:
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "rng": rng, "step": step, "fingerprint": dict(fields)}  # fmt: skip
        save_checkpoint(folder, state, cfg.keep_checkpoints)
    if ddp.enabled:
        dist.barrier()


def param_digests(model: XLM, ddp: Dist) -> list[str]:
    """sha256 of every rank's parameters (ranks that stay in sync hold identical bytes)."""
    digest = hashlib.sha256()
    for p in model.state_dict().values():
        digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    mine = digest.hexdigest()
    if not ddp.enabled:
        return [mine]
    out: list[Any] = [None] * ddp.world_size
    dist.all_gather_object(out, mine)
    return out


# ---------------------------------------------------------------- command line and workflow launcher


def load_train_config(config: Path | None, config_json: str | None, overrides: Sequence[str]) -> TrainConfig:
    """The train slice: from a config file (its `train:` section, or the file itself), JSON, and key=value."""
    import yaml

    values: dict[str, Any] = {}
    if config is not None:
        loaded = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        values = loaded.get("train", loaded) if "train" in loaded or "sources" in loaded else loaded
    if config_json:
        values = {**values, **json.loads(config_json)}
    for item in overrides:  # dotted keys edit the effective value: objectives.tlm=0 keeps the default mlm weight
        key, _, raw = item.partition("=")
        target, default = values, TrainConfig().to_dict()
        *parents, leaf = key.split(".")
        for parent in parents:
            target, default = target.setdefault(parent, dict(default.get(parent) or {})), default.get(parent) or {}
        target[leaf] = yaml.safe_load(raw)
    return TrainConfig.from_dict(values)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m model.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--root", type=Path, required=True, help="output root holding shards/, mixture/, vocab/")
    parser.add_argument("--out", type=Path, help="models/{run}/ folder (default ROOT/models/RUN_NAME)")
    parser.add_argument("--config", type=Path, help="YAML/JSON: a whole config (its train: section) or the slice")
    parser.add_argument("--config-json", help="the train slice as JSON (what the workflow passes)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. model.dim=64")
    parser.add_argument("--threads", type=int, help="CPU threads for this node (split across processes)")
    parser.add_argument("--resume", type=Path, help="resume from this checkpoint (its fingerprint must match)")
    # An experiment variant's data lives in keyed folders (shards/{key}/, ...): these replace ROOT's defaults.
    parser.add_argument("--manifest", type=Path, help="shards manifest (default ROOT/shards/manifest.json)")
    parser.add_argument("--mixture", type=Path, help="training mixture (default ROOT/mixture/mixture.json)")
    parser.add_argument("--spm", type=Path, help="SentencePiece model (default ROOT/vocab/spm.model)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        cfg = load_train_config(args.config, args.config_json, args.set)
        out = args.out or args.root / "models" / cfg.run_name
        paths = Paths.from_root(args.root, out)
        paths = dataclasses.replace(paths, manifest=args.manifest or paths.manifest, mixture=args.mixture or paths.mixture,
                                    spm=args.spm or paths.spm)  # fmt: skip
        train(cfg, paths, args.threads, args.resume)
    except (TrainError, DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
