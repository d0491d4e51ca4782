"""Runs launched through the code location, as the UI and the schedule launch them, and followed
in the terminal until they end.

The code location is the project's ``workspace.yaml`` (location ``recs_pipeline``), loaded in a
code server as ``dagster dev`` loads it: each run is a run of one of its jobs with the
repository's origin, so the UI lists it on the job's Runs tab and can re-execute it, and its
worker loads the code (and ``recs.toml``) itself. A backfill is recorded as Dagster's
``dagster job backfill`` records one (*Overview → Backfills*), its runs tagged with its id.

Who starts the runs: the instance's run queue (``QueuedRunCoordinator`` in ``dagster.yaml``)
when a daemon serves it (``recs ui`` and ``recs daemon`` start one; its heartbeat is checked),
so the queue's limits apply (four runs at once, one per day). With no daemon alive, a command
that waits starts them itself through the instance's run launcher, within the same limits: at
most ``max_concurrent_runs`` at once and never a second run of a day that has one in progress.
``recs backfill`` without ``--wait`` queues its runs either way, and says so when no daemon is
there to start them.

While runs go, each finished step is printed (done, FAILED with its error's message, skipped),
with the steps' warnings and errors and failing checks; each run ends with its verdict.

A command's ``--timeout`` gives the following a deadline: past it, recs stops waiting, not the
runs. Those started go on (their code server outlives recs until they end); those not started
yet are handed to the run queue, except a run that waits for an earlier one to succeed (the
day after its window's ingest), which is cancelled: nothing would check that ingest first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import dagster as dg

from assets.lib.tables import CHOICE
from assets.platform.code_location import (
    LaunchError,
    Location,
    has_run_queue,
    location_in,
    open_workspace,
)
from cli.days import IN_PROGRESS, PARTITION_TAG, first_line, step_failure_text
from cli.environment import WORKSPACE

LOCATION = "recs_pipeline"
DAILY_JOB = "daily_recommendations"
RETRAIN_JOB = "retrain_days"
INGEST_JOB = "ingest_days"
# The queue's daemon counts as alive while its heartbeat is this recent.
DAEMON_HEARTBEAT_SECONDS = 60.0
POLL_SECONDS = 1.0


@dataclasses.dataclass
class Planned:
    """A run to start and follow: ``label`` prefixes its lines when several run at once."""

    label: str
    run: dg.DagsterRun
    day: dt.date | None = None  # the day whose lists it makes (None: an ingest)
    cursor: str | None = None
    started_at: float | None = None


def server_log() -> Path:
    """Where the code server this command starts, and the run workers it starts, write their
    own output (Dagster's console log of every event): the terminal gets the steps' lines."""
    path = Path(os.environ["DAGSTER_HOME"]) / "logs" / "recs-code-server.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _output_of_children_to(path: Path) -> Iterator[None]:
    """Processes started meanwhile inherit ``path`` as their stdout and stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


@contextlib.contextmanager
def code_location(instance: dg.DagsterInstance) -> Iterator[Location]:
    """The project's code location, loaded in a code server from ``workspace.yaml``."""
    with contextlib.ExitStack() as stack:
        with _output_of_children_to(server_log()):
            workspace = stack.enter_context(open_workspace(instance, WORKSPACE))
        error = workspace.get_code_location_error(LOCATION)
        if error is not None:
            raise LaunchError(f"the code location {LOCATION} does not load: {_load_error(error)}")
        yield location_in(instance, workspace, LOCATION)


def _load_error(error) -> str:
    """The innermost cause of a code location's load error (a setting's message, say)."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return first_line(error.message) or "see the UI's code location page"


def daemon_alive(instance: dg.DagsterInstance) -> bool:
    beat = instance.get_daemon_heartbeats().get("QUEUED_RUN_COORDINATOR")
    return beat is not None and time.time() - beat.timestamp < DAEMON_HEARTBEAT_SECONDS


def queue_served(instance: dg.DagsterInstance) -> bool:
    """Whether a submitted run starts without this process: a daemon serves the run queue,
    or the instance has no queue (its coordinator launches at once)."""
    return not has_run_queue(instance) or daemon_alive(instance)


def run_limit(instance: dg.DagsterInstance) -> int:
    """The queue's ``max_concurrent_runs`` (``concurrency.runs`` in ``dagster.yaml``)."""
    queue = instance.get_concurrency_config().run_queue_config
    limit = queue.max_concurrent_runs if queue is not None else 1
    return limit if limit and limit > 0 else 1


def submit(location: Location, planned: Sequence[Planned]) -> None:
    for item in planned:
        location.instance.submit_run(item.run.run_id, location.workspace)


# --- following runs ---------------------------------------------------------------------------


class StoppedWaiting(Exception):
    """The deadline passed while runs were still going: ``going`` (started, or queued for the
    daemon) go on; ``cancelled`` were never started, and will not be."""

    def __init__(self, going: Sequence[Planned], cancelled: Sequence[Planned]) -> None:
        super().__init__(f"stopped waiting for {len(going)} runs")
        self.going = list(going)
        self.cancelled = list(cancelled)


class Follower:
    """Starts runs and follows them, printing their steps. ``launch``: this process is the
    queue (no daemon serves it): each run is launched through the instance's run launcher,
    within the queue's limits; else each is submitted to the queue, which starts it.
    ``sequential``: one run at a time, in order, and none after a run that did not succeed
    (an ingest, then the chain that reads it). ``deadline`` (``time.monotonic()``): past it,
    :meth:`run` raises :class:`StoppedWaiting` instead of waiting on (the module says what
    becomes of the runs)."""

    def __init__(
        self,
        location: Location,
        planned: Sequence[Planned],
        *,
        launch: bool,
        on_end: Callable[[Planned, dg.DagsterRun], None],
        sequential: bool = False,
        deadline: float | None = None,
        out=sys.stdout,
        err=sys.stderr,
    ) -> None:
        self.location = location
        self.instance = location.instance
        self.pending = list(planned)
        self.active: list[Planned] = []
        self.launch = launch
        self.sequential = sequential
        if sequential:
            self.limit = 1
        else:
            self.limit = run_limit(self.instance) if launch else max(1, len(planned))
        self.on_end = on_end
        self.deadline = deadline
        self.several = len(planned) > 1 and not sequential
        self.out, self.err = out, err
        self.waiting_noted: set[str] = set()
        self.queued_noted: set[str] = set()

    def _print(self, item: Planned, text: str, error: bool = False) -> None:
        prefix = f"  {item.label} " if self.several else "  "
        print(prefix + text, file=self.err if error else self.out, flush=True)

    def run(self) -> None:
        try:
            while self.pending or self.active:
                self._start_what_fits()
                for item in list(self.active):
                    run = self._drain(item)
                    if run is not None and run.is_finished:
                        self._drain(item)
                        self.active.remove(item)
                        self.on_end(item, run)
                        if self.sequential and run.status != dg.DagsterRunStatus.SUCCESS:
                            self._cancel_pending(f"not started: run {run.run_id[:8]} failed")
                if (self.pending or self.active) and self._past_deadline():
                    raise StoppedWaiting(*self._hand_over())
                if self.pending or self.active:
                    time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            self._cancel_pending("not started: recs was interrupted")
            ids = ", ".join(item.run.run_id[:8] for item in self.active) or "none"
            print(
                f"\nstopped following; started runs go on ({ids}): recs status, or the UI",
                file=self.err,
            )
            raise

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _hand_over(self) -> tuple[list[Planned], list[Planned]]:
        """At the deadline: the runs not started yet go to the run queue (a sequential one is
        cancelled: it was to start only after the one before it succeeded). Returns the runs
        that go on and those cancelled."""
        going, cancelled = list(self.active), []
        if self.sequential:
            cancelled = list(self.pending)
            self._cancel_pending("not started: recs stopped waiting (--timeout) before its turn")
        else:
            for item in self.pending:
                self.instance.submit_run(item.run.run_id, self.location.workspace)
                going.append(item)
            self.pending = []
        return going, cancelled

    def _cancel_pending(self, why: str) -> None:
        """Runs created and never started: nothing would ever start them."""
        for item in self.pending:
            self.instance.report_run_canceled(item.run, why)
        self.pending = []

    def _start_what_fits(self) -> None:
        while self.pending and len(self.active) < self.limit:
            candidates = self.pending[:1] if self.sequential else self.pending
            item = next((p for p in candidates if not self.launch or not self._busy_day(p)), None)
            if item is None:
                return
            self.pending.remove(item)
            if self.launch:
                self.instance.launch_run(item.run.run_id, self.location.workspace)
            else:
                self.instance.submit_run(item.run.run_id, self.location.workspace)
            item.started_at = time.monotonic()
            self.active.append(item)

    def _busy_day(self, item: Planned) -> bool:
        """Another run of the item's day is in progress (the queue's one-run-per-day limit)."""
        key = item.run.tags.get(PARTITION_TAG)
        if key is None:
            return False
        ours = {p.run.run_id for p in self.active}
        others = [
            r
            for r in self.instance.get_run_records(
                dg.RunsFilter(tags={PARTITION_TAG: key}, statuses=_statuses(IN_PROGRESS))
            )
            if r.dagster_run.run_id not in ours and r.dagster_run.run_id != item.run.run_id
        ]
        if others and item.run.run_id not in self.waiting_noted:
            self.waiting_noted.add(item.run.run_id)
            self._print(item, f"waiting for run {others[0].dagster_run.run_id[:8]} of {key} to end")
        return bool(others)

    def _drain(self, item: Planned) -> dg.DagsterRun | None:
        """Print the run's new events; returns the run as it stands."""
        run = self.instance.get_run_by_id(item.run.run_id)
        while True:
            connection = self.instance.get_records_for_run(
                item.run.run_id, cursor=item.cursor, limit=500
            )
            for record in connection.records:
                self._event(item, record.event_log_entry)
            if connection.cursor:
                item.cursor = connection.cursor
            if not connection.has_more:
                break
        if (
            run is not None
            and run.status == dg.DagsterRunStatus.QUEUED
            and item.run.run_id not in self.queued_noted
        ):
            self.queued_noted.add(item.run.run_id)
            self._print(item, "queued: the daemon starts it when the queue's limits allow")
        return run

    def _event(self, item: Planned, entry) -> None:
        event = entry.dagster_event
        step = entry.step_key or "run"
        if event is None:
            abandoned = _ABANDONED.match(entry.user_message or "")
            if abandoned:
                upstream = re.sub(r"[\[\]']", "", abandoned["steps"])
                self._print(item, f"{step:<20} skipped: {upstream} {abandoned['what']}")
            elif entry.level >= logging.WARNING:
                level = logging.getLevelName(entry.level).lower()
                self._print(item, f"{step:<20} {level}: {entry.user_message}", error=True)
            return
        kind = event.event_type.name
        if kind == "RUN_START":
            self._print(item, f"run {item.run.run_id[:8]} started")
        elif kind == "STEP_SUCCESS":
            seconds = event.event_specific_data.duration_ms / 1000
            self._print(item, f"{step:<20} done in {seconds:.1f}s")
        elif kind == "STEP_FAILURE":
            message = step_failure_text(event.event_specific_data) or "failed"
            self._print(item, f"{step:<20} FAILED: {message}", error=True)
        elif kind == "STEP_SKIPPED":
            self._print(item, f"{step:<20} skipped")
        elif kind == "ASSET_MATERIALIZATION":
            # Model selection's choice (which model, and why, or whose earlier choice it
            # reuses): the one info line worth a terminal.
            choice = event.event_specific_data.materialization.metadata.get(CHOICE)
            if choice is not None:
                self._print(item, f"{step:<20} {choice.value}")
        elif kind == "ASSET_CHECK_EVALUATION":
            check = event.event_specific_data
            if not check.passed:
                self._print(
                    item,
                    f"{step:<20} check {check.check_name} failed"
                    f" ({check.severity.value.lower()}): {check.description or ''}",
                    error=check.severity == dg.AssetCheckSeverity.ERROR,
                )
        elif kind == "ENGINE_EVENT" and entry.level >= logging.ERROR:
            self._print(item, f"{step:<20} error: {first_line(entry.message)}", error=True)


# Dagster's line for a step whose upstream failed (dagster/_core/execution/plan/active.py).
_ABANDONED = re.compile(
    r"Dependencies for step \S+ (?P<what>failed|were not executed): (?P<steps>\[.*?\])"
)


def _statuses(names: Sequence[str]) -> list[dg.DagsterRunStatus]:
    return [dg.DagsterRunStatus(name) for name in names]
