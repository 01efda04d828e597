"""model/launch.py: the command the train rule runs and the Slurm resources it declares, for 1 and several nodes.

Multi-node training cannot run on this machine (tests/test_slurm.py runs one node), so the argv and the
resources are checked as values here; what the Slurm executor plugin makes of the resources is checked with
its own submit-string builder, so a plugin change that breaks the geometry fails here.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string

from model.launch import LaunchError, gpus_per_node, launch, launch_command, slurm_resources
from pipeline import config as pfconfig

PY = "/venv/bin/python"
TORCHRUN = "/venv/bin/torchrun"


def command(train: dict, **kwargs) -> list[str]:
    return launch_command(train, "/out", "/out/models/r", 4, python=PY, **kwargs)


def test_one_process_runs_model_train_directly() -> None:
    argv = command({"nproc": 1})
    assert argv[:3] == [PY, "-m", "model.train"]
    assert argv[argv.index("--threads") + 1] == "4"
    assert json.loads(argv[argv.index("--config-json") + 1]) == {"nproc": 1}


def test_one_node_runs_torchrun_standalone_without_srun() -> None:
    argv = command({"nproc": 2, "nodes": 1})
    assert argv[:4] == [TORCHRUN, "--standalone", "--nproc_per_node=2", "-m"]
    assert "srun" not in argv  # the Slurm jobstep's `srun -n1` already wraps the job


def test_several_nodes_run_one_torchrun_per_node_through_srun() -> None:
    train = {"nproc": 4, "nodes": 3, "rdzv_port": 29600, "device": "cuda"}
    argv = command(train, head="gpu-017", job_id="4242")
    split = argv.index(TORCHRUN)
    assert argv[:split] == ["srun", "--nodes=3", "--ntasks=3", "--ntasks-per-node=1", "--cpus-per-task=4",
                            "--gres=gpu:4", "--kill-on-bad-exit=1"]  # fmt: skip
    assert argv[split:split + 8] == [TORCHRUN, "--nnodes=3", "--nproc_per_node=4", "--rdzv-backend=c10d",
                                     "--rdzv-endpoint=gpu-017:29600", "--rdzv-id=4242", "-m", "model.train"]  # fmt: skip
    assert "--standalone" not in argv


def test_several_cpu_nodes_ask_no_gpus_and_take_the_launcher_from_the_mpi_resource() -> None:
    argv = command({"nproc": 2, "nodes": 2, "device": "cpu"}, head="n1", launcher="srun --mpi=none", job_id="7")
    assert argv[:3] == ["srun", "--mpi=none", "--nodes=2"]
    assert not any(a.startswith("--gres") for a in argv)
    assert "--rdzv-endpoint=n1:29500" in argv


def test_gpus_per_node_defaults_to_one_per_process_on_cuda_only() -> None:
    assert gpus_per_node({"nproc": 4, "device": "cuda"}) == 4
    assert gpus_per_node({"nproc": 4, "device": "auto"}) == 0
    assert gpus_per_node({"nproc": 4, "device": "cuda", "gpus_per_node": 8}) == 8
    with pytest.raises(LaunchError, match="train.gpus_per_node"):
        gpus_per_node({"gpus_per_node": -1})
    with pytest.raises(LaunchError, match="train.nodes"):
        command({"nodes": 0})


def test_resources_for_one_node() -> None:
    assert slurm_resources({"nproc": 2, "device": "cpu"}) == {}
    assert slurm_resources({"nproc": 2, "device": "cuda"}) == {"gpu": 2}


def _sbatch(resources: dict, threads: int) -> str:
    """What plugin 2.8 submits for a job with these resources (its own functions, no Slurm needed)."""
    job = SimpleNamespace(resources=SimpleNamespace(get=lambda k, d=None: resources.get(k, d), **resources),
                          threads=threads)  # fmt: skip
    params = {"run_uuid": "u", "slurm_logfile": "l", "comment_str": "rule_train", "account": "", "partition": "",
              "workdir": ""}  # fmt: skip
    return get_submit_command(job, params) + set_gres_string(job)


def test_several_gpu_nodes_submit_one_task_per_node_with_gpus_per_node() -> None:
    resources = {"mem_mb": 32000, **slurm_resources({"nproc": 4, "nodes": 2, "device": "cuda"})}
    assert resources["mpi"] == "srun"
    sbatch = _sbatch(resources, threads=16).split()
    assert {"--nodes=2", "--ntasks=2", "--cpus-per-task=16", "--gres=gpu:4"} <= set(sbatch)
    assert not any(flag.startswith(("--ntasks-per-gpu", "--gpus=")) for flag in sbatch), sbatch


def test_several_cpu_nodes_submit_one_task_per_node() -> None:
    sbatch = _sbatch(slurm_resources({"nproc": 2, "nodes": 3, "device": "cpu"}), threads=8).split()
    assert {"--nodes=3", "--ntasks=3", "--cpus-per-task=8"} <= set(sbatch)
    assert not any("gpu" in flag for flag in sbatch), sbatch


def test_schema_defaults_reach_train_config_and_keep_one_node() -> None:
    cfg = pfconfig.load(Path(__file__).resolve().parent / "tiny.yaml")["train"]
    assert (cfg["nodes"], cfg["gpus_per_node"], cfg["rdzv_port"]) == (1, None, 29500)
    assert slurm_resources(cfg) == {}


def test_launch_across_nodes_without_srun_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    with pytest.raises(LaunchError, match="train.nodes is 2"):
        launch({"nodes": 2}, tmp_path, tmp_path / "m", 1, tmp_path / "train.log")


def test_launch_writes_the_command_first_and_raises_with_the_log_tail(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    seen = {}

    def fake_run(argv, stdout, **kwargs):
        seen["argv"] = argv
        stdout.write("rank 0: boom\n")
        return subprocess.CompletedProcess(argv, 3)

    monkeypatch.setattr(subprocess, "run", fake_run)
    log = tmp_path / "logs" / "train.log"
    with pytest.raises(RuntimeError, match="(?s)training failed \\(3\\).*rank 0: boom"):
        launch({"nproc": 2}, tmp_path, tmp_path / "m", 2, log)
    first = log.read_text().splitlines()[0]
    assert "torchrun --standalone --nproc_per_node=2 -m model.train" in first and seen["argv"][1] == "--standalone"
