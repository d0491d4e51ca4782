"""What each day came to: its scorer, the quality gate's verdict, whether it was published, and
when not, why (``recs status``, ``recs show``, the verdicts ``recs run`` and ``recs backfill``
print).

Read from the deployment itself: the warehouse's ``serving.recommendations`` (what is served,
and by which scorer) and ``serving.publications``, ``ml.metrics`` (the days evaluated), the
gate records in the artifact store (``model_evaluation/D/gate.json``: verdict, scores, the
model) and the instance's runs of each day (the newest one: in progress, failed at which step
and why). The embedded warehouse file is opened read-only, waiting for a running step's lock
as the steps do; ``recs show`` reads what applications read, ``published.duckdb``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import dagster as dg
import duckdb

from recs_pipeline.evaluation.gate import (
    FAILED,
    GATE_BASELINE,
    NO_TEST_USERS,
    POPULARITY_CHOSEN,
    GateResult,
)
from recs_pipeline.infra.artifacts import GATE, ArtifactError

PARTITION_TAG = "dagster/partition"
# The jobs whose runs make a day's lists (an ingest-only run of a day is not one).
DAY_JOBS = ("daily_recommendations", "retrain_days")
# A run failing here stopped at the gate (a blocking check, or publication refusing the model).
GATED_STEPS = ("model_evaluation", "recommendations")
IN_PROGRESS = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")


class NotPublished(RuntimeError):
    """No published list to read; the message says why and where to look."""


@dataclasses.dataclass(frozen=True)
class RunInfo:
    run_id: str
    job: str
    status: str  # DagsterRunStatus's value
    failed_step: str | None = None
    failure: str | None = None

    @property
    def short(self) -> str:
        return self.run_id[:8]

    @property
    def in_progress(self) -> bool:
        return self.status in IN_PROGRESS

    @property
    def failed(self) -> bool:
        return self.status == "FAILURE"

    def failure_text(self) -> str:
        where = f" at {self.failed_step}" if self.failed_step else ""
        return f"run {self.short} failed{where}: {self.failure or 'see the run in the UI'}"


@dataclasses.dataclass(frozen=True)
class DayState:
    day: dt.date
    users: dict[str, int]  # scorer -> users in the day's published lists (empty: unpublished)
    published_at: dt.datetime | None
    gate: GateResult | None
    run: RunInfo | None

    @property
    def published(self) -> bool:
        return bool(self.users)

    @property
    def scorer(self) -> str:
        """What scored the day's lists (the model, or popularity for all); unpublished: the
        model the gate judged."""
        models = {m: n for m, n in self.users.items() if m != GATE_BASELINE}
        if models:
            return max(models, key=models.get)
        if self.users:
            return GATE_BASELINE
        return self.gate.model if self.gate else "-"

    @property
    def fallback_users(self) -> int:
        return self.users.get(GATE_BASELINE, 0) if self.scorer != GATE_BASELINE else 0

    def gate_text(self) -> str:
        if self.gate is None:
            return "-"
        lift = self.gate.lift
        return self.gate.verdict + ("" if lift is None else f" (lift {lift:+.1%})")

    def why_not(self) -> str | None:
        """Why nothing is published for the day (None: it is)."""
        if self.published:
            return None
        run, gate = self.run, self.gate
        if run is not None and run.in_progress:
            return f"run {run.short} is {run.status.lower()}"
        if run is not None and run.failed and run.failed_step not in GATED_STEPS:
            return run.failure_text()
        if gate is not None and gate.verdict == FAILED:
            return (
                f"the quality gate blocked {self.day}: {gate.description}"
                f" ({gate.scores} on {gate.evaluated_users} test users)"
            )
        if run is not None and run.failed:
            return run.failure_text()
        if run is not None and run.status == "CANCELED":
            return f"run {run.short} was canceled"
        if run is not None:
            return f"run {run.short} ({run.job}) ended {run.status.lower()} without publishing"
        if gate is not None:
            return f"evaluated (gate {gate.verdict}) but never published: recs run --day {self.day}"
        return f"no run of {self.day} yet: recs run --day {self.day}"

    def published_text(self) -> str:
        if not self.published:
            return f"no: {self.why_not()}"
        users = sum(self.users.values())
        text = f"yes, {users} users"
        if self.fallback_users:
            text += f" ({self.fallback_users} on the popularity fallback)"
        if self.published_at is not None:
            text += f", at {self.published_at:%Y-%m-%d %H:%M} UTC"
        return text

    def note(self) -> str | None:
        """A published day whose newest run did not end well: the lists are an earlier run's."""
        run = self.run
        if not self.published or run is None:
            return None
        if run.in_progress:
            return f"run {run.short} is {run.status.lower()}; the lists shown are an earlier run's"
        if run.failed:
            return f"{run.failure_text()}; the lists served are an earlier run's"
        return None

    def verdict(self) -> str:
        """One line: the day, its scorer, the gate's verdict, published or why not."""
        head = f"{self.day}: scorer {self.scorer}, gate {self.gate_text()}; "
        if not self.published:
            return head + f"not published: {self.why_not()}"
        return head + "published: " + self.published_text().removeprefix("yes, ")


