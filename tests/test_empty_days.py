"""Re-ingesting never wipes history by accident (issue 11, finding 2).

A day with no landing files never replaces a stored, non-empty partition unless the run sets
``allow_empty_days``; a range whose days mostly have no files (more than half of a range of two
or more days: an unmounted or unfinished export) fails before anything is replaced. A day with
no files and nothing stored stays a valid empty partition.
"""

from __future__ import annotations

import datetime as dt
import gc
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets.ingest import raw_interactions
from assets.lib.partitions import range_tags
from resources import LogSource, Warehouse

DAYS = [dt.date(2026, 3, 1) + dt.timedelta(days=i) for i in range(4)]
ALLOW = {"ops": {"raw_interactions": {"config": {"allow_empty_days": True}}}}


def write_day(landing: Path, day: dt.date, users: int = 3) -> None:
    folder = landing / day.isoformat()
    folder.mkdir(parents=True)
    day_ms = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)
    rows = [f"{day_ms + i},u{i},i{i},view" for i in range(users)] + [f"{day_ms},,i9,view"]
    (folder / "events-0.csv").write_text(
        "timestamp,user_id,item_id,event_type\n" + "\n".join(rows) + "\n"
    )


def ingest(landing: Path, db: Path, days: list[dt.date], run_config: dict | None = None):
    tags = range_tags(days[0], days[-1])
    result = dg.materialize(
        [raw_interactions],
        instance=dg.DagsterInstance.ephemeral(),
        resources={
            "warehouse": Warehouse(database=str(db)),
            "log_source": LogSource(landing_root=str(landing)),
        },
        tags=tags,
        run_config=run_config or {},
        raise_on_error=False,
    )
    gc.collect()  # a failed step's connection may wait for the collector (see test_faults)
    return result


def failure_message(result) -> str:
    [event] = result.get_step_failure_events()
    return str(event.step_failure_data.error)


def stored(db: Path) -> dict[tuple[str, dt.date], int]:
    with duckdb.connect(str(db), read_only=True) as con:
        return {
            (table, day): n
            for table in ("raw.interactions", "raw.rejected_interactions")
            for day, n in con.execute(
                f"SELECT event_date, count(*) FROM {table} GROUP BY 1"
            ).fetchall()
        }


@pytest.fixture
def ingested(tmp_path):
    landing = tmp_path / "landing"
    for day in DAYS:
        write_day(landing, day)
    db = tmp_path / "warehouse.duckdb"
    assert ingest(landing, db, DAYS).success
    before = stored(db)
    assert len(before) == 2 * len(DAYS)
    return landing, db, before


def test_a_day_moved_away_does_not_replace_its_stored_partition(ingested, tmp_path):
    landing, db, before = ingested
    shutil.move(landing / DAYS[1].isoformat(), tmp_path / "moved")
    result = ingest(landing, db, DAYS)
    assert not result.success
    message = failure_message(result)
    assert DAYS[1].isoformat() in message and "allow_empty_days" in message, message
    assert stored(db) == before  # nothing replaced, not even the days that have files

    # Explicitly allowed, the day becomes empty and the others are re-ingested as they were.
    assert ingest(landing, db, DAYS, ALLOW).success
    assert stored(db) == {k: v for k, v in before.items() if k[1] != DAYS[1]}


def test_an_empty_landing_root_fails_before_anything_is_replaced(ingested):
    landing, db, before = ingested
    for day in DAYS:
        shutil.rmtree(landing / day.isoformat())  # an unmounted export: the root is empty
    result = ingest(landing, db, DAYS)
    assert not result.success
    message = failure_message(result)
    assert "4 of 4 days" in message and "no landing files" in message, message
    assert stored(db) == before


def test_a_range_mostly_without_files_fails_even_with_nothing_stored(tmp_path):
    landing = tmp_path / "landing"
    write_day(landing, DAYS[0])
    db = tmp_path / "warehouse.duckdb"
    result = ingest(landing, db, DAYS)
    assert not result.success
    assert "3 of 4 days" in failure_message(result)
    assert stored(db) == {}
    # Half of the range without files is not "mostly": ingested, the empty days empty.
    write_day(landing, DAYS[1])
    assert ingest(landing, db, DAYS).success
    assert set(stored(db)) == {
        (t, d) for t in ("raw.interactions", "raw.rejected_interactions") for d in DAYS[:2]
    }


def test_a_day_without_files_and_nothing_stored_is_a_valid_empty_partition(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    db = tmp_path / "warehouse.duckdb"
    result = ingest(landing, db, DAYS[:1])
    assert result.success
    [materialization] = result.asset_materializations_for_node("raw_interactions")
    assert materialization.metadata["days_without_files"].value == [DAYS[0].isoformat()]
    assert stored(db) == {}


def test_the_setting_is_run_config_off_by_default_and_described():
    from assets.lib.settings import IngestSettings

    field = IngestSettings.model_fields["allow_empty_days"]
    assert field.default is False and "delete" in field.description
