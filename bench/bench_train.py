"""Training throughput of our XLM against ``transformers.XLMWithLMHeadModel`` of the same size, same batches.

    .venv/bin/python bench/bench_train.py --root results --trials 5 --steps 10

Both models are built at the default config's model size (train.model of config.yaml; vocabulary and
languages from ROOT's shards, or 16000/9 when ROOT has none), trained in the same process on the same MLM/TLM
batches (model/batches.py, ``train.*`` of config.yaml) with the configured precision, alternating trials of
``steps`` optimizer steps each. Ours: SDPA, fused AdamW, output projection only at target positions. Baseline:
HF's XLM as a user gets it (full (B, T, V) logits, torch's default AdamW). Prints the median tokens/s of each
(non-padding ids per second, with the min-max spread), the ratio (goal >= 1.3x), and memory per token: the
bytes autograd saves for backward per non-padding id (peak CUDA memory per token on a GPU). On CUDA it also
prints model FLOPs utilization (6 N + attention FLOPs per token against the GPU's bf16 peak, --peak-tflops).
With --json PATH the figures are also written there as JSON (what bench/run_all.py collects).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.batches import DataConfig, TrainBatches, load_corpus  # noqa: E402
from model.train import TrainConfig, autocast, load_train_config, make_optimizer, native_bf16  # noqa: E402
from model.xlm import IGNORE, XLM, XLMConfig  # noqa: E402
from pipeline.arrow_io import write_json  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def synthetic_batches(n: int, vocab: int, n_langs: int, batch_size: int, bptt: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        tokens = torch.randint(5, vocab, (batch_size, bptt), generator=g)
        targets = torch.where(torch.rand(tokens.shape, generator=g) < 0.15, tokens, IGNORE)
        out.append({"tokens": torch.where(targets != IGNORE, 4, tokens), "targets": targets, "positions": None,
                    "langs": torch.full_like(tokens, 0), "causal": False, "objective": "mlm"})  # fmt: skip
    return out


def real_batches(root: Path, cfg: TrainConfig, n: int) -> tuple[list[dict], int, int]:
    corpus = load_corpus(root / "shards" / "manifest.json", root / "mixture" / "mixture.json", root / "vocab" / "spm.model",
                         cfg.objectives, verify=False)  # fmt: skip
    data = TrainBatches(corpus, DataConfig(batch_size=cfg.batch_size, bptt=cfg.bptt, objectives=cfg.objectives), 1)
    return [data[k] for k in range(n)], corpus.vocab_size, len(corpus.languages)


class Ours:
    def __init__(self, cfg: XLMConfig, tcfg: TrainConfig, device: torch.device) -> None:
        self.model = XLM(cfg).to(device).train()
        self.optimizer = make_optimizer(self.model, tcfg, device)

    def loss(self, b: dict) -> torch.Tensor:
        return self.model(b["tokens"], b["langs"], b["positions"], b["targets"], None, b["causal"])[1]


class HF:
    def __init__(self, cfg: XLMConfig, tcfg: TrainConfig, device: torch.device) -> None:
        import transformers

        hf = transformers.XLMConfig(vocab_size=cfg.vocab_size, emb_dim=cfg.dim, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
                                    dropout=cfg.dropout, attention_dropout=cfg.attention_dropout, gelu_activation=True,
                                    n_langs=cfg.n_langs, use_lang_emb=cfg.use_lang_emb, max_position_embeddings=cfg.max_positions,
                                    layer_norm_eps=cfg.layer_norm_eps, pad_index=0, eos_index=2, unk_index=3, mask_index=4,
                                    causal=False)  # fmt: skip
        self.model = transformers.XLMWithLMHeadModel(hf).to(device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=tcfg.lr, betas=(tcfg.beta1, tcfg.beta2))

    def loss(self, b: dict) -> torch.Tensor:
        out = self.model(input_ids=b["tokens"], attention_mask=(b["tokens"] != 0).long(), langs=b["langs"],
                         position_ids=b["positions"], labels=b["targets"])  # fmt: skip
        return out.loss


def trial(runner, batches: list[dict], precision: str, device: torch.device) -> float:
    """tokens/s over the batches (one optimizer step each)."""
    tokens = 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for b in batches:
        with autocast(precision, device):
            loss = runner.loss(b)
        loss.backward()
        runner.optimizer.step()
        runner.optimizer.zero_grad(set_to_none=True)
        tokens += int((b["tokens"] != 0).sum())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return tokens / (time.perf_counter() - start)


def saved_bytes_per_token(runner, batch: dict, precision: str, device: torch.device) -> float:
    """Bytes autograd keeps for backward (unique storages), per non-padding id; peak CUDA bytes on a GPU."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        with autocast(precision, device):
            loss = runner.loss(batch)
        loss.backward()
        runner.optimizer.zero_grad(set_to_none=True)
        return (torch.cuda.max_memory_allocated(device) - base) / int((batch["tokens"] != 0).sum())
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    params = {p.untyped_storage().data_ptr() for p in runner.model.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast(precision, device):
        loss = runner.loss(batch)
    loss.backward()
    runner.optimizer.zero_grad(set_to_none=True)
    return sum(n for ptr, n in seen.items() if ptr not in params) / int((batch["tokens"] != 0).sum())


def flops_per_token(cfg: XLMConfig, bptt: int) -> float:
    """Training FLOPs per token: 6 x (non-embedding parameters + output projection) + attention (PaLM's count)."""
    per_layer = 12 * cfg.dim * cfg.dim
    return 6 * (cfg.n_layers * per_layer + cfg.dim * cfg.vocab_size) + 12 * cfg.n_layers * cfg.dim * bptt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO / "results", help="output root with shards (else synthetic)")
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml", help="config whose train: section sizes the model")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a train key")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per trial")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="GPU bf16 dense peak (H100 SXM: 989)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    tcfg = load_train_config(args.config, None, args.set)
    precision = tcfg.precision if tcfg.precision == "fp32" or native_bf16(device) else "fp32"
    if (args.root / "shards" / "manifest.json").exists():
        batches, vocab, n_langs = real_batches(args.root, tcfg, args.steps)
        source = f"{args.root}/shards"
    else:
        vocab, n_langs = 16000, 9
        batches, source = synthetic_batches(args.steps, vocab, n_langs, tcfg.batch_size, tcfg.bptt), "synthetic"
    batches = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()} for b in batches]
    cfg = XLMConfig(vocab_size=vocab, n_langs=n_langs, **vars(tcfg.model))
    torch.manual_seed(0)
    runners = {"ours": Ours(cfg, tcfg, device), "hf": HF(cfg, tcfg, device)}
    print(f"model {cfg.n_layers} x {cfg.dim}, vocab {vocab}, {n_langs} langs, "
          f"{runners['ours'].model.num_parameters() / 1e6:.2f}M params; {precision}; batches {tcfg.batch_size} x "
          f"{tcfg.bptt} from {source}; {args.threads} threads on {device}; {args.trials} trials x {args.steps} steps")  # fmt: skip
    for runner in runners.values():  # warm-up
        trial(runner, batches[:2], precision, device)
    rates: dict[str, list[float]] = {name: [] for name in runners}
    result: dict = {"model": {"n_layers": cfg.n_layers, "dim": cfg.dim, "vocab": vocab, "n_langs": n_langs,
                              "params_m": runners["ours"].model.num_parameters() / 1e6},
                    "precision": precision, "batch_size": tcfg.batch_size, "bptt": tcfg.bptt, "source": source,
                    "threads": args.threads, "device": str(device), "trials": args.trials, "steps": args.steps}  # fmt: skip
    for _ in range(args.trials):
        for name, runner in runners.items():  # alternating, so drifting machine load hits both
            rates[name].append(trial(runner, batches, precision, device))
    for name, values in rates.items():
        mem = saved_bytes_per_token(runners[name], batches[0], precision, device)
        result[name] = {"median_tokens_s": statistics.median(values), "min_tokens_s": min(values),
                        "max_tokens_s": max(values), "memory_kib_per_token": mem / 1024}  # fmt: skip
        line = (f"{name:>4}: median {statistics.median(values):,.0f} tokens/s "
                f"(min {min(values):,.0f}, max {max(values):,.0f}); memory {mem / 1024:.1f} KiB/token")  # fmt: skip
        if device.type == "cuda":
            mfu = statistics.median(values) * flops_per_token(cfg, tcfg.bptt) / (args.peak_tflops * 1e12)
            line += f"; MFU {100 * mfu:.1f}%"
        print(line)
    ratio = statistics.median(rates["ours"]) / statistics.median(rates["hf"])
    per_trial = [o / h for o, h in zip(rates["ours"], rates["hf"], strict=True)]
    print(f"ratio ours/hf: {ratio:.2f}x (per-trial {min(per_trial):.2f}-{max(per_trial):.2f}; goal >= 1.3x)")
    if args.json:
        write_json(args.json, {**result, "ratio": ratio, "per_trial_ratio": per_trial})
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
