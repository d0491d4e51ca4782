"""The project's SQLite event log keeps each database open (assets/platform/event_log.py; issue 28,
a history ingest's cost per day).

Dagster's opened a new engine and connection for every transaction, two or three per asset
event. What must hold besides: every event is stored and read back as before, by this process and
by others writing at the same time; the UI's watch of a run still sees its events while it runs
(they now sit in the run's write-ahead log); a forked process opens its own connections."""

import multiprocessing
import sqlite3
import subprocess
import sys
import threading

import dagster as dg
import sqlalchemy as db

from assets.platform.event_log import OpenSqliteEventLogStorage, log_events
from tests.daemon_support import PROJECT_ROOT, instance_environment, write_instance

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01")


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def daily(context: dg.AssetExecutionContext) -> None:
    for day in context.partition_keys:
        context.log_event(dg.AssetMaterialization(context.asset_key, partition=day))


@dg.asset(
    partitions_def=DAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[dg.AssetCheckSpec("rows", asset="checked_days")],
)
def checked_days(context: dg.AssetExecutionContext):
    """As a ranged ingest: Dagster's materialization of each day, then a check evaluation per
    day (assets/ingest.py)."""
    yield dg.MaterializeResult(check_results=[dg.AssetCheckResult(check_name="rows", passed=True)])
    days = context.partition_keys
    log_events(context, [dg.AssetCheckEvaluation(asset_key=context.asset_key, check_name="rows",
                                                 passed=True, partition=day) for day in days])  # fmt: skip


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def recorded_days() -> None:
    """Its days recorded by Dagster, a materialization each, as for any ranged step."""


def ranged_run(instance, days: int, asset=daily) -> dg.ExecuteInProcessResult:
    """One run over ``days`` partitions, a materialization per day (as a ranged ingest)."""
    keys = DAYS.get_partition_keys()[:days]
    return dg.materialize(
        [asset],
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        },
    )


class Connections:
    """How many SQLite connections this process opens to the event log's databases while the
    block runs (the instance's run and schedule storages are Dagster's own)."""

    def __init__(self, folder):
        self.folder, self.count = f"{folder}/", 0

    def __enter__(self):
        db.event.listen(db.engine.Engine, "connect", self._count)
        return self

    def _count(self, dbapi_connection, _record):
        [(_, _, path)] = dbapi_connection.execute("PRAGMA database_list").fetchall()
        self.count += path.startswith(self.folder)

    def __exit__(self, *_):
        db.event.remove(db.engine.Engine, "connect", self._count)


def test_a_ranged_run_opens_each_database_once(tmp_path):
    home = tmp_path / "home"
    write_instance(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.event_log_storage, OpenSqliteEventLogStorage)
        with Connections(home / "history" / "runs") as opened:
            result = ranged_run(instance, 60)
        assert result.success
        # 60 materializations and 60 planned ones into two databases (the run's, the index):
        # each checked once (up to two connections), then one connection kept open. Dagster's
        # own storage opened 437 connections.
        assert opened.count <= 6, opened.count
        assert len(instance.get_materialized_partitions(daily.key)) == 60


WRITER = """
import sys
import dagster as dg
from tests.test_event_log import DAGS_KEY
with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    for n in range(int(sys.argv[3])):
        instance.report_runless_asset_event(
            dg.AssetMaterialization(DAGS_KEY, partition=f"{sys.argv[2]}-{n}")
        )
"""
DAGS_KEY = dg.AssetKey("written_by_many")


class Commits(Connections):
    """How many transactions this process commits to the event log's databases."""

    def __enter__(self):
        db.event.listen(db.engine.Engine, "commit", self._count)
        return self

    def _count(self, conn):
        self.count += str(conn.engine.url.database).startswith(self.folder)

    def __exit__(self, *_):
        db.event.remove(db.engine.Engine, "commit", self._count)


def test_a_ranged_runs_days_are_committed_a_batch_at_a_time(tmp_path):
    """A day costs a planned materialization, a materialization and a check evaluation; Dagster
    committed each statement of each on its own (two or three a day). They are now written in
    batches, one transaction per database, and every one is recorded as before."""
    home = tmp_path / "home"
    write_instance(home)
    days = 60
    with dg.DagsterInstance.from_config(str(home)) as instance:
        with Commits(home / "history" / "runs") as commits:
            result = ranged_run(instance, days, checked_days)
        assert result.success
        # The run's own events (start, step, success: about 15) are still one at a time; the
        # 3 x 60 of its days are 3 batches. Before, 437 commits.
        assert commits.count < days, commits.count
        assert len(instance.get_materialized_partitions(checked_days.key)) == days
        planned = instance.get_records_for_run(
            result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        ).records
        assert len(planned) == days
        check = dg.AssetCheckKey(checked_days.key, "rows")
        history = instance.event_log_storage.get_asset_check_execution_history(check, limit=1000)
        evaluated = {record.partition for record in history if record.status.value == "SUCCEEDED"}
        assert evaluated >= set(DAYS.get_partition_keys()[:days])


