"""The engine's Ray session starts a cluster of its own when no address is configured, even where
another Ray cluster runs on the machine (``ray start`` by someone else: a notebook, a job)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recs_pipeline.engine import Engine

ray = pytest.importorskip("ray")


@pytest.fixture
def foreign_cluster():
    """A one-CPU Ray head started by ``ray start`` (which records itself as the machine's
    current cluster), stopped by killing its process group at the end."""
    ray_cli = Path(sys.executable).parent / "ray"
    process = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--num-cpus=1", "--include-dashboard=false", "--block"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    current = Path("/tmp/ray/ray_current_cluster")
    while not (current.exists() and current.stat().st_mtime > time.time() - 130):
        assert process.poll() is None, "ray start exited"
        assert time.monotonic() < deadline, "ray start did not come up"
        time.sleep(0.5)
    time.sleep(2)  # the head writes the file before its services listen
    try:
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def test_a_session_without_address_starts_its_own_cluster(foreign_cluster):
    engine = Engine(kind="ray", workers=2, num_cpus=2)
    with engine.session():
        # Ours has 2 CPUs; joining the foreign one would show 1.
        assert ray.cluster_resources().get("CPU") == 2
        assert engine.map(lambda shard: shard * 2, [1, 2]) == [2, 4]
    assert not ray.is_initialized()
