"""DuckDB warehouse helpers: create the schema, run writes in a transaction, replace one
partition atomically.

Every function takes an open ``duckdb.DuckDBPyConnection``; the caller decides how long it lives
(never across model training: DuckDB allows one read-write process per file).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from recs_pipeline.schema import PARTITION_COLUMN, TABLES, VIEWS
from recs_pipeline.schema import columns as table_columns

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
    columns are nullable, existing rows keep NULL in them)."""
    for schema in sorted({t.split(".")[0] for t in TABLES}):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for table, columns in TABLES.items():
        ref = _table_ref(table)
        con.execute(f"CREATE TABLE IF NOT EXISTS {ref} ({columns})")
        schema, name = table.split(".")
        present = {
            row[0]
            for row in con.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = ? AND table_name = ?",
                [schema, name],
            ).fetchall()
        }
        for column, definition in _declared_columns(table):
            if column not in present:
                con.execute(f"ALTER TABLE {ref} ADD COLUMN {definition}")
    for view, body in VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {view} AS {body}")


# Connections (by id) inside a transaction() block: a nested block joins the outer transaction.
_OPEN_TRANSACTIONS: set[int] = set()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Run the block's statements in one transaction: committed if the block completes, rolled
    back if it raises. The one way the project writes several statements atomically.

    A block nested in another on the same connection joins the outer transaction (the outer
    block commits or rolls back). If the commit itself fails (a full disk: DuckDB cannot write
    its write-ahead log) DuckDB has already ended the transaction; the rollback that follows
    then fails too, and that second error is attached as a note while the first, the cause, is
    the one raised.
    """
    key = id(con)
    if key in _OPEN_TRANSACTIONS:
        yield con
        return
    con.execute("BEGIN TRANSACTION")
    _OPEN_TRANSACTIONS.add(key)
    try:
        yield con
        con.execute("COMMIT")
    except BaseException as error:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error as rollback_error:
            error.add_note(f"(rollback after this error: {rollback_error})")
        raise
    finally:
        _OPEN_TRANSACTIONS.discard(key)


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
        con.execute(f"DELETE FROM {ref} WHERE {where}", values)
        con.execute(f"INSERT INTO {ref} {select_sql}", params or [])
        return con.execute(f"SELECT count(*) FROM {ref} WHERE {where}", values).fetchone()[0]
