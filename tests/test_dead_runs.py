"""A run whose worker is killed does not wedge the instance (issue 27, findings 4 and 5).

``kill -9`` of a CLI run's process group left the run ``STARTED`` holding the ``duckdb`` pool's
only slot: every later run waited on "Step blocked by limit for pool duckdb" for ever. And a
CLI run killed alone (its process, not its group) left its step processes running as orphans.

Each test starts real ``dagster asset materialize`` runs on a temporary instance with the
project's settings, makes the first run hold the pool slot (its step waits for the warehouse
file, which this test holds open, as a notebook would), and SIGKILLs it for real."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets.platform.instance import prepare_instance
from assets.platform.run_workers import WORKER_TAG
from recs_pipeline.data.synthetic import SyntheticLogSpec, write_landing_files
from tests.daemon_support import BIN, PROJECT_ROOT, Deployment, write_instance

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL, /proc")

SPEC = SyntheticLogSpec(
    start=dt.date(2026, 3, 1),
    days=2,
    n_users=40,
    n_items=20,
    n_communities=2,
    events_per_day=60,
    dirty_fraction=0.0,
    seed=3,
)
DAY = SPEC.start.isoformat()
POOL = "duckdb"


class Site:
    """A landing folder, warehouse, artifact root and instance in ``tmp``, and the environment
    of every Dagster command on them."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.home = tmp / "dagster_home"
        self.warehouse = tmp / "warehouse.duckdb"
        write_landing_files(SPEC, tmp / "landing")
        write_instance(self.home)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("RECS_", "DAGSTER_"))}
        self.env.update(
            DAGSTER_HOME=str(self.home),
            RECS_WAREHOUSE=str(self.warehouse),
            RECS_ARTIFACTS=str(tmp / "artifacts"),
            RECS_LANDING_ROOT=str(tmp / "landing"),
            RECS_PARTITION_START=DAY,
            RECS_CONFIG="",
            OMP_NUM_THREADS="1",
        )
        self.instance = dg.DagsterInstance.from_config(str(self.home))
        self.processes: list[subprocess.Popen] = []

    def materialize(self, name: str, select: str = "raw_interactions") -> subprocess.Popen:
        """``dagster asset materialize`` of one day's ingest (and, with ``select``, more), in a
        process group of its own."""
        process = subprocess.Popen(
            [str(BIN / "dagster"), "asset", "materialize", "-m", "assets.definitions"]
            + ["--select", select, "--partition", DAY],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=open(self.tmp / f"{name}.log", "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def log(self, name: str, tail: int = 3000) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-tail:]

    def slots(self) -> tuple[set[str], set[str]]:
        """Runs holding a slot of the pool, and runs waiting for one."""
        info = self.instance.event_log_storage.get_concurrency_info(POOL)
        return {s.run_id for s in info.claimed_slots}, {s.run_id for s in info.pending_steps}

    def wait(self, what: str, condition, timeout: float, name: str = "first"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"not {what} after {timeout} s:\n{self.log(name)}")

    def status(self, run_id: str) -> dg.DagsterRunStatus:
        return self.instance.get_run_by_id(run_id).status

    def close(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.instance.dispose()


@pytest.fixture
def site(tmp_path):
    site = Site(tmp_path)
    yield site
    site.close()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def hold_slot(
    site: Site, select: str = "raw_interactions"
) -> tuple[subprocess.Popen, str, duckdb.DuckDBPyConnection]:
    """A first CLI run whose ingest step holds the pool slot, waiting for the warehouse this
    test holds open. Returns its process, its run id and the test's warehouse connection."""
    holder = duckdb.connect(str(site.warehouse))
    process = site.materialize("first", select)
    (run_id,) = site.wait("holding the slot", lambda: site.slots()[0], timeout=180)
    return process, run_id, holder


def test_a_run_waiting_for_the_slot_of_a_killed_run_gets_it(site):
    """SIGKILL of the first run's process group while a second run waits for its slot: the
    second run marks it failed, frees its slot and completes."""
    first, first_id, holder = hold_slot(site)
    assert site.instance.get_run_by_id(first_id).tags[WORKER_TAG].split()[1] == str(first.pid)
    second = site.materialize("second")
    site.wait("waiting for the slot", lambda: site.slots()[1] - {first_id}, 180, "second")

    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    killed_at = time.monotonic()
    holder.close()

    site.wait(
        "marked failed",
        lambda: site.status(first_id) == dg.DagsterRunStatus.FAILURE,
        timeout=30,
        name="second",
    )
    failed_after = time.monotonic() - killed_at
    assert second.wait(timeout=120) == 0, site.log("second")
    assert failed_after < 15, failed_after
    (second_id,) = {r.run_id for r in site.instance.get_runs()} - {first_id}
    assert site.status(second_id) == dg.DagsterRunStatus.SUCCESS
    assert site.slots() == (set(), set())
    failure = site.instance.get_records_for_run(
        first_id, of_type=dg.DagsterEventType.RUN_FAILURE
    ).records
    assert "worker process" in failure[0].event_log_entry.dagster_event.message
    assert "is gone" in site.log("second", tail=0)


def test_a_killed_run_is_failed_and_its_slot_freed_before_the_next_run(site):
    """Nothing waits when the first run is killed: the next entry point (``python -m
    assets.platform.instance``, which ``make run`` and ``make ui`` call) fails it and frees its
    slot."""
    first, first_id, holder = hold_slot(site)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    holder.close()
    assert site.status(first_id) == dg.DagsterRunStatus.STARTED  # what kill -9 leaves
    assert site.slots()[0] == {first_id}

    ready = subprocess.run(
        [sys.executable, "-m", "assets.platform.instance"],
        cwd=PROJECT_ROOT,
        env=site.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ready.returncode == 0, ready.stderr
    assert first_id in ready.stderr and "is gone" in ready.stderr
    assert site.status(first_id) == dg.DagsterRunStatus.FAILURE
    assert site.slots() == (set(), set())
    prepare_instance(site.home)  # nothing left to do, and idempotent


def test_the_daemons_run_monitoring_fails_a_killed_run_and_frees_its_slot(site):
    """With the daemon up and no other run, Dagster's run monitoring asks the project's run
    launcher whether the worker lives: the killed run is failed and its slot freed."""
    deployment = Deployment(site.env, logs=site.tmp)
    try:
        first, first_id, holder = hold_slot(site)
        deployment.start_daemon()
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        holder.close()
        killed_at = time.monotonic()
        site.wait("freed", lambda: site.slots() == (set(), set()), timeout=90, name="daemon")
        freed_after = time.monotonic() - killed_at
        assert site.status(first_id) == dg.DagsterRunStatus.FAILURE
        # Failed within the monitoring's poll interval, freed the slot-freeing delay later:
        # 5 s each, plus the daemon's start (it imports the code location) on a busy machine.
        assert freed_after < 60, freed_after
        deployment.check_alive()
    finally:
        deployment.stop()
    assert "is gone" in site.log("daemon", tail=0)


def test_the_step_processes_die_with_a_killed_run_worker(site):
    """SIGKILL of the CLI process alone (not its group): its fork server and step process
    end too, instead of living on as orphans that hold the warehouse. (Two assets: a run of
    ``raw_interactions`` alone runs it in the run worker, with no step process.)"""
    first, first_id, holder = hold_slot(site, "raw_interactions,interaction_split")
    members = subprocess.run(
        ["ps", "-o", "pid=,args=", "-g", str(first.pid)], capture_output=True, text=True
    ).stdout
    assert "forkserver" in members, members  # the step is forked, not run in the worker
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    # Dagster's log tailers (`tail -F`) end when their watcher next polls the dead step: under
    # a loaded machine that took more than 10 s (a fresh-clone suite), so the bound is generous.
    deadline = time.monotonic() + 45
    while group_alive(first.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    orphans = subprocess.run(
        ["ps", "-o", "pid,args", "-g", str(first.pid)], capture_output=True, text=True
    ).stdout
    assert not group_alive(first.pid), f"orphans of the killed run:\n{orphans}"
    holder.close()


def test_only_runs_whose_worker_is_gone_here_are_reaped(tmp_path):
    """The reaper's rules on runs written straight into an instance: a run in progress whose
    worker is dead is failed and its slot freed; a finished run still holding a slot (a home
    repaired after a failed run, a run the daemon failed) has it freed once its worker is gone;
    a live worker, a worker on another host and a run without the tag are left alone."""
    from assets.platform.run_workers import process_start, reap_dead_runs, this_worker

    home = tmp_path / "dagster_home"
    write_instance(home)
    gone = subprocess.Popen(["true"])
    gone.wait()
    start = process_start(os.getpid())
    workers = {
        "dead": f"{this_worker().split()[0]} {gone.pid} 1",
        "alive": this_worker(),
        "elsewhere": f"another-host {os.getpid()} {start}",
    }
    runs = {
        ("dead", dg.DagsterRunStatus.STARTED): "a",
        ("dead", dg.DagsterRunStatus.FAILURE): "b",
        ("alive", dg.DagsterRunStatus.STARTED): "c",
        ("elsewhere", dg.DagsterRunStatus.STARTED): "d",
        (None, dg.DagsterRunStatus.STARTED): "e",
    }
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots(POOL, len(runs))
        for (worker, status), step in runs.items():
            run_id = f"{step}" * 8 + "-0000-0000-0000-000000000000"
            tags = {WORKER_TAG: workers[worker]} if worker else {}
            instance.add_run(dg.DagsterRun(job_name="j", run_id=run_id, status=status, tags=tags))
            assert storage.claim_concurrency_slot(POOL, run_id, step).is_claimed
        reaped = reap_dead_runs(instance)
        held = {slot.run_id[0] for slot in storage.get_concurrency_info(POOL).claimed_slots}
        statuses = {r.run_id[0]: r.status for r in instance.get_runs()}
    assert sorted(r[0] for r in reaped) == ["a", "b"]
    assert held == {"c", "d", "e"}
    assert statuses["a"] == dg.DagsterRunStatus.FAILURE
    assert {statuses[k] for k in "cde"} == {dg.DagsterRunStatus.STARTED}