def test_a_ranged_runs_materializations_are_one_insert_on_postgres(tmp_path, postgres_server):
    """A shared (PostgreSQL) instance stored each day's materialization in an INSERT and a
    transaction of its own, a round trip each. Dagster's PostgreSQL event log writes a batch of
    them in one INSERT, but only where the instance's event batch size is above 0, which it is
    now there too (an asset that does nothing, over 2,001 days: 70-87 s before, 30 s after)."""
    env = postgres_server.environment(postgres_server.create_database("event_batches"))
    home = tmp_path / "home"
    write_instance(home, env)
    days = 60
    inserts = []

    def count(_conn, _cursor, statement, *_):
        if statement.lstrip().upper().startswith("INSERT INTO EVENT_LOGS"):
            inserts.append(statement)

    with instance_environment(env), dg.DagsterInstance.from_config(str(home)) as instance:
        db.event.listen(db.engine.Engine, "before_cursor_execute", count)
        try:
            result = ranged_run(instance, days, recorded_days)
        finally:
            db.event.remove(db.engine.Engine, "before_cursor_execute", count)
        assert result.success
        assert len(instance.get_materialized_partitions(recorded_days.key)) == days
    # Each day's planned materialization is still an INSERT of its own (Dagster's PostgreSQL
    # storage batches materializations and observations only), and the run's own events (about
    # 15); the days' materializations are one. Before, 60 more.
    assert len(inserts) < days + 30, len(inserts)


def test_a_batch_that_fails_is_stored_nowhere(tmp_path):
    """All of a batch or none of it: Dagster then stores the batch's events one by one (its
    handle_new_event), so a half-stored batch would be stored twice."""
    import time

    import pytest
    from dagster._core.events.log import EventLogEntry

    home = tmp_path / "home"
    write_instance(home)
    run_id = "0123abcd-0000-4000-8000-000000000003"

    def entry(message):
        return EventLogEntry(error_info=None, level="INFO", user_message=message, run_id=run_id,
                             timestamp=time.time())  # fmt: skip

    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        with pytest.raises(KeyError), storage.one_transaction():
            storage.store_event(entry("first"))
            instance.report_runless_asset_event(dg.AssetMaterialization(DAGS_KEY, partition="a"))
            raise KeyError("a failure mid-batch")
        assert storage.get_logs_for_run(run_id) == []
        assert not instance.get_materialized_partitions(DAGS_KEY)
        storage.store_event_batch([entry("second"), entry("third")])
        storage.store_event(entry("fourth"))
        messages = [e.message for e in storage.get_logs_for_run(run_id)]
        assert messages == ["second", "third", "fourth"]
        # A batch inside a batch is refused before it writes anything; the outer one goes on.
        with storage.one_transaction():
            storage.store_event(entry("fifth"))
            with pytest.raises(RuntimeError, match="does not nest"), storage.one_transaction():
                storage.store_event(entry("never"))
        assert [e.message for e in storage.get_logs_for_run(run_id)][-1] == "fifth"


def test_processes_writing_at_once_each_see_every_event(tmp_path):
    """Three processes, this one among them, write the same index at once while each keeps its
    connection open: no write is lost, no process is locked out, the file stays sound."""
    home = tmp_path / "home"
    write_instance(home)
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(home), f"w{n}", "150"],
            cwd=PROJECT_ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            for n in range(150):
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(DAGS_KEY, partition=f"me-{n}")
                )
            for writer in writers:
                _, err = writer.communicate(timeout=120)
                assert writer.returncode == 0, err
            # This process's open connection sees what the others committed.
            assert len(instance.get_materialized_partitions(DAGS_KEY)) == 450
    finally:
        for writer in writers:  # a failure above leaves none running
            if writer.poll() is None:
                writer.kill()
                writer.wait()
    index = home / "history" / "runs" / "index.db"
    assert sqlite3.connect(index).execute("PRAGMA integrity_check").fetchone() == ("ok",)


SLOW_RUN = """
import sys, time
from pathlib import Path
import dagster as dg

@dg.asset
def waits_to_be_seen():
    # Fails unless the watching process saw this step start while the run is still going.
    seen = Path(sys.argv[2])
    deadline = time.time() + 60
    while not seen.exists():
        if time.time() > deadline:
            raise RuntimeError("the watcher never saw the step start")
        time.sleep(0.1)

with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    job = dg.Definitions(assets=[waits_to_be_seen]).resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(instance=instance, run_id=sys.argv[3]).success
"""


