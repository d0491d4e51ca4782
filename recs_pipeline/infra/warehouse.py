"""Warehouse helpers: connect, create the schema, run writes in a transaction, replace one
partition atomically.

Two backends run the same SQL (docs/deploying.md):

- the embedded DuckDB file (the default): one read-write process at a time;
- DuckLake (:func:`connect_lake`): a catalog database and Parquet data files in a folder or on
  object storage. With a PostgreSQL catalog (shared by several machines) any number of
  processes read and write; each commit is a snapshot, and readers see whole snapshots.
  Commits are optimistic: two transactions that replace partitions of one table at the same
  time conflict (DuckLake refuses an insert into a table another commit deleted from, even
  another partition), and :func:`transaction` retries the loser as a whole. With a DuckDB
  catalog file (one machine) the file has DuckDB's lock, as the embedded file does: one
  writing process, or several reading ones, at a time; the others wait for it
  (:func:`wait_for_lock`).

Every function takes an open ``duckdb.DuckDBPyConnection``; the caller decides how long it lives
(never across model training: DuckDB allows one read-write process per file).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import duckdb

from recs_pipeline.schema import PARTITION_COLUMN, TABLES, VIEWS
from recs_pipeline.schema import columns as table_columns

# The name the lake is attached under; ``USE lake`` makes the project's schema.table names
# resolve in it, so the SQL is the same on both backends.
LAKE = "lake"
# DuckLake's wheels (duckdb-extension-*), pinned to duckdb's version in pyproject.toml: LOADed
# from site-packages, so nothing is downloaded (DuckDB 1.5 cannot install extensions offline).
EXTENSION_PACKAGES = {
    "ducklake": "duckdb_extension_ducklake",
    "postgres_scanner": "duckdb_extension_postgres_scanner",
    "httpfs": "duckdb_extension_httpfs",
}
# Data paths served by httpfs rather than the local filesystem.
_REMOTE = re.compile(r"^(s3|s3a|gcs|gs|r2|https?)://", re.IGNORECASE)
# DuckLake's words for a commit that lost to a concurrent one (the catalog's snapshot moved on
# and the changes overlap: "Transaction conflict - attempting to insert into table with index
# "12" - but another transaction has deleted from it").
# Two processes attaching a new lake at once both create its catalog tables; the loser fails
# with PostgreSQL's duplicate key or existing relation ("Failed to initialize DuckLake: … duplicate
# key value violates unique constraint", "… relation "ducklake_metadata" already exists") and
# finds the lake when it attaches again.
_CONFLICT = re.compile(
    r"Transaction conflict|Failed to initialize DuckLake:.*(duplicate key|already exists)",
    re.IGNORECASE | re.DOTALL,
)

# DuckDB's message when another process holds a database file (the embedded warehouse, or a
# DuckLake's DuckDB catalog file): 'Could not set lock on file "…": Conflicting lock is held in
# /usr/bin/python3 (PID 1234) by user …'.
_LOCK_CONFLICT = re.compile(r"Could not set lock on file|Conflicting lock is held")
_HOLDER = re.compile(r"Conflicting lock is held in .*?\(PID \d+\)")
# How long, in all, a process waits for another to let go of a DuckDB file it needs (the
# Warehouse resource's lock_timeout_seconds; connect_lake's default for applications).
LOCK_TIMEOUT_SECONDS = 120.0

log = logging.getLogger(__name__)

T = TypeVar("T")


class WarehouseConflict(RuntimeError):
    """A transaction still conflicted with concurrent writers after every allowed retry."""


class WarehouseLockTimeout(RuntimeError):
    """Another process kept a DuckDB file locked for the whole allowed wait."""


def lock_holder(error: BaseException) -> str | None:
    """DuckDB's words naming the process that holds the file's lock ("Conflicting lock is held
    in /usr/bin/python3 (PID 1234)"), or None when ``error`` is not a lock conflict."""
    message = str(error)
    if not isinstance(error, duckdb.IOException) or not _LOCK_CONFLICT.search(message):
        return None
    found = _HOLDER.search(message)
    return found.group(0) if found else message


def is_single_process_catalog(catalog: str) -> bool:
    """Whether the DuckLake ``catalog`` is a DuckDB file (anything but a PostgreSQL catalog;
    empty, the embedded warehouse file, has the same lock): DuckDB lets one process write it,
    or several read it, at a time, so the steps that open it take turns (the ``duckdb`` pool's
    limit 1, and :func:`wait_for_lock`)."""
    return not catalog.strip().startswith(("postgres:", "postgresql:"))


def wait_for_lock(
    what: str,
    attempt: Callable[[], T],
    *,
    timeout_seconds: float = LOCK_TIMEOUT_SECONDS,
    log: logging.Logger = log,
    first_delay: float = 0.2,
    max_delay: float = 2.0,
) -> T:
    """``attempt()`` (which opens ``what``, a DuckDB file), again while another process holds
    the file's lock: with growing, jittered delays, each retry logged with the holder DuckDB
    names, ``timeout_seconds`` in all; then :class:`WarehouseLockTimeout`. Any other error (a
    read-only filesystem, a corrupt file, a permission) is raised at the first attempt.

    Nothing queues the waiters: whichever retries first after the holder lets go gets the file.
    The delays stay short (``max_delay``) so that a waiter is not starved by a process that
    lets go only briefly (a run's steps, one session each) and that the file rarely idles."""
    deadline = time.monotonic() + timeout_seconds
    delay = first_delay
    number = 1
    while True:
        try:
            return attempt()
        except duckdb.IOException as exc:
            holder = lock_holder(exc)
            if holder is None:
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise WarehouseLockTimeout(
                    f"{what} is still locked ({holder}) after {number} attempts over"
                    f" {timeout_seconds:g} s (lock_timeout_seconds: the Warehouse resource's"
                    " setting, connect_lake's argument); close that process's connection (a"
                    " notebook? an application holding the lake open?) and re-run"
                ) from exc
            wait = min(delay * random.uniform(0.75, 1.25), max_delay, left)
            log.warning(
                "%s is locked by another process (%s); retry %d in %.1f s"
                " (%.0f s left of lock_timeout_seconds=%g)",
                what,
                holder,
                number,
                wait,
                left,
                timeout_seconds,
            )
            time.sleep(wait)
            delay *= 2
            number += 1


def extension_path(name: str) -> Path:
    """The binary of DuckDB extension ``name`` shipped by its PyPI wheel for this duckdb."""
    spec = importlib.util.find_spec(EXTENSION_PACKAGES[name])
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the DuckDB extension {name} is not installed: pip install"
            f" {EXTENSION_PACKAGES[name].replace('_', '-')}=={duckdb.__version__}"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    binary = root / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not binary.exists():
        found = sorted(root.glob(f"extensions/*/{name}.duckdb_extension"))
        raise FileNotFoundError(
            f"{binary} is missing (the wheel ships {[p.parent.name for p in found]}): install"
            f" {EXTENSION_PACKAGES[name].replace('_', '-')}=={duckdb.__version__}"
        )
    return binary


# The extension binaries this process loaded with their signature checked, by path, each with
# the identity of the file it loaded (device, inode, size, modification and change times: a
# change time cannot be set back, so a file rewritten in place with its old mtime differs too).
_CHECKED_EXTENSIONS: dict[str, tuple[int, ...]] = {}


def _file_identity(path: str) -> tuple[int, ...]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def _with_extensions(names: list[str]) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with the extensions ``names`` loaded from their wheels.

    DuckDB checks an extension's signature at every LOAD, into every new database, by hashing
    the whole binary: about 100 MB for a DuckLake on PostgreSQL, 0.2 s of each connection
    (most of opening a lake session). The check is kept for the first load of each file in
    a process; a later connection of the same process skips it when every file is still the
    one checked (same inode, size, modification and change times): the library is already mapped into
    the process, and the dynamic loader hands that same copy out again."""
    # Read before the LOAD: a file replaced after this is checked at the next connection.
    identities = {path: _file_identity(path) for path in map(str, map(extension_path, names))}
    checked = all(_CHECKED_EXTENSIONS.get(path) == found for path, found in identities.items())
    con = duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_unsigned_extensions": checked,
        },
    )
    try:
        for path, identity in identities.items():
            con.execute(f"LOAD {_literal(path)}")
            if not checked:
                _CHECKED_EXTENSIONS[path] = identity
    except BaseException:
        con.close()
        raise
    return con


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _s3_secret(con: duckdb.DuckDBPyConnection) -> None:
    """An S3 secret from the standard AWS variables, when they are set (MinIO and other
    S3-compatible stores: ``AWS_ENDPOINT_URL``). Without them httpfs reads public buckets."""
    if not os.environ.get("AWS_ACCESS_KEY_ID"):
        return
    options = {
        "KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "SECRET": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        "REGION": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        "SESSION_TOKEN": os.environ.get("AWS_SESSION_TOKEN"),
    }
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        options |= {"ENDPOINT": host or scheme, "URL_STYLE": "path"}
        options["USE_SSL"] = "true" if scheme != "http" else "false"
    body = ", ".join(f"{key} {_literal(value)}" for key, value in options.items() if value)
    con.execute(f"CREATE OR REPLACE SECRET recs_s3 (TYPE s3, {body})")


def connect_lake(
    catalog: str,
    data_path: str | None = None,
    *,
    read_only: bool = False,
    lock_timeout_seconds: float = LOCK_TIMEOUT_SECONDS,
    log: logging.Logger = log,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the DuckLake ``catalog`` attached and in use.

    ``catalog``: ``postgres:dbname=… host=… port=… user=…`` (libpq's keywords; the password
    from ``PGPASSWORD``), shared by every machine, or the path of a DuckDB catalog file (one
    machine). ``data_path``: the folder or ``s3://…`` URL of the Parquet files; needed when
    the lake is created, stored in its catalog, and optional afterwards. ``read_only``: an
    application's connection (it cannot write by mistake).

    A DuckDB catalog file is held, with DuckDB's lock, for as long as the connection is open:
    by one writing process, or by readers only. Attaching it while another process holds it
    waits for it (:func:`wait_for_lock`, ``lock_timeout_seconds`` in all, each retry in
    ``log``); so close the connection as soon as its work is done."""
    needed = ["ducklake"]
    if catalog.startswith(("postgres:", "postgresql:")):
        needed.append("postgres_scanner")
    # Without data_path the catalog's stored one is used, which may be remote.
    if not data_path or _REMOTE.match(data_path):
        needed.append("httpfs")
    con = _with_extensions(needed)
    try:
        if "httpfs" in needed:
            _s3_secret(con)
        options = []
        if data_path:
            remote = _REMOTE.match(data_path)
            if not remote:
                Path(data_path).mkdir(parents=True, exist_ok=True)
            options.append(f"DATA_PATH {_literal(data_path)}")
        if read_only:
            options.append("READ_ONLY")
        suffix = f" ({', '.join(options)})" if options else ""
        attach = f"ATTACH {_literal('ducklake:' + catalog)} AS {LAKE}{suffix}"
        wait_for_lock(
            f"the lake's catalog {catalog}",
            lambda: _retrying(con, f"creating the lake in {catalog}", lambda: con.execute(attach)),
            timeout_seconds=lock_timeout_seconds,
            log=log,
        )
        con.execute(f"USE {LAKE}")
    except BaseException:
        con.close()
        raise
    return con


def is_lake(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``con`` works in a DuckLake (:func:`connect_lake`)."""
    (database,) = con.execute("SELECT current_database()").fetchone()
    return database == LAKE


def is_conflict(error: BaseException) -> bool:
    """Whether ``error`` is DuckLake refusing a commit that overlaps a concurrent one."""
    return isinstance(error, duckdb.Error) and bool(_CONFLICT.search(str(error)))


@dataclass
class ConflictRetries:
    """How often a conflicting transaction is retried, and where each retry is logged."""

    attempts: int = 10
    first_delay: float = 0.1
    max_delay: float = 5.0
    log: logging.Logger = field(default=log)

    def delays(self) -> Iterator[float]:
        """The waits before each retry: doubling, capped, with jitter so that two writers that
        lost together do not collide again."""
        for attempt in range(self.attempts):
            yield min(self.max_delay, self.first_delay * 2**attempt) * random.uniform(0.5, 1.5)


# A connection's retry settings (by id), set by its owner (resources.Warehouse) while it is open.
_RETRIES: dict[int, ConflictRetries] = {}


@contextmanager
def conflict_retries(con: duckdb.DuckDBPyConnection, retries: ConflictRetries) -> Iterator[None]:
    """Use ``retries`` for the transactions of ``con`` inside the block."""
    _RETRIES[id(con)] = retries
    try:
        yield
    finally:
        _RETRIES.pop(id(con), None)


def _retrying(
    con: duckdb.DuckDBPyConnection,
    what: str,
    attempt: Callable[[], None],
    failed: BaseException | None = None,
) -> None:
    """Call ``attempt`` (again, when it already ``failed``) while it fails with a conflict, as
    the connection's :class:`ConflictRetries` allow, logging each retry; then
    :class:`WarehouseConflict`. Any other error is raised at once."""
    retries = _RETRIES.get(id(con), ConflictRetries())
    error = failed
    if error is None:
        try:
            attempt()
            return
        except duckdb.Error as exc:
            if not is_conflict(exc):
                raise
            error = exc
    for number, wait in enumerate(retries.delays(), start=1):
        retries.log.warning(
            "%s conflicted with a concurrent commit (%s); retry %d of %d in %.2f s",
            what,
            str(error).strip().splitlines()[-1],
            number,
            retries.attempts,
            wait,
        )
        time.sleep(wait)
        try:
            attempt()
        except duckdb.Error as exc:
            if not is_conflict(exc):
                raise
            error = exc
            continue
        retries.log.info("%s committed at retry %d", what, number)
        return
    raise WarehouseConflict(
        f"{what} still conflicted with concurrent commits after {retries.attempts} retries"
        f" (Warehouse.conflict_retries): {error}"
    ) from error


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_identifier(name: str) -> str:
    """Quote a SQL identifier (column or table part) for DuckDB, escaping embedded quotes."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"invalid SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def _table_ref(table: str) -> str:
    if table not in TABLES:
        raise ValueError(f"unknown warehouse table {table!r}; known: {sorted(TABLES)}")
    schema, name = table.split(".")
    assert _IDENTIFIER.match(schema) and _IDENTIFIER.match(name)
    return f"{schema}.{name}"


def _declared_columns(table: str) -> list[tuple[str, str]]:
    """(name, definition) of each column of a :data:`TABLES` entry, in order."""
    return [(column.name, column.definition) for column in table_columns(table)]


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every schema, table and view of :mod:`recs_pipeline.schema` if missing, and add
    the columns declared since to tables created by an older version (the migration: new
    columns are nullable, existing rows keep NULL in them).

    Writes nothing when the schema is up to date: on DuckLake every change is a snapshot, and
    two sessions re-creating a view at once would conflict. Two processes creating a new lake
    at once conflict on their first schema; the loser re-runs this check (which then finds it)."""
    _retrying(con, "creating the warehouse schema", lambda: _ensure_schema(con))


# DuckDB's rendering of each declared view body, made once per process (:func:`_declared_view`).
_DECLARED_VIEWS: dict[str, str] = {}


def _declared_view(con: duckdb.DuckDBPyConnection, body: str) -> str:
    """The body (after AS) of a view declared as ``body``, as DuckDB renders it: from a view in
    the connection's own temp catalog, never in the warehouse."""
    if body not in _DECLARED_VIEWS:
        con.execute(f"CREATE OR REPLACE TEMP VIEW _declared_view AS {body}")
        (rendered,) = con.execute(
            "SELECT sql FROM duckdb_views() WHERE database_name = 'temp'"
            " AND view_name = '_declared_view'"
        ).fetchone()
        con.execute("DROP VIEW temp.main._declared_view")
        _DECLARED_VIEWS[body] = rendered.split(" AS ", 1)[1]
    return _DECLARED_VIEWS[body]


def _ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    # What is there, in two catalog queries (on DuckLake each statement is a round trip to the
    # catalog): every table's columns, and every view's body.
    (database,) = con.execute("SELECT current_database()").fetchone()
    present: dict[str, set[str]] = {}
    for schema, name, column in con.execute(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns"
        " WHERE table_catalog = ?",
        [database],
    ).fetchall():
        present.setdefault(f"{schema}.{name}", set()).add(column)
    stored = {
        f"{schema}.{name}": sql.split(" AS ", 1)[1]
        for schema, name, sql in con.execute(
            "SELECT schema_name, view_name, sql FROM duckdb_views() WHERE database_name = ?",
            [database],
        ).fetchall()
    }
    for table, columns in TABLES.items():
        ref = _table_ref(table)
        if table not in present:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
            con.execute(f"CREATE TABLE IF NOT EXISTS {ref} ({columns})")
            continue
        for column, definition in _declared_columns(table):
            if column not in present[table]:
                # IF NOT EXISTS: another process may have added it since the columns were read.
                con.execute(f"ALTER TABLE {ref} ADD COLUMN IF NOT EXISTS {definition}")
    for view, body in VIEWS.items():
        if stored.get(view) != _declared_view(con, body):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {view.split('.')[0]}")
            con.execute(f"CREATE OR REPLACE VIEW {view} AS {body}")


# Connections (by id) inside a transaction() block, each with the journal of its block's
# writes (statement, parameters): a nested block joins the outer transaction, and a commit
# that conflicts on DuckLake is retried by replaying the journal in a new transaction.
_OPEN_TRANSACTIONS: dict[int, list[tuple[str, list]]] = {}


def _rollback(con: duckdb.DuckDBPyConnection, error: BaseException) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error as rollback_error:
        error.add_note(f"(rollback after this error: {rollback_error})")


def _write(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> None:
    """Execute a warehouse write, journaled for a retry when inside :func:`transaction`."""
    journal = _OPEN_TRANSACTIONS.get(id(con))
    if journal is not None:
        journal.append((sql, params))
    con.execute(sql, params)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Run the block's statements in one transaction: committed if the block completes, rolled
    back if it raises. The one way the project writes several statements atomically.

    A block nested in another on the same connection joins the outer transaction (the outer
    block commits or rolls back). If the commit itself fails (a full disk: DuckDB cannot write
    its write-ahead log) DuckDB has already ended the transaction; the rollback that follows
    then fails too, and that second error is attached as a note while the first, the cause, is
    the one raised.

    On DuckLake a commit that conflicts with a concurrent writer's is retried as a whole: the
    block's writes, which are :func:`replace_partition` calls (the project's one write path),
    are replayed in a new transaction against the newest snapshot, as many times as the
    connection's :class:`ConflictRetries` allow, each retry logged. A replay is the same
    transaction again: each replacement deletes its partition as it is now and inserts rows
    from the connection's own staged tables, which the conflict did not touch.
    """
    key = id(con)
    if key in _OPEN_TRANSACTIONS:
        yield con
        return
    con.execute("BEGIN TRANSACTION")
    journal: list[tuple[str, list]] = []
    _OPEN_TRANSACTIONS[key] = journal
    committing = False
    try:
        yield con
        committing = True
        con.execute("COMMIT")
    except BaseException as error:
        _rollback(con, error)
        if not (committing and journal and is_conflict(error)):
            raise
        _OPEN_TRANSACTIONS.pop(key, None)
        _replay(con, journal, error)
    finally:
        _OPEN_TRANSACTIONS.pop(key, None)


def _replay(
    con: duckdb.DuckDBPyConnection, journal: list[tuple[str, list]], failed: BaseException
) -> None:
    """Run ``journal`` again in a new transaction until one commits (:func:`_retrying`)."""

    def again() -> None:
        con.execute("BEGIN TRANSACTION")
        try:
            for sql, params in journal:
                con.execute(sql, params)
            con.execute("COMMIT")
        except BaseException as error:
            _rollback(con, error)
            raise

    tables = sorted({sql.split()[2] for sql, _ in journal})
    _retrying(con, f"the transaction replacing partitions of {', '.join(tables)}", again, failed)


def replace_partitions(
    con: duckdb.DuckDBPyConnection,
    table: str,
    first: dt.date,
    last: dt.date,
    select_sql: str,
    params: list | None = None,
) -> None:
    """Replace every partition of ``table`` from ``first`` to ``last`` (both included) by
    ``select_sql``'s rows, in one :func:`transaction`: :func:`replace_partition` for a range
    of days at once (a history export's thousands of days cost two statements, not two per
    day). ``select_sql`` must produce the table's columns with partition keys in the range."""
    ref = _table_ref(table)
    with transaction(con):
        _write(con, f"DELETE FROM {ref} WHERE {PARTITION_COLUMN[table]} BETWEEN ? AND ?",
               [first, last])  # fmt: skip
        _write(con, f"INSERT INTO {ref} {select_sql}", list(params or []))


def replace_partition(
    con: duckdb.DuckDBPyConnection,
    table: str,
    key: dt.date,
    select_sql: str,
    params: list | None = None,
    within: dict[str, object] | None = None,
) -> int:
    """Replace the rows of ``table`` whose partition column equals ``key`` by ``select_sql``.

    With ``within`` ({column: value}), only the partition's rows matching every one of those
    values are replaced (one evaluation of ``ml.metrics``, say); ``select_sql`` must then
    produce rows with those values, and the others of the partition stay.

    ``select_sql`` must produce the table's columns in order, with ``key`` as the partition
    column of every row. Delete and insert run in one :func:`transaction`, so readers see either
    the old partition or the new one, never a mix, and a re-run never duplicates rows. Called
    inside the caller's ``with transaction(con):`` it joins that transaction (to replace several
    tables together). Returns the number of rows inserted.
    """
    ref = _table_ref(table)
    where = f"{PARTITION_COLUMN[table]} = ?"
    values: list = [key]
    for name, value in (within or {}).items():
        where += f" AND {quote_identifier(name)} IS NOT DISTINCT FROM ?"
        values.append(value)
    with transaction(con):
        _write(con, f"DELETE FROM {ref} WHERE {where}", values)
        _write(con, f"INSERT INTO {ref} {select_sql}", list(params or []))
        return con.execute(f"SELECT count(*) FROM {ref} WHERE {where}", values).fetchone()[0]
