"""The warehouse as a Dagster resource: the embedded DuckDB file, or a shared DuckLake."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from recs_pipeline.infra.warehouse import (
    LOCK_TIMEOUT_SECONDS,
    ConflictRetries,
    WarehouseLockTimeout,
    conflict_retries,
    connect_lake,
    ensure_schema,
    lock_holder,
    wait_for_lock,
)

__all__ = ["Warehouse", "WarehouseLockTimeout", "connect_with_retries", "lock_holder"]


def connect_with_retries(
    database: str,
    *,
    config: dict[str, Any],
    timeout_seconds: float,
    log: logging.Logger,
) -> duckdb.DuckDBPyConnection:
    """Open ``database`` read-write, waiting for another process's lock on it
    (:func:`recs_pipeline.infra.warehouse.wait_for_lock`: each retry logged with the holder,
    ``timeout_seconds`` in all, then :class:`WarehouseLockTimeout`). Any other error (a
    read-only filesystem, a corrupt file, a permission) is raised at the first attempt."""
    return wait_for_lock(
        f"the warehouse {database}",
        lambda: duckdb.connect(database=database, read_only=False, config=config),
        timeout_seconds=timeout_seconds,
        log=log,
    )


class Warehouse(DuckDBResource):
    """The project's warehouse, chosen by ``catalog`` (docs/deploying.md):

    - empty (the default): the DuckDB file ``database``, embedded. DuckDB allows one
      read-write process per file: open it per statement group with :meth:`session` and close
      it before long work (training); every asset that opens it is in the Dagster pool
      ``duckdb``, whose limit is 1 (assets/platform/instance.py).
    - a DuckLake catalog, with the Parquet files in ``data_path``: PostgreSQL
      (``postgres:dbname=… host=… port=… user=…``), which several machines share: any number
      of steps write at once, a commit that conflicts with a concurrent one is retried
      (``conflict_retries``), and the pool's limit is raised. Or a DuckDB catalog file (one
      machine), which has the embedded file's lock: steps take turns as they do there (the
      pool's limit stays 1; a process holding the file from outside is waited for,
      ``lock_timeout_seconds``).
    """

    catalog: str = Field(
        default="",
        description="The DuckLake catalog of a shared warehouse: 'postgres:dbname=… host=…"
        " port=… user=…' (libpq keywords; the password from PGPASSWORD) or the path of a DuckDB"
        " catalog file. Empty: the embedded DuckDB file `database`.",
    )
    data_path: str = Field(
        default="",
        description="Folder or s3:// URL of the DuckLake's Parquet files, reachable from every"
        " machine (object storage credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,"
        " AWS_REGION, AWS_ENDPOINT_URL). Needed to create the lake; stored in its catalog.",
    )
    conflict_retries: int = Field(
        default=10,
        ge=0,
        description="DuckLake: how many times a transaction that conflicts with a concurrent"
        " commit (two steps replacing partitions of one table at once) is retried as a whole,"
        " with growing delays, each retry logged.",
    )
    lock_timeout_seconds: float = Field(
        default=LOCK_TIMEOUT_SECONDS,
        gt=0,
        description="How long, in all, a step waits for another process (a notebook, a script,"
        " an application, another run's step) holding the DuckDB file, or a DuckLake's DuckDB"
        " catalog file, to let go, retrying with growing delays and logging each retry with the"
        " holder's PID, before it fails. Any other error opening the file (read-only"
        " filesystem, corrupt file, permissions) fails at once.",
    )
    serving_root: str | None = Field(
        default=None,
        description="Folder of the published recommendations as Parquet files, which"
        " applications read at any moment while the pipeline writes (docs/published-table.md)."
        " Default: 'serving' beside the database file; nothing is"
        " exported for ':memory:' nor for a DuckLake, which applications read directly.",
    )

    @property
    def shared(self) -> bool:
        """Whether this is a DuckLake (``catalog`` set) rather than the embedded file."""
        return bool(self.catalog.strip())

    def serving_path(self) -> Path | None:
        """Where :func:`recs_pipeline.serving.files.export_published` writes, or None for none."""
        if self.serving_root:
            return Path(self.serving_root)
        if self.database == ":memory:" or self.shared:
            return None
        return Path(self.database).parent / "serving"

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """dagster-duckdb's connection, but with this project's logged, bounded lock wait (the
        library retries every IOException, ~100 s in silence); or the DuckLake's."""
        if self.shared:
            con = connect_lake(
                self.catalog.strip(),
                self.data_path.strip() or None,
                lock_timeout_seconds=self.lock_timeout_seconds,
                log=dg.get_dagster_logger(),
            )
        else:
            config = {"custom_user_agent": "dagster", **self.connection_config}
            con = connect_with_retries(
                self.database,
                config=config,
                timeout_seconds=self.lock_timeout_seconds,
                log=dg.get_dagster_logger(),
            )
        try:
            retries = ConflictRetries(attempts=self.conflict_retries, log=dg.get_dagster_logger())
            with conflict_retries(con, retries):
                yield con
        finally:
            # Closed on a failing step too: it would keep the read-write connection, and the
            # file lock, until garbage collection.
            con.close()

    @contextmanager
    def session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if not self.shared and self.database != ":memory:":
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with self.get_connection() as con:
            ensure_schema(con)
            yield con
