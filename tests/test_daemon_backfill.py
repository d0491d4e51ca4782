"""Backfills through the daemon, launched as the UI launches them (issue 5).

A real ``dagster-webserver`` and ``dagster-daemon`` run on loopback, on the project's
``workspace.yaml``, over a temporary instance with the project's settings (the DuckDB pool at
limit 1 per op; runs queued, at most ``MAX_CONCURRENT_RUNS`` in progress) and temporary
warehouse, artifact store and landing folder. Through GraphQL, with the parameters the UI's
"Launch backfill" sends, the test backfills

1. ``raw_interactions`` over the whole synthetic log (single-run backfill policy: one run), then
2. the six downstream assets over the newest ``PARTITIONS`` days, each with its full 28-day
   window of history: one run per day, queued by the daemon and executed by the multiprocess
   executor (forkserver start method, chosen in the backfill's run config as a user would in
   the launchpad; the default spawn method starts a fresh interpreter per step).

Then every targeted partition of every asset is materialised, every run succeeded, no DuckDB
lock error appears anywhere, no two steps of the ``duckdb`` pool overlapped in time, runs were
queued and in progress together, and the warehouse holds no duplicate rows.
"""

import datetime as dt
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from assets.definitions import ALL_ASSETS
from assets.ingest import raw_interactions
from assets.partitions import DEFAULT_WINDOW_DAYS
from recs_pipeline.synthetic import SyntheticLogSpec, write_landing_files
from tests.daemon_support import (
    BACKFILL_DONE,
    FINISHED,
    IN_PROGRESS,
    Deployment,
    sigterm_raises,
    write_instance,
)

# Over 5 minutes on 2 cores (a daemon, a webserver and 31 runs): out of the default run.
pytestmark = pytest.mark.slow

PARTITIONS = 30
MAX_CONCURRENT_RUNS = 3
# Runs the queue may start while their first step waits for the pool: they start their
# processes while another run holds the pool's slot (with 0, the slot idles ~40% of the time).
RUN_BUFFER = MAX_CONCURRENT_RUNS - 1
TIMEOUT_S = 2400  # a bound for a hung deployment, far above the expected wall time
DOWNSTREAM = [asset for asset in ALL_ASSETS if asset.key != raw_interactions.key]
DUCKDB_POOL_ASSETS = {
    asset.key.to_user_string() for asset in ALL_ASSETS if asset.op.pool == "duckdb"
}
# DuckDB's: 'IO Error: Could not set lock on file "...": Conflicting lock is held in ...'.
LOCK_ERRORS = ("could not set lock", "conflicting lock")

# What a user would save in the launchpad for a long backfill: forked step processes (each
# spawned step would import torch and the code location again), two epochs, one baseline.
BACKFILL_CONFIG = """\
execution:
  config:
    multiprocess:
      start_method:
        forkserver:
          preload_modules: [assets.definitions]
ops:
  trained_model:
    config:
      epochs: 2
  model_evaluation:
    config:
      baselines: [popularity]
"""
INGEST_CONFIG = BACKFILL_CONFIG.split("ops:")[0]


def log_spec() -> SyntheticLogSpec:
    """A small log ending yesterday (UTC): ``PARTITIONS`` days, each after a full window."""
    days = PARTITIONS + DEFAULT_WINDOW_DAYS - 1
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


@dataclass
class Outcome:
    spec: SyntheticLogSpec
    tmp: Path
    ingest_id: str = ""
    backfill_id: str = ""
    backfills: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, list[dict]] = field(default_factory=dict)
    events: dict[str, list[dict]] = field(default_factory=dict)
    max_in_progress: int = 0
    max_queued: int = 0
    server_logs: str = ""
    seconds: float = 0.0

    @property
    def days(self) -> list[str]:
        return [(self.spec.start + dt.timedelta(days=i)).isoformat() for i in range(self.spec.days)]

    @property
    def backfilled_days(self) -> list[str]:
        return self.days[-PARTITIONS:]


def wait_until_done(deployment: Deployment, outcome: Outcome, deadline: float) -> None:
    """Poll until the daemon marks both backfills done; record how many of the downstream
    backfill's runs were queued and in progress at once."""
    backfill_ids = [outcome.ingest_id, outcome.backfill_id]
    while True:
        deployment.check_alive()
        status = Counter(run["status"] for run in deployment.backfill_runs(outcome.backfill_id))
        outcome.max_in_progress = max(outcome.max_in_progress, sum(status[s] for s in IN_PROGRESS))
        outcome.max_queued = max(outcome.max_queued, status["QUEUED"])
        states = [deployment.backfill(i, detail=False)["status"] for i in backfill_ids]
        if all(state in BACKFILL_DONE for state in states):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"backfills {backfill_ids} {states}, downstream runs {status}")
        time.sleep(2)


