"""The clean stage on a real Dask cluster: `dask scheduler` and two `dask worker` processes on loopback.

The cluster is started the way a user starts one (the venv's `dask` command, separate OS processes),
the clean stage of the tiny run is rerun against its address (config ``clean.scheduler``), and every
file it writes must be byte-identical to the tiny run's own, made on a LocalCluster.  Every process
the test starts is stopped by its PID, also when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipeline import config as pfconfig
from pipeline.clean import clean_corpus
from tests.test_clean import output_hashes
from tests.workflow_runner import REPO

pytestmark = [pytest.mark.workflow, pytest.mark.network, pytest.mark.slow, pytest.mark.timeout(600)]

DASK = Path(sys.executable).with_name("dask")
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 10


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process (its own process group, so a worker's nanny child goes too), then SIGKILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(STOP_TIMEOUT_S)


@contextlib.contextmanager
def dask_cluster(logs: Path, n_workers: int = 2) -> Iterator[str]:
    """`dask scheduler` + n `dask worker` on 127.0.0.1, free ports, no dashboard; yields the address."""
    from distributed import Client

    address = f"tcp://127.0.0.1:{free_port()}"
    port = address.rsplit(":", 1)[1]
    # The workers unpickle pipeline.clean's tasks: they need this checkout on their path.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    commands = [
        [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"],
        *[
            [str(DASK), "worker", address, "--host", "127.0.0.1", "--nworkers", "1", "--nthreads", "1",
             "--no-dashboard", "--name", f"worker-{i}", "--local-directory", str(logs / f"worker-{i}")]
            for i in range(n_workers)
        ],
    ]  # fmt: skip
    procs: list[subprocess.Popen] = []
    try:
        for i, command in enumerate(commands):
            log = open(logs / f"dask-{i}.log", "wb")  # noqa: SIM115 (closed with the process below)
            procs.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True))  # fmt: skip
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # the scheduler takes connections once it listens, workers register a little later
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a dask process exited early; logs in {logs}")
            with contextlib.suppress(OSError, TimeoutError), Client(address, timeout=5) as client:
                client.wait_for_workers(n_workers, timeout=max(1.0, deadline - time.monotonic()))
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {n_workers} workers at {address} within {START_TIMEOUT_S} s; logs in {logs}")
            time.sleep(0.5)
        yield address
    finally:
        for proc in reversed(procs):  # workers first, then the scheduler
            stop(proc)


def tiny_config(output_dir: Path, **clean) -> dict:
    raw = yaml.safe_load((REPO / "tests" / "tiny.yaml").read_text())
    raw["output_dir"] = str(output_dir)
    raw["clean"] = {**raw.get("clean", {}), **clean}
    return pfconfig.prepare(raw)


def test_clean_on_a_dask_scheduler_and_two_workers_matches_the_local_run(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    with dask_cluster(logs) as address:
        cfg = tiny_config(out, scheduler=address)
        extracted = {s: tiny_run / "extracted" / s for s in pfconfig.train_sources(cfg)}
        udhr = {s: tiny_run / "extracted" / s for s in pfconfig.eval_sources(cfg)
                if cfg["sources"][s]["format"] == "udhr"}  # fmt: skip
        summary = clean_corpus(cfg, extracted, tiny_run / "raw" / "_lid" / "model.ftz", out, udhr_dirs=udhr)

    assert len(summary["tasks_by_worker"]) == 2, summary["tasks_by_worker"]  # both workers took partitions
    remote = output_hashes(out)
    local = output_hashes(tiny_run)
    compared = [name for name in remote if not name.endswith(".png")]  # plots are not data files
    assert any(name.startswith("clean/") for name in compared) and "stats/languages.json" in compared
    assert {name: remote[name] for name in compared} == {name: local.get(name) for name in compared}
