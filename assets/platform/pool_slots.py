"""One claim per pool slot on Dagster's SQLite instance storage.

Dagster claims a slot of a pool (``duckdb``: limit 1) by selecting a free slot row ``FOR UPDATE
SKIP LOCKED`` and then writing the step into it. PostgreSQL locks the row between the two
statements; SQLite ignores ``FOR UPDATE``, so two run workers claiming at the same moment can
select the same free row and both write it: both steps hold "the" slot and open the DuckDB file
together. Six processes claiming a fresh limit-1 pool at once got two slots in 1 of 4 trials
here, and the daemon backfill test saw two pool steps overlap (the second waited on DuckDB's
file lock).

The fix makes the claim one statement: ``UPDATE ... WHERE id = (the first free slot) AND
step_key IS NULL``. SQLite runs a statement under its database write lock, so exactly one
claimant finds the slot free; the others see no row updated and wait, as Dagster's executor
does for any blocked claim. It is installed on the SQLite event log storages when the
project's executor is imported (every run worker of the code location); other storages keep
Dagster's own claim.
"""

from __future__ import annotations

import sqlalchemy as db
from dagster._core.storage.event_log.schema import ConcurrencySlotsTable
from dagster._core.storage.event_log.sqlite.consolidated_sqlite_event_log import (
    ConsolidatedSqliteEventLogStorage,
)
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlalchemy_compat import db_select
from dagster._utils.concurrency import ConcurrencySlotStatus

SQLITE_STORAGES = (SqliteEventLogStorage, ConsolidatedSqliteEventLogStorage)


def claim_slot_atomically(
    self, concurrency_key: str, run_id: str, step_key: str
) -> ConcurrencySlotStatus:
    """``SqlEventLogStorage._claim_concurrency_slot`` as one statement (module docstring)."""
    slots = ConcurrencySlotsTable.c
    free = (
        db_select([slots.id])
        .where(
            db.and_(
                slots.concurrency_key == concurrency_key,
                slots.step_key == None,  # noqa: E711  (SQL IS NULL)
                slots.deleted == False,  # noqa: E712
            )
        )
        .limit(1)
        .scalar_subquery()
    )
    with self.index_connection() as conn:
        claimed = conn.execute(
            ConcurrencySlotsTable.update()
            .values(run_id=run_id, step_key=step_key)
            .where(db.and_(slots.id == free, slots.step_key == None))  # noqa: E711
        ).rowcount
    return ConcurrencySlotStatus.CLAIMED if claimed else ConcurrencySlotStatus.BLOCKED


def install() -> None:
    for storage in SQLITE_STORAGES:
        storage._claim_concurrency_slot = claim_slot_atomically
