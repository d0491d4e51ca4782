"""The engine's Ray session starts a cluster of its own when no address is configured, even where
another Ray cluster runs on the machine (``ray start`` by someone else: a notebook, a job)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from recs_pipeline.infra.engine import Engine

ray = pytest.importorskip("ray")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def foreign_cluster(monkeypatch, no_ray_session):
    """A one-CPU Ray head started by ``ray start`` (which records itself as the machine's
    current cluster, the one ``ray.init(address=None)`` joins), stopped by killing its process
    group at the end. Ray's temp folder, where that record lives, is this test's own (a short
    path: Ray's sockets live there), so no other Ray on the machine is found or disturbed. The
    session's own cluster (tests/conftest.py) is stopped first: this process has none."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", temp)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray_cli = str(Path(sys.executable).parent / "ray")
    process = subprocess.Popen(
        [ray_cli, "start", "--head", f"--port={free_port()}", "--num-cpus=1"]
        + ["--include-dashboard=false", "--block"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # Up when a client finds it the way address=None does (the current-cluster file), with
    # its one CPU; a loaded CI machine starts Ray slowly.
    probe = "import ray; ray.init(address='auto'); print(ray.cluster_resources().get('CPU'))"
    try:
        deadline = time.monotonic() + 300
        while True:
            ran = subprocess.run(
                [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
            )
            if ran.returncode == 0 and ran.stdout.strip().splitlines()[-1] == "1.0":
                break
            assert process.poll() is None, "ray start exited"
            assert time.monotonic() < deadline, f"ray start did not come up: {ran.stderr[-500:]}"
            time.sleep(1)
        yield
    finally:
        # Every process of the cluster (raylet, GCS, workers) is in this group; ``ray start``'s
        # own SIGTERM shutdown took 33 s of the suite, so the group is killed outright. Nothing
        # of it outlives this (checked with ps by session id), and its folder goes next.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        shutil.rmtree(temp, ignore_errors=True)


def test_a_session_without_address_starts_its_own_cluster(foreign_cluster):
    engine = Engine(kind="ray", workers=2, num_cpus=2)
    with engine.session():
        # Ours has 2 CPUs; joining the foreign one would show 1.
        assert ray.cluster_resources().get("CPU") == 2
        assert engine.map(lambda shard: shard * 2, [1, 2]) == [2, 4]
    assert not ray.is_initialized()
