"""What an empty train period is told apart as (issue 12, finding 9).

Days never ingested (no materialisation recorded, no row in the warehouse) need ingesting;
days ingested but empty need a wider window, computed from the nearest earlier events.
"""

from __future__ import annotations

import datetime as dt
import gc
from pathlib import Path

import dagster as dg
import pytest

from assets.features import interaction_split
from assets.ingest import raw_interactions
from assets.lib.partitions import range_tags
from recs_pipeline.data.split import SplitConfig, explain_empty_train, temporal_split
from resources import ArtifactStore, LogSource, Warehouse

AS_OF = dt.date(2024, 1, 20)
# train = [Jan 11, Jan 18], test = [Jan 19, Jan 20]
CONFIG = SplitConfig(window_days=10, test_days=2)


def insert(con, day: dt.date, user: str = "u1", item: str = "i1") -> None:
    con.execute(
        "INSERT INTO raw.interactions VALUES (?, ?, ?, ?, 'click', 1.0, 'hand.csv')",
        [day, dt.datetime.combine(day, dt.time(12)), user, item],
    )


def test_ingested_but_empty_days_suggest_a_wider_window(con):
    insert(con, dt.date(2024, 1, 3))  # 8 days before the train period starts
    ingested = {dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(20)}
    assert temporal_split(con, AS_OF, CONFIG).train_edges == 0
    message = explain_empty_train(con, AS_OF, CONFIG, ingested)
    assert message == (
        "no train interactions in [2024-01-11, 2024-01-18]: all 8 of 8 days were ingested and"
        " hold no events; the nearest events are 8 days earlier (2024-01-03):"
        " window_days ≥ 18 would include them"
    )
    assert "ingest raw_interactions" not in message
    # the suggested window does include them
    assert temporal_split(con, AS_OF, SplitConfig(window_days=18, test_days=2)).train_edges == 1


def test_never_ingested_days_are_named(con):
    ingested = {dt.date(2024, 1, 11), dt.date(2024, 1, 12)}
    # a day with only quarantined rows was ingested too
    con.execute("INSERT INTO raw.rejected_interactions VALUES ('2024-01-13', 'f.csv', 'x', 'bad')")
    message = explain_empty_train(con, AS_OF, CONFIG, ingested)
    assert message == (
        "no train interactions in [2024-01-11, 2024-01-18]: 5 of 8 days were never ingested"
        " (2024-01-14, 2024-01-15, 2024-01-16, 2024-01-17, 2024-01-18): ingest raw_interactions"
        " for those days first; 3 of 8 days were ingested and hold no events"
    )


def test_events_removed_by_k_core(con):
    insert(con, dt.date(2024, 1, 12))
    config = SplitConfig(window_days=10, test_days=2, min_degree=2)
    assert temporal_split(con, AS_OF, config).train_edges == 0
    assert "removed by the k-core filter (min_degree 2)" in explain_empty_train(
        con, AS_OF, config, set()
    )


def write_day(landing: Path, day: dt.date) -> None:
    folder = landing / day.isoformat()
    folder.mkdir(parents=True)
    day_ms = int(dt.datetime.combine(day, dt.time(12), dt.UTC).timestamp() * 1000)
    rows = [f"{day_ms + i},u{i % 3},i{i % 4},view" for i in range(12)]
    (folder / "events-0.csv").write_text(
        "timestamp,user_id,item_id,event_type\n" + "\n".join(rows) + "\n"
    )


@pytest.mark.parametrize("ingest_all", [True, False])
def test_split_asset_tells_the_user_which(tmp_path, ingest_all):
    """The asset reads the instance: a sparse log's ingested empty days are not 'ingest first'."""
    landing = tmp_path / "landing"
    first = dt.date(2026, 3, 1)
    write_day(landing, first)
    days = [first + dt.timedelta(days=i) for i in range(40)]
    as_of = days[-1]
    resources = {
        "warehouse": Warehouse(database=str(tmp_path / "warehouse.duckdb")),
        "artifacts": ArtifactStore(root=str(tmp_path / "artifacts")),
        "log_source": LogSource(landing_root=str(landing)),
    }
    instance = dg.DagsterInstance.ephemeral()
    ingested = days if ingest_all else days[:20]
    assert dg.materialize(
        [raw_interactions],
        instance=instance,
        resources=resources,
        tags=range_tags(ingested[0], ingested[-1]),
        run_config={"ops": {"raw_interactions": {"config": {"allow_empty_days": True}}}},
    ).success
    result = dg.materialize(
        [raw_interactions, interaction_split],
        selection=[interaction_split],
        partition_key=as_of.isoformat(),
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    gc.collect()
    [event] = result.get_step_failure_events()
    message = str(event.step_failure_data.error)
    if ingest_all:
        assert "26 of 26 days were ingested and hold no events" in message
        assert "the nearest events are 12 days earlier (2026-03-01)" in message
        assert "window_days ≥ 40 would include them" in message
        assert "ingest raw_interactions" not in message
    else:
        assert "18 of 26 days were never ingested (2026-03-21, 2026-03-22," in message
        assert "8 of 26 days were ingested and hold no events" in message
        assert "ingest raw_interactions for those days first" in message