def test_the_uis_watch_of_a_run_sees_its_events_while_it_runs(tmp_path):
    """The run page's live log: another process's run events reach a watcher before the run
    ends, though they sit in the run's write-ahead log rather than its database file."""
    home = tmp_path / "home"
    write_instance(home)
    seen, run_id = tmp_path / "seen", "0123abcd-0000-4000-8000-000000000001"
    events: list[str] = []
    done = threading.Event()

    def watched(entry, _cursor):
        if entry.dagster_event is not None:
            events.append(entry.dagster_event.event_type_value)
            if entry.dagster_event.event_type_value == "STEP_START":
                seen.touch()
            if entry.dagster_event.event_type_value in ("PIPELINE_SUCCESS", "PIPELINE_FAILURE"):
                done.set()

    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.watch_event_logs(run_id, None, watched)
        run = subprocess.run(
            [sys.executable, "-c", SLOW_RUN, str(home), str(seen), run_id],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert done.wait(30), events
    assert events.index("STEP_START") < events.index("PIPELINE_SUCCESS")


def test_a_forked_process_opens_its_own_databases(tmp_path):
    """A process forked from one with open databases writes through its own connections, and the
    parent's stay usable."""
    home = tmp_path / "home"
    write_instance(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(DAGS_KEY, partition="before"))
        storage = instance.event_log_storage
        context = multiprocessing.get_context("fork")
        queue = context.Queue()

        def child():
            for n in range(20):
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(DAGS_KEY, partition=f"child-{n}")
                )
            queue.put((len(storage._inherited), list(storage._engines)))

        process = context.Process(target=child)
        process.start()
        try:
            inherited, opened = queue.get(timeout=60)
            process.join(60)
        finally:
            if process.is_alive():  # a failure above leaves it not running
                process.kill()
                process.join()
        assert process.exitcode == 0
        assert inherited == 1 and opened  # the parent's engines set aside, its own opened
        instance.report_runless_asset_event(dg.AssetMaterialization(DAGS_KEY, partition="after"))
        assert len(instance.get_materialized_partitions(DAGS_KEY)) == 22
    index = home / "history" / "runs" / "index.db"
    assert sqlite3.connect(index).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_failed_transaction_leaves_no_old_snapshot_in_the_kept_connection(tmp_path):
    """A read left unfinished by an exception (its result kept alive by the traceback) must not
    pin the kept connection to an old snapshot: after another writer has moved the log on, this
    process's next write would fail with "database is locked"."""
    home = tmp_path / "home"
    write_instance(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for n in range(20):
            instance.report_runless_asset_event(dg.AssetMaterialization(DAGS_KEY, partition=f"{n}"))
        kept = []
        try:
            with instance.event_log_storage.index_connection() as conn:
                kept.append(conn.execute(db.text("SELECT id FROM event_logs")))
                kept[-1].fetchone()  # the read has begun and is left unfinished
                raise KeyError("a failure mid-transaction")
        except KeyError:
            pass
        other = sqlite3.connect(home / "history" / "runs" / "index.db", timeout=5)
        other.execute("INSERT INTO event_logs (run_id, event) VALUES ('another', '')")
        other.commit()
        other.execute("DELETE FROM event_logs WHERE run_id = 'another'")
        other.commit()
        other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        other.close()
        instance.report_runless_asset_event(dg.AssetMaterialization(DAGS_KEY, partition="next"))
        assert len(instance.get_materialized_partitions(DAGS_KEY)) == 21


def test_a_database_the_process_creates_commits_without_waiting_for_the_disk(tmp_path):
    """The kept connection of a run's new database is in WAL mode with synchronous=NORMAL, as is
    the index's (it was opened before Dagster switched the new file to WAL)."""
    home = tmp_path / "home"
    write_instance(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert ranged_run(instance, 2).success
        storage = instance.event_log_storage
        for shard in list(storage._engines):
            with storage._engine(shard).connect() as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1, shard  # NORMAL


def test_a_watch_woken_before_a_commit_is_visible_still_sees_it(tmp_path):
    """The UI's live log stopped short of a run's end under load (the previous test failed so in
    a fresh-clone run): the write of a transaction's last page to the log wakes the watch
    before SQLite publishes the transaction (in the -shm file, memory-mapped: no file event),
    and after a run's last event no write follows. A watch now reads again shortly after the
    last write that woke it. Here the wake-up comes first and the event is stored after it,
    with no file event of its own."""
    import time

    from dagster._core.events.log import EventLogEntry

    from assets.platform.event_log import SETTLE_SECONDS, WalWatchdog

    home = tmp_path / "home"
    write_instance(home)
    run_id = "0123abcd-0000-4000-8000-000000000002"
    seen: list[str] = []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, OpenSqliteEventLogStorage)
        watchdog = WalWatchdog(storage, run_id, lambda entry, _c: seen.append(entry.message), None)
        watchdog.on_modified(None)  # woken: nothing to read yet
        storage.store_event(
            EventLogEntry(error_info=None, level="INFO", user_message="the run's last event",
                          run_id=run_id, timestamp=time.time())
        )  # fmt: skip
        deadline = time.monotonic() + 10 * SETTLE_SECONDS
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
        watchdog.stop()
    assert seen == ["the run's last event"]
