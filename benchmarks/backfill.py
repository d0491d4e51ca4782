"""A daemon backfill, step start-up spawned versus forked from a primed server.

One command:

    .venv/bin/python -m benchmarks.backfill

The daemon backfill of ``tests/test_daemon_backfill.py`` (``raw_interactions`` ingested over
the whole synthetic log in one run, then a real webserver and daemon on loopback, the backfill
launched through GraphQL as the UI launches it: the six downstream assets over the newest
``--partitions`` days, one run per day, with the project's instance settings) once per executor start method, in a fresh
instance each, in the order given:

- ``spawn``: Dagster's default; every step process is a fresh interpreter;
- ``forkserver``: the project's default (``assets.platform.executor``); steps are forked from a
  per-run server that imported the code location and the instance storage before the run claimed any
  slot of the ``duckdb`` pool.

``--instances sqlite,postgres`` runs each method once per instance storage, in the same
invocation: the embedded SQLite files, then a shared PostgreSQL instance (a real server started
from the machine's binaries for the benchmark, ``tests/postgres_support.py``, with PostgreSQL's
default durability settings; a fresh database per run). The load average of the machine before
and after each run is recorded with it.

Reported per method: the downstream backfill's wall time, the runs' median duration, how long
each step of the ``duckdb`` pool held the pool's single slot (from launching its process to its
success: the part of every run that cannot overlap with any other run's), and the share of the
backfill's wall time during which the slot was held. Results: ``benchmarks/results/backfill.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
from pathlib import Path

import dagster as dg

from benchmarks._common import write_results

POOL_HOLD_START = "STEP_WORKER_STARTING"
POOL_HOLD_END = ("STEP_SUCCESS", "STEP_FAILURE")


def pool_holds(instance: dg.DagsterInstance, run_ids: list[str], pool_steps: set[str]) -> list:
    """(start, end) of every pool step of the runs: from launching its process to its end."""
    holds = []
    for run_id in run_ids:
        started = {}
        for record in instance.all_logs(run_id):
            event = record.dagster_event
            if event is None or record.step_key not in pool_steps:
                continue
            if event.event_type_value == POOL_HOLD_START:
                started[record.step_key] = record.timestamp
            elif event.event_type_value in POOL_HOLD_END and record.step_key in started:
                holds.append((started.pop(record.step_key), record.timestamp))
    return sorted(holds)


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for lo, hi in intervals:
        if hi > end:
            total += hi - max(lo, end)
            end = hi
    return total


def run_method(method: str, args, tmp: Path, instance_env: dict | None = None) -> dict:
    from assets.definitions import ALL_ASSETS
    from assets.ingest import raw_interactions
    from tests.daemon_support import run_backfills
    from tests.test_daemon_backfill import BACKFILL_CONFIG, log_spec

    downstream = [asset for asset in ALL_ASSETS if asset.key != raw_interactions.key]
    pool_steps = {a.key.to_user_string() for a in downstream if a.op.pool == "duckdb"}
    run_config = f"execution:\n  config:\n    start_method: {method}\n{BACKFILL_CONFIG}"
    outcome = run_backfills(
        tmp,
        log_spec(args.partitions),
        args.partitions,
        downstream,
        run_config,
        timeout_s=3600,
        instance_env=instance_env,
    )
    runs = outcome.runs
    statuses = sorted({run["status"] for run in runs})
    with outcome.open_instance() as instance:
        holds = pool_holds(instance, [run["runId"] for run in runs], pool_steps)
    hold_seconds = [hi - lo for lo, hi in holds]
    return {
        "instance": "postgres" if instance_env else "sqlite",
        "start_method": method,
        "backfill_status": outcome.backfill["status"],
        "run_statuses": statuses,
        "runs": len(runs),
        "downstream_backfill_seconds": round(outcome.downstream_seconds, 1),
        "with_ingest_and_startup_seconds": round(outcome.seconds, 1),
        "median_run_seconds": round(
            statistics.median(run["endTime"] - run["startTime"] for run in runs), 2
        ),
        "pool_steps": len(holds),
        "median_pool_hold_seconds": round(statistics.median(hold_seconds), 3),
        "total_pool_hold_seconds": round(sum(hold_seconds), 1),
        "pool_busy_share_of_backfill": round(union_seconds(holds) / outcome.downstream_seconds, 3),
        "max_runs_in_progress": outcome.max_in_progress,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backfill")
    parser.add_argument("--partitions", type=int, default=30)
    parser.add_argument("--methods", default="spawn,forkserver")
    parser.add_argument(
        "--instances",
        default="sqlite",
        help="instance storages, comma-separated: sqlite (embedded), postgres (a real server)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    instances = [i.strip() for i in args.instances.split(",") if i.strip()]
    results = {}
    with contextlib.ExitStack() as stack:
        server = None
        if "postgres" in instances:
            from tests.postgres_support import PostgresServer

            server = stack.enter_context(PostgresServer(durable=True))
        for storage in instances:
            for method in methods:
                # The keys of the SQLite-only runs stay the method's name, as before.
                key = method if instances == ["sqlite"] else f"{storage}/{method}"
                instance_env = (
                    server.environment(server.create_database("backfill"))
                    if storage == "postgres"
                    else None
                )
                load_before = os.getloadavg()
                with tempfile.TemporaryDirectory(prefix=f"backfill_{storage}_{method}_") as tmp:
                    results[key] = run_method(method, args, Path(tmp), instance_env)
                results[key]["load_average_before"] = [round(x, 2) for x in load_before]
                results[key]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
                print(key, results[key], flush=True)
    if {"spawn", "forkserver"} <= set(results):
        results["ratio_spawn_over_forkserver"] = {
            key: round(results["spawn"][key] / results["forkserver"][key], 2)
            for key in ("downstream_backfill_seconds", "median_pool_hold_seconds")
        }
    for method in methods:
        pair = (f"postgres/{method}", f"sqlite/{method}")
        if set(pair) <= set(results):
            results[f"ratio_postgres_over_sqlite/{method}"] = {
                key: round(results[pair[0]][key] / results[pair[1]][key], 2)
                for key in (
                    "downstream_backfill_seconds",
                    "with_ingest_and_startup_seconds",
                    "median_run_seconds",
                    "median_pool_hold_seconds",
                )
            }
    payload = {"args": vars(args), "results": results}
    print(write_results("backfill", payload, args.out))
    return payload


if __name__ == "__main__":
    main()
