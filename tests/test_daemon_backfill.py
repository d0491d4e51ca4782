"""Backfills through the daemon, launched as the UI launches them (issue 5).

A real ``dagster-webserver`` and ``dagster-daemon`` run on loopback, on the project's
``workspace.yaml``, over a temporary instance with the project's settings (the DuckDB pool at
limit 1 per op; runs queued, at most ``MAX_CONCURRENT_RUNS`` in progress) and temporary
warehouse, artifact store and landing folder. Operated as docs/operating.md says:

1. ``raw_interactions`` ingested over the whole synthetic log with ``dagster asset
   materialize --partition-range`` (single-run backfill policy: one run), then
2. through GraphQL, with the parameters the UI's "Launch backfill" sends, a backfill of the six
   downstream assets over the newest ``PARTITIONS`` days (a few more than the runs the
   instance lets progress at once), each with its full 28-day window of
   history: one run per day, queued by the daemon and executed by the code location's
   multiprocess executor (``assets.platform.executor``).

Then every targeted partition of every asset is materialised, every run succeeded, no DuckDB
lock error appears anywhere, no two steps of the ``duckdb`` pool overlapped in time, runs were
queued and in progress together, and the warehouse holds no duplicate rows.
"""

import datetime as dt
from collections import Counter

import duckdb
import polars as pl
import pytest

from assets.definitions import ALL_ASSETS
from assets.ingest import raw_interactions
from assets.lib.partitions import DEFAULT_WINDOW_DAYS
from recs_pipeline.data.synthetic import SyntheticLogSpec
from tests.daemon_support import BackfillOutcome, project_instance_config, run_backfills

# The project's instance settings, as the test runs them.
MAX_CONCURRENT_RUNS = project_instance_config()["concurrency"]["runs"]["max_concurrent_runs"]
# The fewest days that still queue runs behind the in-progress limit (and so make steps of
# several runs wait for the duckdb pool together); the 30-day backfill is benchmarks/backfill.py.
PARTITIONS = MAX_CONCURRENT_RUNS + 2
TIMEOUT_S = 2400  # a bound for a hung deployment, far above the expected wall time
DOWNSTREAM = [asset for asset in ALL_ASSETS if asset.key != raw_interactions.key]
DUCKDB_POOL_ASSETS = {
    asset.key.to_user_string() for asset in ALL_ASSETS if asset.op.pool == "duckdb"
}
# DuckDB's: 'IO Error: Could not set lock on file "...": Conflicting lock is held in ...'.
LOCK_ERRORS = ("could not set lock", "conflicting lock")

# What a user would save in the launchpad for a short backfill: two epochs, one baseline. The
# runs use the code location's executor (``assets.platform.executor``: multiprocess, steps forked
# from a fork server primed before the run claims the pool).
BACKFILL_CONFIG = """\
ops:
  trained_model:
    config:
      epochs: 2
  model_evaluation:
    config:
      baselines: [popularity]
"""


def log_spec(partitions: int = PARTITIONS) -> SyntheticLogSpec:
    """A small log ending yesterday (UTC): ``partitions`` days, each after a full window."""
    days = partitions + DEFAULT_WINDOW_DAYS - 1
    today = dt.datetime.now(dt.UTC).date()
    return SyntheticLogSpec(
        start=today - dt.timedelta(days=days),
        days=days,
        n_users=300,
        n_items=150,
        n_communities=6,
        events_per_day=500,
        dirty_fraction=0.002,
        seed=11,
    )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def outcome(request, tmp_path_factory) -> BackfillOutcome:
    """The same deployment and backfill on each instance storage: the embedded default (SQLite
    files in the home) and the shared one (a real PostgreSQL server the tests start,
    ``tests/postgres_support.py``; a database of its own)."""
    instance_env = None
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        instance_env = server.environment(server.create_database("daemon_backfill"))
    outcome = run_backfills(
        tmp_path_factory.mktemp(f"daemon_backfill_{request.param}"),
        log_spec(),
        PARTITIONS,
        DOWNSTREAM,
        BACKFILL_CONFIG,
        TIMEOUT_S,
        instance_env=instance_env,
    )
    print(
        f"{request.param}: ingest and {len(outcome.runs)} backfill runs in {outcome.seconds:.0f} s"
        f" (the backfill {outcome.downstream_seconds:.0f} s) queued {outcome.max_queued} in progress {outcome.max_in_progress}"
    )
    return outcome


def test_the_instance_storage_is_the_one_selected(outcome, request):
    storage = request.node.callspec.params["outcome"]
    with outcome.open_instance() as instance:
        kind = type(instance.run_storage).__module__
        assert ("postgres" if "postgres" in kind else "sqlite") == storage, kind
        assert instance.get_runs_count() == len(outcome.runs) + len(outcome.ingest_runs)


def test_every_partition_of_every_asset_is_materialised(outcome):
    assert outcome.backfill["status"] == "COMPLETED_SUCCESS", outcome.backfill
    counts = {
        tuple(s["assetKey"]["path"]): s
        for s in outcome.backfill["assetBackfillData"]["assetBackfillStatuses"]
    }
    assert set(counts) == {tuple(asset.key.path) for asset in DOWNSTREAM}
    for status in counts.values():
        assert status["numPartitionsTargeted"] == PARTITIONS, status
        assert status["numPartitionsMaterialized"] == PARTITIONS, status
        assert status["numPartitionsFailed"] == 0 and status["numPartitionsInProgress"] == 0
    # The same from the instance's own records, read after the services stopped.
    with outcome.open_instance() as instance:
        materialized = {
            asset.key.to_user_string(): instance.get_materialized_partitions(asset.key)
            for asset in ALL_ASSETS
        }
    assert materialized["raw_interactions"] == set(outcome.days)
    for asset in DOWNSTREAM:
        assert materialized[asset.key.to_user_string()] == set(outcome.backfilled_days), asset.key


