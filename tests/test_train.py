"""Training on the tiny run's shards: learning is real, exact resume after SIGKILL, DDP, bad input. All CPU, fp32."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from model.batches import N_SPECIAL, DataError, load_corpus
from model.train import TrainConfig, TrainError, build, evaluate, load_train_config, main
from model.xlm import XLM, XLMConfig

pytestmark = [pytest.mark.workflow, pytest.mark.network]

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "tiny.yaml"
# Small, fast runs for the mechanics tests: every step logged, checkpoints every 10 steps, 20 short-row steps then
# 20 full ones (a resume crosses from one phase to the other). Dropout on (tiny.yaml trains without): an exact
# resume must also restore the dropout RNG.
QUICK = ["max_steps=40", "short_steps=20", "checkpoint_every=10", "log_every=1", "eval_every=1000", "eval_batches=1",
         "threads=1", "model.dropout=0.1", "model.attention_dropout=0.1"]


def train_command(root: Path, out: Path, *overrides: str, nproc: int = 1) -> list[str]:
    args = ["--root", str(root), "--out", str(out), "--config", str(TINY)]
    args += [item for o in (*QUICK, *overrides) for item in ("--set", o)]
    if nproc > 1:
        torchrun = Path(sys.executable).with_name("torchrun")
        return [str(torchrun), "--standalone", f"--nproc_per_node={nproc}", "-m", "model.train", *args]
    return [sys.executable, "-m", "model.train", *args]


def run_training(root: Path, out: Path, *overrides: str, nproc: int = 1) -> subprocess.CompletedProcess:
    result = subprocess.run(train_command(root, out, *overrides, nproc=nproc), cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def records(out: Path) -> list[dict]:
    found = []
    for line in (out / "metrics.jsonl").read_text().splitlines():
        with contextlib.suppress(ValueError):  # a line being written when we looked
            found.append(json.loads(line))
    return found


def losses(out: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in records(out) if "loss" in r]


def final_record(out: Path) -> dict:
    return records(out)[-1]


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


# ---------------------------------------------------------------- the tiny run's model


def unigram_cross_entropy(corpus, lang: str) -> float:
    """Train-split unigram frequencies (add-one) scored on the valid split's non-special tokens."""
    counts = np.ones(corpus.vocab_size)
    train = corpus.mlm["train"][lang]
    for i in range(len(train)):
        counts += np.bincount(train.row(i), minlength=corpus.vocab_size)
    counts[:N_SPECIAL] = 0
    valid = corpus.mlm["valid"][lang]
    ids = np.concatenate([valid.row(i) for i in range(len(valid))])
    ids = ids[ids >= N_SPECIAL]
    return float(-np.log(counts[ids] / counts.sum()).mean())


def test_tiny_run_learns_beyond_the_unigram_baseline(tiny_run: Path) -> None:
    out = tiny_run / "models" / "tiny"
    assert (out / "spm.model").read_bytes() == (tiny_run / "vocab" / "spm.model").read_bytes()
    assert (out / "loss.png").stat().st_size > 0 and final_record(out)["final"]
    saved = torch.load(out / "model.pt", map_location="cpu", weights_only=False)
    assert saved["languages"] == ["de", "en", "hi"] and saved["step"] == final_record(out)["step"]
    model = XLM(XLMConfig(**saved["config"]))
    model.load_state_dict(saved["model"])
    corpus = load_corpus(tiny_run / "shards" / "manifest.json", tiny_run / "mixture" / "mixture.json",
                         tiny_run / "vocab" / "spm.model", {"mlm": 1.0})  # fmt: skip
    assert saved["spm_sha256"] == corpus.spm_sha256
    cfg = load_train_config(TINY, None, ["eval_batches=100000"])
    # Every target replaced by <mask>: a model that only copies visible tokens gains nothing.
    result = evaluate(model, corpus, cfg, torch.device("cpu"), mask_ratio=1.0, objectives=("mlm",))
    for lang in corpus.languages:
        unigram = unigram_cross_entropy(corpus, lang)
        assert result[f"mlm/{lang}"]["loss"] < 0.95 * unigram, (lang, result[f"mlm/{lang}"], unigram)


# ---------------------------------------------------------------- exact resume


@pytest.fixture(scope="module")
def uninterrupted(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[int, float]]:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    run_training(tiny_run, out)
    return losses(out)