class Deployment:
    """The deployment a command operates: its warehouse, artifact store and instance, with this
    deployment's settings (``RECS_*``, then the project config file)."""

    def __init__(self, instance: dg.DagsterInstance | None = None) -> None:
        from resources import ArtifactStore, Warehouse
        from resources.deployment import deployment_defaults

        self.warehouse = Warehouse(**deployment_defaults("warehouse"))
        self.store = ArtifactStore(**deployment_defaults("artifacts")).store()
        self.instance = instance or dg.DagsterInstance.get()

    # --- the warehouse ---------------------------------------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection | None]:
        """A connection to the warehouse (read-only for the embedded file), None when there is
        no warehouse yet (nothing ingested)."""
        if self.warehouse.shared:
            with self.warehouse.get_connection() as con:
                yield con
            return
        path = Path(self.warehouse.database)
        if not path.exists():
            yield None
            return
        from recs_pipeline.infra.warehouse import wait_for_lock

        con = wait_for_lock(
            f"the warehouse {path}",
            lambda: duckdb.connect(str(path), read_only=True),
            timeout_seconds=self.warehouse.lock_timeout_seconds,
            log=_quiet,
        )
        try:
            yield con
        finally:
            con.close()

    # --- the days --------------------------------------------------------------------------

    def known_days(self) -> list[dt.date]:
        """Every day anything happened to: published, evaluated, gated or run (newest last)."""
        days: set[dt.date] = set()
        with self.read() as con:
            if con is not None:
                days |= set(_column(con, "SELECT DISTINCT as_of_date FROM serving.recommendations"))
                days |= set(_column(con, "SELECT DISTINCT as_of_date FROM ml.metrics"))
        with contextlib.suppress(OSError, ValueError):
            days |= {dt.date.fromisoformat(key) for key in self.store.partitions(GATE)}
        for record in self.instance.get_run_records(limit=500):
            run = record.dagster_run
            if run.job_name in DAY_JOBS and PARTITION_TAG in run.tags:
                with contextlib.suppress(ValueError):
                    days.add(dt.date.fromisoformat(run.tags[PARTITION_TAG]))
        return sorted(days)

    def states(self, days: Iterable[dt.date]) -> list[DayState]:
        days = sorted(set(days))
        if not days:
            return []
        users: dict[dt.date, dict[str, int]] = {day: {} for day in days}
        published_at: dict[dt.date, dt.datetime] = {}
        with self.read() as con:
            if con is not None:
                rows = _rows(
                    con,
                    """SELECT as_of_date, model, count(DISTINCT user_id)
                       FROM serving.recommendations WHERE as_of_date BETWEEN ? AND ?
                       GROUP BY 1, 2""",
                    [days[0], days[-1]],
                )
                for day, model, n in rows:
                    if day in users:
                        users[day][model] = n
                published_at = dict(
                    _rows(
                        con,
                        """SELECT as_of_date, max(published_at) FROM serving.publications
                           WHERE as_of_date BETWEEN ? AND ? GROUP BY 1""",
                        [days[0], days[-1]],
                    )
                )
        return [
            DayState(day, users[day], published_at.get(day), self.gate(day), self.latest_run(day))
            for day in days
        ]

    def state(self, day: dt.date) -> DayState:
        return self.states([day])[0]

    def gate(self, day: dt.date) -> GateResult | None:
        key = day.isoformat()
        try:
            if not self.store.has(GATE, key):
                return None
            return GateResult(**self.store.get(GATE, key))
        except (ArtifactError, OSError, TypeError, ValueError):
            return None

    def latest_run(self, day: dt.date) -> RunInfo | None:
        """The newest run that makes ``day``'s lists (not an ingest of the day alone)."""
        records = self.instance.get_run_records(
            dg.RunsFilter(tags={PARTITION_TAG: day.isoformat()}), limit=20
        )
        for record in records:
            run = record.dagster_run
            if run.asset_selection and {key.to_user_string() for key in run.asset_selection} <= {
                "raw_interactions"
            }:
                continue
            return run_info(self.instance, run)
        return None

    # --- the published lists, as applications read them ----------------------------------

    def published_list(self, user: str, day: dt.date | None) -> tuple[dt.date, list[tuple]]:
        """``user``'s list of ``day`` (default: the newest published day), read where
        applications read it: ``published.duckdb`` (a DuckLake: the lake). Rows: rank, item_id,
        score, model. :class:`NotPublished` says why there is none."""
        root = self.warehouse.serving_path()
        if root is None:
            with self.read() as con:
                return self._list_from(con, user, day, "the warehouse")
        database = root / "published.duckdb"
        if not database.exists():
            raise NotPublished(self.nothing_published(day, f"no {database}"))
        with duckdb.connect(str(database), read_only=True) as con:
            return self._list_from(con, user, day, str(database))

    def _list_from(self, con, user: str, day: dt.date | None, where: str):
        if con is None:
            raise NotPublished(self.nothing_published(day, "no warehouse yet"))
        if day is None:
            day = _scalar(con, "SELECT max(as_of_date) FROM serving.recommendations")
            if day is None:
                raise NotPublished(self.nothing_published(None, f"no day in {where}"))
        elif not _scalar(
            con, "SELECT count(*) FROM serving.recommendations WHERE as_of_date = ?", [day]
        ):
            raise NotPublished(self.nothing_published(day, f"no lists of {day} in {where}"))
        rows = _rows(
            con,
            """SELECT rank, item_id, score, model FROM serving.recommendations
               WHERE as_of_date = ? AND user_id = ? ORDER BY rank""",
            [day, user],
        )
        if not rows:
            users, example = _rows(
                con,
                """SELECT count(DISTINCT user_id), min(user_id) FROM serving.recommendations
                   WHERE as_of_date = ?""",
                [day],
            )[0]
            raise NotPublished(
                f"no list for user {user!r} on {day}: {users} users have one (e.g. {example!r});"
                " users with no interaction in the day's training window get none"
            )
        return day, rows

    def nothing_published(self, day: dt.date | None, detail: str) -> str:
        if day is not None:
            state = self.state(day)
            why = state.why_not() or "published since: read it again"
            return f"nothing published for {day} ({detail}): {why}. The latest days: recs status"
        known = self.known_days()
        if not known:
            why = "no day has been run yet (recs run, or recs demo)"
        else:
            newest = self.state(known[-1])
            why = f"the newest day, {newest.day}: {newest.why_not() or 'published'}"
        return f"nothing published yet ({detail}): {why}. The latest days: recs status"

    def fallback_reason(self, state: DayState) -> str:
        """Why a list is popularity's."""
        gate = state.gate
        if gate is not None and gate.verdict in (NO_TEST_USERS, POPULARITY_CHOSEN):
            return gate.description or gate.verdict
        return (
            "the popularity fallback: the model does not know this user (they arrived in the"
            " test period)"
        )