def test_every_run_succeeded_one_ingest_run_and_one_run_per_day(outcome):
    ingest_runs = outcome.ingest_runs
    downstream_runs = outcome.runs
    # The single-run backfill policy: the whole range in one run.
    assert [run["status"] for run in ingest_runs] == ["SUCCESS"], outcome.ingest_output
    ingest_tags = {t["key"]: t["value"] for t in ingest_runs[0]["tags"]}
    assert ingest_tags["dagster/asset_partition_range_start"] == outcome.days[0]
    assert ingest_tags["dagster/asset_partition_range_end"] == outcome.days[-1]
    assert Counter(run["status"] for run in downstream_runs) == {"SUCCESS": PARTITIONS}
    partitions = sorted(
        next(t["value"] for t in run["tags"] if t["key"] == "dagster/partition")
        for run in downstream_runs
    )
    assert partitions == outcome.backfilled_days


def test_runs_were_queued_and_in_progress_together(outcome):
    # Polled: several runs waited in the queue while others ran.
    assert outcome.max_queued >= 2, outcome.max_queued
    assert outcome.max_in_progress >= 2, outcome.max_in_progress
    # From the runs' own start and end times: how many overlapped at most.
    runs = outcome.runs
    edges = sorted(
        [(run["startTime"], 1) for run in runs] + [(run["endTime"], -1) for run in runs],
        key=lambda edge: (edge[0], edge[1]),
    )
    running = overlap = 0
    for _, step in edges:
        running += step
        overlap = max(overlap, running)
    assert 2 <= overlap <= MAX_CONCURRENT_RUNS, overlap


def test_steps_of_the_duckdb_pool_never_overlapped(outcome):
    """The pool at limit 1 serialises every step that opens the warehouse, across runs."""
    intervals = []
    for run_id, events in outcome.events.items():
        started = {}
        for event in events:
            kind, step = event.get("eventType"), event.get("stepKey")
            if step not in DUCKDB_POOL_ASSETS:
                continue
            if kind == "STEP_START":
                started[step] = int(event["timestamp"])
            elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
                intervals.append((started.pop(step), int(event["timestamp"]), run_id, step))
    n_pool_steps = 1 + len(DUCKDB_POOL_ASSETS - {"raw_interactions"}) * PARTITIONS
    assert len(intervals) == n_pool_steps
    intervals.sort()
    for before, after in zip(intervals, intervals[1:], strict=False):
        assert before[1] <= after[0], (before, after)
    blocked = [
        event
        for events in outcome.events.values()
        for event in events
        if "blocked by limit for pool duckdb" in (event.get("message") or "")
    ]
    assert blocked, "no step ever waited for the duckdb pool: the test did not exercise it"


def test_no_duckdb_lock_error_anywhere(outcome):
    texts = [outcome.server_logs]
    for events in outcome.events.values():
        for event in events:
            texts.append(event.get("message") or "")
            error = event.get("error") or {}
            texts.append(error.get("message") or "")
            texts.append((error.get("cause") or {}).get("message") or "")
    hits = [
        line
        for text in texts
        for line in text.splitlines()
        if any(error in line.lower() for error in LOCK_ERRORS)
    ]
    assert not hits, hits[:5]


def test_warehouse_has_no_duplicate_rows(outcome):
    landing = pl.read_csv(
        sorted(outcome.tmp.glob("landing/*/*.csv")), infer_schema=False, include_file_paths="file"
    )
    with duckdb.connect(str(outcome.tmp / "warehouse.duckdb"), read_only=True) as con:

        def scalar(sql: str):
            return con.execute(sql).fetchone()[0]

        ingested = scalar("SELECT count(*) FROM raw.interactions")
        rejected = scalar("SELECT count(*) FROM raw.rejected_interactions")
        assert ingested + rejected == landing.height  # every landing row exactly once
        distinct = scalar("SELECT count(*) FROM (SELECT DISTINCT * FROM raw.interactions)")
        assert ingested - distinct == landing.height - landing.unique().height
        unique_keys = {
            "features.train_interactions": "as_of_date, user_id, item_id",
            "features.test_interactions": "as_of_date, user_id, item_id",
            "features.user_index": "as_of_date, user_id",
            "features.item_index": "as_of_date, item_id",
            "ml.metrics": "as_of_date, model, k, metric",
            "serving.recommendations": "as_of_date, user_id, rank",
        }
        for table, key in unique_keys.items():
            duplicates = scalar(
                f"SELECT count(*) FROM (SELECT {key} FROM {table} GROUP BY ALL HAVING count(*) > 1)"
            )
            days = scalar(f"SELECT count(DISTINCT as_of_date) FROM {table}")
            assert duplicates == 0, table
            assert days == PARTITIONS, table
        published = con.execute(
            "SELECT min(as_of_date), max(as_of_date) FROM serving.recommendations"
        ).fetchone()
    assert [d.isoformat() for d in published] == [
        outcome.backfilled_days[0],
        outcome.backfilled_days[-1],
    ]
