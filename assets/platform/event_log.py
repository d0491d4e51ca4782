"""The SQLite event log of the project's instance: Dagster's, with its databases kept open.

Dagster's ``SqliteEventLogStorage`` makes a new engine for every transaction: two or three per
asset event (the run's database, the index's mirror, a check's execution row). Each new engine
compiles its statements anew and reflects the index's schema again, and when a database's last
connection closes, SQLite checkpoints its write-ahead log into the file with an fsync. A
partition per day makes that a cost per day: a 2,001-day history ingest takes about 7 times as
long on it as here (docs/benchmarks/pipeline.md).

Here a storage keeps one engine per database and process, holding one connection open, for the
few databases in use (the index, the running run's, those the UI reads; the least recently used
is closed beyond :data:`KEPT_DATABASES`). What stays Dagster's: the schema, the statements, the
storage's lock, SQLite's locking between processes. What changes:

- A commit of a database in WAL mode (every database Dagster creates) no longer waits for the
  disk (``synchronous=NORMAL``, SQLite's advice for WAL): the log stays consistent whatever
  happens; a power cut, not a crash, can lose the last events before the next checkpoint. A
  database in another journal mode keeps SQLite's default.
- SQLite checkpoints a log every 1,000 pages, no longer at every close, and while any Dagster
  process runs, ``index.db-wal`` and each open run's ``-wal`` stay beside their database (an
  open connection holds a shared lock on it). Copy the home with every Dagster process stopped,
  or with ``sqlite3 index.db ".backup copy.db"``: the ``.db`` files alone miss the latest events.
  Dagster's watch of a run (the UI's live run page) looks at ``<run>.db`` only; the storage's
  :class:`WalWatchdog` looks at its log too, and reads again shortly after the last write it
  saw (a write can wake it before SQLite has published the transaction).
- The events Dagster makes in batches (a run's planned materializations, a ranged step's
  materializations) and the check evaluations a ranged ingest logs (:func:`log_events`) are
  written :data:`EVENT_BATCH` to a transaction per database instead of two or three commits
  an event (:meth:`OpenSqliteEventLogStorage.one_transaction`): 60 days of a ranged run commit
  31 transactions instead of 448 (tests/test_event_log.py).
- A transaction that fails invalidates its connection: a result kept alive by the exception's
  traceback would otherwise hold an old snapshot in the kept connection, and its next write
  would fail with "database is locked".
- A forked process opens its own connections and sets the parent's aside without closing them
  (SQLite forbids using a connection across ``fork``, closing included); multiprocessing's
  children end with ``os._exit``, so they are never closed there.
- ``wipe`` closes this process's connections before Dagster deletes the run databases; other
  Dagster processes must be stopped for a wipe, as they must for Dagster's.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import sqlalchemy as db
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
    SqliteEventLogStorageWatchdog,
)
from dagster._serdes import ConfigurableClassData
from watchdog.observers import Observer

# The index, this run's database and a few runs the UI shows.
KEPT_DATABASES = 8
# Events per transaction of a batch (OpenSqliteEventLogStorage.one_transaction): about 0.1 s of
# the index's write lock.
EVENT_BATCH = 500
# How long after a write that woke it a run's watch reads the run's events again (WalWatchdog).
SETTLE_SECONDS = 0.5


def _commit_without_waiting_for_the_disk(dbapi_connection, _record) -> None:
    (mode,) = dbapi_connection.execute("PRAGMA journal_mode").fetchone()
    if mode.lower() == "wal":
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")


class WalWatchdog(SqliteEventLogStorageWatchdog):
    """Dagster's watch of one run's events, woken by a write to the run's log file as well as
    to its database, which reads the run's events again :data:`SETTLE_SECONDS` after the last
    write it was woken by.

    The write of a transaction's last page to the log wakes the watch, but the transaction is
    visible only once SQLite has updated the log's index, in the ``-shm`` file: memory-mapped,
    so that update wakes nobody. A watch that read in between missed the run's last events
    until some later write; after a run's last event there is none, so the UI's live log could
    stop short of the run's end (a watcher was seen still without ``PIPELINE_SUCCESS`` 30 s
    after its run had ended)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._patterns = [self._log_path, f"{self._log_path}-wal"]
        # The watch's thread and the settle timer; re-entered when a read ends the watch.
        self._reading = threading.RLock()
        self._settle = threading.Lock()
        self._timer: threading.Timer | None = None
        self._writes = self._settled_writes = 0
        self._stopped = False

    def _read(self) -> None:
        with self._reading:
            if not self._stopped:
                self._process_log()

    def on_modified(self, event) -> None:
        self._read()
        with self._settle:
            self._writes += 1
            if self._timer is None and not self._stopped:
                self._arm()

    def _arm(self) -> None:
        self._settled_writes = self._writes
        self._timer = threading.Timer(SETTLE_SECONDS, self._read_settled)
        self._timer.daemon = True
        self._timer.start()

    def _read_settled(self) -> None:
        self._read()
        with self._settle:
            # Woken again while waiting: read once more after that write too.
            if self._writes != self._settled_writes and not self._stopped:
                self._arm()
            else:
                self._timer = None

    def stop(self) -> None:
        """No read after this one returns (the watch ended, or the storage is disposed)."""
        with self._settle:
            self._stopped = True
            if self._timer is not None:
                self._timer.cancel()
        with self._reading:
            pass  # a read under way has ended


class OpenSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log with each database's connection kept open (module docstring)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, db.engine.Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        self._inherited: list[OrderedDict] = []
        self._engines_lock = threading.Lock()
        self._present: set = set()  # tables and columns found in the index
        self._batch = threading.local()  # this thread's open batch (one_transaction)
        super().__init__(base_dir, inst_data=inst_data)

    def _engine(self, shard: str) -> db.engine.Engine:
        with self._engines_lock:
            if self._engines_pid != os.getpid():
                self._inherited.append(self._engines)  # the parent's: kept, never closed here
                self._engines, self._engines_pid = OrderedDict(), os.getpid()
            engine = self._engines.get(shard)
            if engine is None:
                engine = db.create_engine(
                    self.conn_string_for_shard(shard),
                    pool_size=1,
                    connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
                )
                db.event.listen(engine, "connect", _commit_without_waiting_for_the_disk)
                self._engines[shard] = engine
                while len(self._engines) > KEPT_DATABASES:
                    self._engines.popitem(last=False)[1].dispose()
            self._engines.move_to_end(shard)
            return engine

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> OpenSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[db.engine.Connection]:
        # As Dagster's: one transaction under the storage's lock, a database created on first
        # use. Within this thread's batch (one_transaction), the batch's transaction.
        batch = getattr(self._batch, "transactions", None)
        if batch is not None:
            if shard not in batch:
                opened = self._transaction(shard)
                batch[shard] = (opened, opened.__enter__())
            yield batch[shard][1]
            return
        with self._db_lock, self._transaction(shard) as conn:
            yield conn

    @contextmanager
    def _transaction(self, shard: str) -> Iterator[db.engine.Connection]:
        engine = self._engine(shard)
        if shard not in self._initialized_dbs:
            self._initdb(engine)
            # Its connection was opened before _initdb set WAL mode: reopen it in WAL, so
            # that it commits without waiting for the disk.
            engine.dispose()
            self._initialized_dbs.add(shard)
        with engine.connect() as conn:
            try:
                with conn.begin():
                    yield conn
            except BaseException:
                conn.invalidate()  # module docstring: no old snapshot kept open
                raise

    @contextmanager
    def one_transaction(self) -> Iterator[None]:
        """What this thread stores inside is written in one transaction per database, each
        committed at the end (the index first), or, on an error, none of it.

        Dagster commits every statement of every event on its own: a materialization, a
        planned materialization or a check evaluation costs two or three commits, a ranged
        run's days thousands. Keep a batch to about :data:`EVENT_BATCH` events: it holds the
        index's write lock, which every Dagster process of the home waits for."""
        if getattr(self._batch, "transactions", None) is not None:
            # Refused before anything is written: inside a batch, a failed inner one would be
            # half written when Dagster stores its events again one by one.
            raise RuntimeError("one_transaction does not nest")
        with self._db_lock:
            self._batch.transactions = {}
            try:
                yield
            except BaseException as error:
                self._end_batch(type(error), error, error.__traceback__)
                raise
            self._end_batch(None, None, None)

    def _end_batch(self, *exc_info) -> None:
        transactions, self._batch.transactions = self._batch.transactions, None
        # In WAL mode a commit fails only on an I/O error (the first write took the lock): the
        # rest are then rolled back, and Dagster stores the batch again event by event, so a
        # database committed before the failure holds those events twice. The index first,
        # the database every process writes.
        order = sorted(transactions, key=lambda shard: shard != INDEX_SHARD_NAME)
        failure = None
        for shard in order:
            opened, _ = transactions[shard]
            try:
                opened.__exit__(*exc_info)
            except BaseException as error:  # this commit failed: roll back the rest
                failure = failure or error
                exc_info = (type(error), error, error.__traceback__)
        if failure is not None:
            raise failure

    def store_event_batch(self, events) -> None:
        # What Dagster sends in batches (a run's planned materializations, a ranged step's
        # materializations; instance_storage.ProjectInstance turns batches on): each event
        # stored as Dagster stores it, the batch in one transaction per database.
        with self.one_transaction():
            for event in events:
                self.store_event(event)

    # Dagster asks the index's schema for every asset event (a table for its tags, a column for
    # its latest materialization) through a new engine each time; a table or column, once
    # there, stays.
    def has_table(self, table_name: str) -> bool:
        if table_name not in self._present:
            # Not under the storage's lock: Dagster asks while it holds it.
            with self._engine(INDEX_SHARD_NAME).connect() as conn:
                if not conn.dialect.has_table(conn, table_name):
                    return False
            self._present.add(table_name)
        return True

    def _has_asset_key_col_on_connection(self, conn, column_name: str) -> bool:
        if ("asset_keys", column_name) not in self._present:
            if not super()._has_asset_key_col_on_connection(conn, column_name):
                return False
            self._present.add(("asset_keys", column_name))
        return True

    def watch(self, run_id: str, cursor: str | None, callback) -> None:
        # Dagster's watch, with the watchdog that also sees the run's write-ahead log.
        if not self._obs:
            self._obs = Observer()
            self._obs.start()
        watchdog = WalWatchdog(self, run_id, callback, cursor)
        self._watchers[run_id][callback] = (
            watchdog,
            self._obs.schedule(watchdog, self._base_dir, recursive=True),
        )

    def _close_databases(self) -> None:
        with self._db_lock, self._engines_lock:
            if self._engines_pid == os.getpid():
                for engine in self._engines.values():
                    engine.dispose()
            else:
                self._inherited.append(self._engines)
            self._engines = OrderedDict()
            self._engines_pid = os.getpid()

    def wipe(self) -> None:
        self._close_databases()
        super().wipe()

    def end_watch(self, run_id: str, handler) -> None:
        watched = self._watchers[run_id].get(handler)
        super().end_watch(run_id, handler)
        if watched is not None:
            watched[0].stop()

    def dispose(self) -> None:
        super().dispose()  # stops the watch first, which could open a database again
        for handlers in list(self._watchers.values()):
            for watchdog, _ in list(handlers.values()):
                watchdog.stop()  # and its settle timer
        self._close_databases()


def log_events(context, events: list) -> None:
    """Log a step's ``events`` (check evaluations, materializations: ``context.log_event``'s),
    :data:`EVENT_BATCH` to a transaction where the instance's event log is the project's SQLite
    one, one by one elsewhere. Dagster batches only the events it makes itself."""
    storage = context.instance.event_log_storage
    batched = isinstance(storage, OpenSqliteEventLogStorage)
    for start in range(0, len(events), EVENT_BATCH):
        with storage.one_transaction() if batched else nullcontext():
            for event in events[start : start + EVENT_BATCH]:
                context.log_event(event)