def run_info(instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunInfo:
    status = run.status.value
    if status != "FAILURE":
        return RunInfo(run.run_id, run.job_name, status)
    failures = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=1
    ).records
    if failures:
        entry = failures[0].event_log_entry
        message = step_failure_text(entry.dagster_event.event_specific_data)
        return RunInfo(
            run.run_id, run.job_name, status, entry.step_key, message or entry.user_message
        )
    ends = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE, limit=1
    ).records
    message = ends[0].event_log_entry.message if ends else None
    return RunInfo(run.run_id, run.job_name, status, None, first_line(message))


# A class name ending in Error, Exception or Failure, with its module path: Dagster's own
# ``dagster._core.definitions.events.Failure`` (the gate's stop) included.
_ERROR_CLASS = re.compile(r"^(?:[A-Za-z_]\w*\.)*(?:[A-Z]\w*)?(?:Error|Exception|Failure)\w*: ")


def step_failure_text(data) -> str | None:
    """A failed step's reason in one line, from its ``STEP_FAILURE`` data: a ``dg.Failure``'s
    sentence (the quality gate's stop), else the error the step's code raised. Dagster wraps
    that error in its own, which only names the step ("Error occurred while executing op
    ...:") and has it as its cause. None when the event holds neither."""
    if data.user_failure_data is not None and data.user_failure_data.description:
        return first_line(data.user_failure_data.description)
    error = data.error
    while error is not None and error.cause is not None and _DAGSTER_ERROR.match(error.cls_name):
        error = error.cause
    return first_line(error.message) if error is not None else None


# Dagster's errors around the one a step's code raised (in its body, an input's loading, an
# output's storing, a resource).
_DAGSTER_ERROR = re.compile(r"^Dagster\w*Error$")


def first_line(message: str | None) -> str | None:
    """An error's message without its class name and traceback: its first line (with the next
    when the first ends in a colon, as a blocking check's does)."""
    if not message:
        return message
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    text = _ERROR_CLASS.sub("", lines[0])
    if text.endswith(":") and len(lines) > 1:
        text = f"{text} {lines[1]}"
    return text


_quiet = logging.getLogger("recs.cli.warehouse")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[tuple]:
    """The rows, or none where the table does not exist yet (an older or a new warehouse)."""
    try:
        return con.execute(sql, params or []).fetchall()
    except duckdb.CatalogException:
        return []


def _column(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list:
    return [row[0] for row in _rows(con, sql, params) if row[0] is not None]


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    rows = _rows(con, sql, params)
    return rows[0][0] if rows else None