def launch(deployment: Deployment, assets, partitions: list[str], run_config: str) -> str:
    """The parameters the UI's "Launch backfill" sends for an asset selection."""
    return deployment.launch_backfill(
        {
            "assetSelection": [{"path": list(asset.key.path)} for asset in assets],
            "partitionNames": partitions,
            "fromFailure": False,
            "runConfigData": run_config,
            "tags": [{"key": "test", "value": "daemon_backfill"}],
        }
    )


@pytest.fixture(scope="module")
def outcome(tmp_path_factory) -> Outcome:
    tmp = tmp_path_factory.mktemp("daemon_backfill")
    spec = log_spec()
    write_landing_files(spec, tmp / "landing")
    write_instance(tmp / "dagster_home", MAX_CONCURRENT_RUNS, RUN_BUFFER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECS_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(tmp / "dagster_home"),
        RECS_WAREHOUSE=str(tmp / "warehouse.duckdb"),
        RECS_ARTIFACTS=str(tmp / "artifacts"),
        RECS_LANDING_ROOT=str(tmp / "landing"),
        RECS_PARTITION_START=spec.start.isoformat(),
        # Several runs share two cores: one math thread per process, not two spinning each.
        OMP_NUM_THREADS="1",
    )
    deployment = Deployment(env, logs=tmp)
    started = time.monotonic()
    deadline = started + TIMEOUT_S
    outcome = Outcome(spec, tmp)
    with sigterm_raises():
        try:
            deployment.start_webserver()
            deployment.wait_until_loaded(timeout=300)
            # Launched before the daemon starts, so that its first backfill tick picks it up.
            outcome.ingest_id = launch(deployment, [raw_interactions], outcome.days, INGEST_CONFIG)
            deployment.start_daemon()
            # The downstream backfill reads the whole history: launch it once the ingest run
            # has finished, as a user would.
            while not (
                (runs := deployment.backfill_runs(outcome.ingest_id))
                and all(run["status"] in FINISHED for run in runs)
            ):
                deployment.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"ingest backfill not done: {runs}")
                time.sleep(1)
            outcome.backfill_id = launch(
                deployment, DOWNSTREAM, outcome.backfilled_days, BACKFILL_CONFIG
            )
            wait_until_done(deployment, outcome, deadline)
            for backfill_id in (outcome.ingest_id, outcome.backfill_id):
                outcome.backfills[backfill_id] = deployment.backfill(backfill_id)
                outcome.runs[backfill_id] = deployment.backfill_runs(backfill_id)
                for run in outcome.runs[backfill_id]:
                    outcome.events[run["runId"]] = deployment.run_events(run["runId"])
            outcome.seconds = time.monotonic() - started
        finally:
            deployment.stop()
            # pytest shows this only when a test of the module fails.
            print(deployment.log_tails())
    outcome.server_logs = "\n".join(
        (tmp / f"{name}.log").read_text(errors="replace") for name in ("webserver", "daemon")
    )
    print(f"{sum(map(len, outcome.runs.values()))} runs in {outcome.seconds:.0f} s")
    return outcome


def test_every_partition_of_every_asset_is_materialised(outcome):
    ingest = outcome.backfills[outcome.ingest_id]
    downstream = outcome.backfills[outcome.backfill_id]
    assert ingest["status"] == "COMPLETED_SUCCESS", ingest
    assert downstream["status"] == "COMPLETED_SUCCESS", downstream
    counts = {
        (backfill_id, tuple(s["assetKey"]["path"])): s
        for backfill_id in (outcome.ingest_id, outcome.backfill_id)
        for s in outcome.backfills[backfill_id]["assetBackfillData"]["assetBackfillStatuses"]
    }
    expected = {(outcome.ingest_id, ("raw_interactions",)): len(outcome.days)} | {
        (outcome.backfill_id, tuple(asset.key.path)): PARTITIONS for asset in DOWNSTREAM
    }
    assert set(counts) == set(expected)
    for key, n in expected.items():
        status = counts[key]
        assert status["numPartitionsTargeted"] == n, status
        assert status["numPartitionsMaterialized"] == n, status
        assert status["numPartitionsFailed"] == 0 and status["numPartitionsInProgress"] == 0
    # The same from the instance's own records, read after the services stopped.
    with dg.DagsterInstance.from_config(str(outcome.tmp / "dagster_home")) as instance:
        materialized = {
            asset.key.to_user_string(): instance.get_materialized_partitions(asset.key)
            for asset in ALL_ASSETS
        }
    assert materialized["raw_interactions"] == set(outcome.days)
    for asset in DOWNSTREAM:
        assert materialized[asset.key.to_user_string()] == set(outcome.backfilled_days), asset.key


def test_every_run_succeeded_one_ingest_run_and_one_run_per_day(outcome):
    ingest_runs = outcome.runs[outcome.ingest_id]
    downstream_runs = outcome.runs[outcome.backfill_id]
    assert [run["status"] for run in ingest_runs] == ["SUCCESS"]  # single-run backfill policy
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
    runs = outcome.runs[outcome.backfill_id]
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