@pytest.mark.parametrize("workers", [0, 2])
def test_exact_resume_after_sigkill(tiny_run: Path, tmp_path: Path, uninterrupted, workers: int) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(train_command(tiny_run, out, f"num_workers={workers}"), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            done = losses(out) if (out / "metrics.jsonl").exists() else []
            if done and done[-1][0] >= 13:  # past the checkpoint at step 10, before the one at 20 (usually)
                break
            time.sleep(0.02)
        assert proc.poll() is None, "training finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its DataLoader workers, as a crash would
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    killed_at = losses(out)[-1][0]
    assert killed_at < 40
    resumed = run_training(tiny_run, out, f"num_workers={workers}")
    assert "resumed from" in resumed.stderr
    assert losses(out) == uninterrupted  # step for step, exactly, metrics cut back to the checkpoint


def test_resume_with_another_configuration_names_the_field(tiny_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    run_training(tiny_run, out, "max_steps=10")
    checkpoint = next((out / "checkpoints").glob("*/step-00000010.pt"))
    args = ["--root", str(tiny_run), "--out", str(tmp_path / "other"), "--config", str(TINY), "--resume", str(checkpoint)]
    assert main([*args, "--set", "max_steps=10", "--set", "lr=0.01"]) == 2
    assert "train.lr (0.003 in the checkpoint, 0.01 now)" in capsys.readouterr().err


# ---------------------------------------------------------------- DDP


def test_ddp_two_processes_equal_one_process_with_both_batches(tiny_run: Path, tmp_path: Path) -> None:
    no_dropout = ["max_steps=4", "model.dropout=0", "model.attention_dropout=0", "objectives={mlm: 1, tlm: 1, clm: 1}"]
    run_training(tiny_run, tmp_path / "ddp", *no_dropout, "threads=2", nproc=2)
    ranks = final_record(tmp_path / "ddp")["rank_param_sha256"]
    assert len(ranks) == 2 and ranks[0] == ranks[1]  # both ranks hold the same weights
    run_training(tiny_run, tmp_path / "one", *no_dropout, "grad_accum=2")  # slots 0 and 1 = ranks 0 and 1
    ddp, one = load_weights(tmp_path / "ddp" / "model.pt"), load_weights(tmp_path / "one" / "model.pt")
    initial = XLM(XLMConfig(**torch.load(tmp_path / "one" / "model.pt", weights_only=False)["config"])).state_dict()
    assert any(not torch.equal(one[k], initial[k]) for k in one)  # the steps did change the weights
    for name in one:
        torch.testing.assert_close(ddp[name], one[name], rtol=0, atol=1e-5, msg=name)


# ---------------------------------------------------------------- bad input


@pytest.fixture
def root(tiny_run: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny run's training inputs, to break."""
    for name in ("shards", "mixture", "vocab"):
        shutil.copytree(tiny_run / name, tmp_path / name)
    return tmp_path


def build_from(root: Path, *overrides: str):
    from model.train import Paths

    cfg = load_train_config(TINY, None, overrides)
    return build(cfg, Paths.from_root(root, root / "models" / "x"))


def test_missing_shard(root: Path) -> None:
    shard = root / "shards" / "mlm" / "train" / "hi-00000.arrow"
    shard.unlink()
    with pytest.raises(DataError, match=f"{shard}: shard listed in .*manifest.json is missing"):
        build_from(root)


def test_changed_shard(root: Path) -> None:
    shard = root / "shards" / "tlm" / "train" / "en-de-00000.arrow"
    shard.write_bytes(shard.read_bytes() + b"\0")
    with pytest.raises(DataError, match=f"{shard}: sha256 .* does not match"):
        build_from(root)


def test_other_vocabulary(root: Path) -> None:
    spm = root / "vocab" / "spm.model"
    spm.write_bytes(spm.read_bytes() + b"\0")
    with pytest.raises(DataError, match=f"{spm}: sha256 .* differs from the spm_model sha256"):
        build_from(root)


def test_empty_language_in_the_mixture(root: Path) -> None:
    path = root / "mixture" / "mixture.json"
    mixture = json.loads(path.read_text())
    mixture["languages"]["hi"]["n"] = 0
    path.write_text(json.dumps(mixture))
    with pytest.raises(DataError, match="mixture.json: language 'hi' is empty in the mixture"):
        build_from(root)


def test_tlm_without_pairs(root: Path) -> None:
    path = root / "shards" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["shards"] = [s for s in manifest["shards"] if s["kind"] != "tlm"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="train.objectives.tlm > 0 but the shards hold no TLM train pairs"):
        build_from(root)
    build_from(root, "objectives.tlm=0")  # MLM alone is fine


def test_bptt_larger_than_max_positions(root: Path) -> None:
    with pytest.raises(TrainError, match="train.bptt 128 is larger than train.model.max_positions 100"):
        build_from(root, "bptt=128", "model.max_positions=100")


def test_unknown_key_and_cli_exit_code(root: Path, capsys) -> None:
    with pytest.raises(ValueError, match="unknown key"):
        TrainConfig.from_dict({"max_step": 3})
    assert main(["--root", str(root / "nowhere"), "--config", str(TINY)]) == 2
    assert "no such manifest" in capsys.readouterr().err
