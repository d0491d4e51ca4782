"""The DuckDB warehouse as a Dagster resource."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from dagster_duckdb import DuckDBResource

from recs_pipeline.warehouse import ensure_schema


class Warehouse(DuckDBResource):
    """The project's DuckDB file. Open it per statement group with :meth:`session` and close it
    before long work (training): DuckDB allows one read-write process per file, and every asset
    that opens it is in the Dagster pool ``duckdb``."""

    @contextmanager
    def session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.database != ":memory:":
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with self.get_connection() as con:
            try:
                ensure_schema(con)
                yield con
            finally:
                # get_connection closes only on a clean exit: a failing step would keep the
                # read-write connection, and the file lock, until garbage collection.
                con.close()
