"""Runs whose worker process died: marked failed and their pool slots freed.

A run claims a slot of the pool ``duckdb`` (limit 1) for each warehouse step and frees it when
the step ends. A run worker killed outright (``kill -9``, the OOM killer, a closed terminal)
never ends its run: Dagster leaves it ``STARTED`` with the slot claimed, and every later run
waits on "Step blocked by limit for pool duckdb" for ever. Dagster's run monitoring fails such
runs only where the run launcher can tell a dead worker (Kubernetes, ECS), and only while the
daemon runs: a CLI run (``dagster asset materialize``) has no launcher and often no daemon.

So every run worker records who it is, in a tag of its run (:data:`WORKER_TAG`: host, PID and
the process's start time, which tells a reused PID apart), before it claims any slot
(``assets.platform.executor``). Anyone on that host can then tell whether the worker still lives,
and :func:`reap_dead_runs` marks the runs whose worker is gone failed and frees their slots. It
runs:

- when a run starts, and every :data:`WATCH_SECONDS` while it runs (``assets.platform.executor``): a
  run waiting for the slot of a run killed meanwhile gets it within that bound;
- in every entry point that prepares the instance (``python -m assets.platform.instance``, ``make
  run``, ``make ui``);
- in the daemon, through Dagster's own run monitoring (``run_monitoring`` in ``dagster.yaml``):
  :class:`ProcessRunLauncher` is Dagster's default launcher that can tell a dead worker, so the
  monitoring daemon fails the run, and ``free_slots_after_run_end_seconds`` frees its slots.

A worker on another host cannot be checked from here: its run is left to that host's runs and to
Dagster's monitoring. The step processes of a run die with its worker
(``assets.platform.step_preload``), so no step of a failed run still holds the warehouse when its
slot is freed.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable

import dagster as dg
from dagster._core.events import JobFailureData, RunFailureReason
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus

WORKER_TAG = "recs/run_worker"
# A run worker checks for dead runs this often while it runs (and waits for a slot).
WATCH_SECONDS = 5.0
IN_PROGRESS = [
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, from ``/proc``); None when
    no such process lives (a zombie counts as dead). Empty where ``/proc`` is missing."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except FileNotFoundError:
        if sys.platform.startswith("linux"):
            return None
        try:  # no /proc: the PID alone
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ""
    except ProcessLookupError:
        return None
    # Fields after the command (which may hold spaces and parentheses): state is the first,
    # the start time the 20th.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def this_worker() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()} {pid} {process_start(pid) or ''}".rstrip()


def worker_alive(value: str | None) -> bool | None:
    """Whether the worker a :data:`WORKER_TAG` value names lives: None when it cannot be told
    from here (no tag, another host)."""
    if not value:
        return None
    host, _, rest = value.partition(" ")
    pid, _, started = rest.partition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    current = process_start(int(pid))
    if current is None:
        return False
    return not started or not current or current == started


def record_run_worker(instance: dg.DagsterInstance, run_id: str) -> None:
    """Tag run ``run_id`` with this process as its worker."""
    instance.add_run_tags(run_id, {WORKER_TAG: this_worker()})


def dead_worker_message(run: dg.DagsterRun) -> str:
    host, _, rest = run.tags[WORKER_TAG].partition(" ")
    pid = rest.partition(" ")[0]
    return (
        f"the run's worker process (PID {pid} on {host}) is gone: it was killed (kill -9, the OOM"
        " killer, a closed terminal) before it could end the run. Marked failed and its pool"
        " slots freed; re-execute it (from failure) or materialise the partition again."
    )


def _slot_holders(instance: dg.DagsterInstance) -> set[str]:
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return set()
    holders: set[str] = set()
    for key in storage.get_concurrency_keys():
        info = storage.get_concurrency_info(key)
        holders.update(slot.run_id for slot in info.claimed_slots)
        holders.update(step.run_id for step in info.pending_steps)
    return holders


def reap_dead_runs(
    instance: dg.DagsterInstance, log: Callable[[str], None] | None = None
) -> list[str]:
    """Mark failed every run in progress whose worker on this host is gone, and free the pool
    slots of those runs and of finished runs whose worker is gone (a run failed by the
    monitoring daemon, a step that crashed with its slot). Returns the runs whose slots were
    freed or which were failed."""
    reaped: list[str] = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=IN_PROGRESS)):
        run = record.dagster_run
        if worker_alive(run.tags.get(WORKER_TAG)) is not False:
            continue
        current = instance.get_run_by_id(run.run_id)
        if current is None or current.is_finished:  # ended meanwhile (another reaper)
            continue
        message = dead_worker_message(run)
        instance.report_run_failed(
            current,
            message,
            JobFailureData(error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION),
        )
        if instance.event_log_storage.supports_global_concurrency_limits:
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        reaped.append(run.run_id)
        if log:
            log(f"run {run.run_id}: {message}")
    for run_id in _slot_holders(instance) - set(reaped):
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            continue
        if run is not None and worker_alive(run.tags.get(WORKER_TAG)) is not False:
            continue  # its steps may still run (a worker elsewhere): Dagster frees these later
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        reaped.append(run_id)
        if log:
            state = "deleted" if run is None else run.status.value
            log(f"run {run_id} ({state}, its worker gone) held pool slots: freed")
    return reaped


class ProcessRunLauncher(DefaultRunLauncher):
    """Dagster's default run launcher (a run worker process per run, started by the code
    server) that tells Dagster's run monitoring whether a run's worker still lives, by the
    run's :data:`WORKER_TAG`; CLI runs carry it too. A worker that cannot be checked from here
    (another host, or a run that has not tagged itself yet) counts as running."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        if worker_alive(run.tags.get(WORKER_TAG)) is False:
            return CheckRunHealthResult(WorkerStatus.FAILED, dead_worker_message(run))
        return CheckRunHealthResult(WorkerStatus.RUNNING)
