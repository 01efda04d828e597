"""How the train rule starts model.train: one process, torchrun on one node, or srun + torchrun across nodes.

Imports neither torch nor the model, so the Snakefile can read the Slurm resources at parse time.

- ``train.nproc: 1, train.nodes: 1``: ``python -m model.train ...``
- ``train.nproc: P`` on one node: ``torchrun --standalone --nproc_per_node=P -m model.train ...``. Under the Slurm
  profile the executor's jobstep already runs the job as ``srun -n1 ... snakemake ...``: no ``srun`` is nested.
- ``train.nodes: N > 1`` (Slurm only): the rule declares the executor's ``mpi`` resource, so the jobstep adds no
  ``srun`` of its own, and the rule starts one torchrun per node itself::

      srun --nodes=N --ntasks=N --ntasks-per-node=1 --cpus-per-task=T [--gres=gpu:G] --kill-on-bad-exit=1 \\
          torchrun --nnodes=N --nproc_per_node=P --rdzv-backend=c10d --rdzv-endpoint=HEAD:PORT \\
          --rdzv-id=SLURM_JOB_ID -m model.train ...

  HEAD is the host running the rule: Slurm runs a batch job's script on the first node of its allocation, and
  the c10d rendezvous store is hosted by the torchrun whose host matches the endpoint.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import PolyforgeError

REPO = Path(__file__).resolve().parent.parent
DEFAULT_LAUNCHER = "srun"


class LaunchError(PolyforgeError, ValueError):
    """A train.* launch setting the run cannot start with, naming the key."""


def _positive(train: Mapping[str, Any], key: str, default: int) -> int:
    value = train.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LaunchError(f"train.{key} must be an integer of at least 1, got {value!r}")
    return value


def nodes(train: Mapping[str, Any]) -> int:
    return _positive(train, "nodes", 1)


def nproc(train: Mapping[str, Any]) -> int:
    return _positive(train, "nproc", 1)


def gpus_per_node(train: Mapping[str, Any]) -> int:
    """train.gpus_per_node, or by default one GPU per process when train.device is cuda (none otherwise)."""
    value = train.get("gpus_per_node")
    if value is None:
        return nproc(train) if train.get("device") == "cuda" else 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LaunchError(f"train.gpus_per_node must be a non-negative integer or null, got {value!r}")
    return value


def slurm_resources(train: Mapping[str, Any]) -> dict[str, Any]:
    """The train rule's resources beyond memory and time, as snakemake-executor-plugin-slurm (2.8) reads them.

    One node: ``gpu=G`` (sbatch ``--gpus=G``; the jobstep's ``srun -n1`` asks for the same). Several nodes:
    ``mpi`` (the jobstep then runs the job's command without an srun, the rule calls srun itself), one task per
    node (``nodes=N, tasks=N``: sbatch ``--nodes=N --ntasks=N``, each task ``--cpus-per-task`` = the rule's
    threads), and GPUs per node as ``gres=gpu:G`` (``gpu`` would be a total over all nodes). ``tasks_per_gpu=0``
    keeps the plugin from turning ``tasks`` into ``--ntasks-per-gpu=N`` on a GPU job.
    """
    n, gpus = nodes(train), gpus_per_node(train)
    if n == 1:
        return {"gpu": gpus} if gpus else {}
    found: dict[str, Any] = {"mpi": DEFAULT_LAUNCHER, "nodes": n, "tasks": n}
    if gpus:
        found.update(gres=f"gpu:{gpus}", tasks_per_gpu=0)
    return found


def model_train_args(train: Mapping[str, Any], root: str | os.PathLike[str], out: str | os.PathLike[str],
                     threads: int, data: Mapping[str, str | os.PathLike[str]] | None = None) -> list[str]:  # fmt: skip
    """model.train's arguments; ``data`` may name the ``manifest``, ``mixture`` and ``spm`` files where they are
    not ROOT's defaults (an experiment variant's own folders)."""
    args = ["--root", str(root), "--out", str(out), "--config-json", json.dumps(dict(train)),
            "--threads", str(threads)]  # fmt: skip
    for name, path in sorted((data or {}).items()):
        args += [f"--{name}", str(path)]
    return args


def launch_command(train: Mapping[str, Any], root: str | os.PathLike[str], out: str | os.PathLike[str], threads: int,
                   *, python: str = sys.executable, head: str | None = None, launcher: str | None = None,
                   job_id: str | None = None, data: Mapping[str, str | os.PathLike[str]] | None = None,
                   ) -> list[str]:  # fmt: skip
    """The argv the train rule runs (see the module docstring). ``threads`` are one node's CPUs, split by
    model.train across that node's processes; ``head``, ``launcher`` and ``job_id`` only matter for nodes > 1
    (default: this host, ``srun``, $SLURM_JOB_ID)."""
    args = model_train_args(train, root, out, threads, data)
    n, procs = nodes(train), nproc(train)
    if n == 1 and procs == 1:
        return [python, "-m", "model.train", *args]
    torchrun = str(Path(python).with_name("torchrun"))
    if n == 1:
        return [torchrun, "--standalone", f"--nproc_per_node={procs}", "-m", "model.train", *args]
    port = _positive(train, "rdzv_port", 29500)
    head = head or socket.gethostname()
    run_id = job_id or os.environ.get("SLURM_JOB_ID") or "polyforge"
    gpus = gpus_per_node(train)
    # The jobstep drops SLURM_* (all but the job id) from the job's environment: every step option is explicit.
    step = [*shlex.split(launcher or DEFAULT_LAUNCHER), f"--nodes={n}", f"--ntasks={n}", "--ntasks-per-node=1",
            f"--cpus-per-task={threads}", *([f"--gres=gpu:{gpus}"] if gpus else []), "--kill-on-bad-exit=1"]  # fmt: skip
    rendezvous = [f"--nnodes={n}", f"--nproc_per_node={procs}", "--rdzv-backend=c10d",
                  f"--rdzv-endpoint={head}:{port}", f"--rdzv-id={run_id}"]  # fmt: skip
    return [*step, torchrun, *rendezvous, "-m", "model.train", *args]


def launch(train: Mapping[str, Any], root: str | os.PathLike[str], out: str | os.PathLike[str], threads: int,
           log: str | os.PathLike[str], launcher: str | None = None,
           data: Mapping[str, str | os.PathLike[str]] | None = None) -> None:  # fmt: skip
    """What the train rule runs: the command above, its output (every process's) to ``log``."""
    command = launch_command(train, root, out, threads, launcher=launcher, data=data)
    if nodes(train) > 1 and shutil.which(command[0]) is None:
        raise LaunchError(f"train.nodes is {nodes(train)}: training across nodes runs under Slurm (snakemake "
                          f"--profile workflow/profiles/slurm), and {command[0]!r} is not on PATH here")  # fmt: skip
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as handle:
        handle.write(shlex.join(command) + "\n")
        handle.flush()
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    if result.returncode != 0:
        tail = "\n".join(Path(log).read_text(encoding="utf-8", errors="replace").splitlines()[-30:])
        raise RuntimeError(f"training failed ({result.returncode}); log {log}:\n{tail}")
