"""DuckDB warehouse helpers: create the schema, replace one partition atomically.

Every function takes an open ``duckdb.DuckDBPyConnection``; the caller decides how long it lives
(never across model training: DuckDB allows one read-write process per file).
"""

from __future__ import annotations

import datetime as dt
import re

import duckdb

from recs_pipeline.schema import PARTITION_COLUMN, TABLES, VIEWS

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


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every schema, table and view of :mod:`recs_pipeline.schema` if missing."""
    for schema in sorted({t.split(".")[0] for t in TABLES}):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for table, columns in TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {_table_ref(table)} ({columns})")
    for view, body in VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {view} AS {body}")


def replace_partition(
    con: duckdb.DuckDBPyConnection,
    table: str,
    key: dt.date,
    select_sql: str,
    params: list | None = None,
    *,
    in_transaction: bool = False,
) -> int:
    """Replace the rows of ``table`` whose partition column equals ``key`` by ``select_sql``.

    ``select_sql`` must produce the table's columns in order, with ``key`` as the partition
    column of every row. Delete and insert run in one
    transaction, so readers see either the old partition or the new one, never a mix, and a
    re-run never duplicates rows. With ``in_transaction=True`` the caller owns the transaction
    (to replace several tables together). Returns the number of rows inserted.
    """
    ref = _table_ref(table)
    column = PARTITION_COLUMN[table]
    if not in_transaction:
        con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM {ref} WHERE {column} = ?", [key])
        con.execute(f"INSERT INTO {ref} {select_sql}", params or [])
        written = con.execute(f"SELECT count(*) FROM {ref} WHERE {column} = ?", [key]).fetchone()[0]
        if not in_transaction:
            con.execute("COMMIT")
    except BaseException:
        if not in_transaction:
            con.execute("ROLLBACK")
        raise
    return written
