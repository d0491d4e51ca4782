"""The chain on the embedded DuckDB file versus DuckLake on a local PostgreSQL, side by side.

One command:

    .venv/bin/python -m benchmarks.warehouse_backends

On the tests' small synthetic log (``tests/conftest.py`` SMALL_LOG), once per backend, each in
a fresh folder: the whole log ingested in one run, then the chain (split, graph, negatives,
LightGCN as in ``tests/test_pipeline.py``'s RUN_CONFIG, evaluation, publication) for two
consecutive days one after the other, then two other days at the same time in two processes (as
two machines would; on the DuckDB file they take turns through its lock). DuckLake's catalog is
a real PostgreSQL server started for the benchmark (``tests/postgres_support.py``, PostgreSQL's
default durability), its Parquet files in a local folder.

Reported per backend: the ingest's wall time, each chain's wall time and the time of its steps
that use the warehouse, the wall time of the two concurrent chains, and an application's read
of one user's latest list (a fresh connection, then the median of 20 queries). The load average
is recorded before and after each backend. Results: ``benchmarks/results/warehouse_backends.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RECS_CONFIG", "")

import dagster as dg  # noqa: E402

from benchmarks._common import quiet_sparse_warnings, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WAREHOUSE_STEPS = ("interaction_split", "interaction_graph", "model_evaluation", "recommendations")


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    started, took = {}, {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type_value == "STEP_START":
            started[record.step_key] = record.timestamp
        elif event.event_type_value == "STEP_SUCCESS" and record.step_key in started:
            took[record.step_key] = round(record.timestamp - started[record.step_key], 2)
    return {step: took[step] for step in WAREHOUSE_STEPS if step in took}


def read_latency(warehouse: dict, user: str) -> dict:
    from tests.ducklake_support import connect_reader

    began = time.perf_counter()
    con = connect_reader(warehouse)
    query = "SELECT item_id FROM serving.latest_recommendations WHERE user_id = ? ORDER BY rank"
    con.execute(query, [user]).fetchall()
    first = time.perf_counter() - began
    times = []
    for _ in range(20):
        began = time.perf_counter()
        con.execute(query, [user]).fetchall()
        times.append(time.perf_counter() - began)
    con.close()
    return {
        "connect_and_first_query_s": round(first, 3),
        "median_query_ms": round(1000 * statistics.median(times), 2),
    }


def measure(name: str, warehouse: dict, landing: Path, work: Path) -> dict:
    from resources import ArtifactStore, LogSource, Warehouse
    from tests.conftest import SMALL_LOG
    from tests.test_ducklake import EARLIER
    from tests.test_pipeline import DAY_1, DAY_2, RUN_CONFIG, ingest, run_chain

    out: dict = {"backend": name, "load_before": load()}
    resources = {
        "warehouse": Warehouse(**warehouse),
        "artifacts": ArtifactStore(root=str(work / "artifacts")),
        "log_source": LogSource(landing_root=str(landing)),
    }
    instance = dg.DagsterInstance.ephemeral()
    began = time.perf_counter()
    assert ingest(instance, resources, SMALL_LOG.start, SMALL_LOG.end).success
    out["ingest_s"] = round(time.perf_counter() - began, 2)
    out["chains"] = []
    for day in (DAY_1, DAY_2):
        began = time.perf_counter()
        result = run_chain(instance, resources, day)
        assert result.success, day
        out["chains"].append(
            {
                "day": day,
                "wall_s": round(time.perf_counter() - began, 2),
                "warehouse_steps_s": step_seconds(instance, result.run_id),
            }
        )
    # Two other days at once, each in its own process with its own instance.
    began = time.perf_counter()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.ducklake_support",
                "chain",
                json.dumps(warehouse),
                str(work / "artifacts"),
                str(landing),
                day.isoformat(),
                json.dumps(RUN_CONFIG),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=open(work / f"chain-{day}.log", "w"),  # noqa: SIM115
            text=True,
        )
        for day in (EARLIER, DAY_1 - dt.timedelta(days=1))
    ]
    outcomes = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in processes]
    out["two_concurrent_chains_wall_s"] = round(time.perf_counter() - began, 2)
    out["two_concurrent_chains_succeeded"] = all(o["success"] for o in outcomes)
    logs = "".join((work / f"chain-{o['day']}.log").read_text() for o in outcomes)
    out["lock_waits_logged"] = logs.count("is locked by another process")
    out["conflict_retries_logged"] = logs.count("conflicted with a concurrent commit")
    from tests.ducklake_support import connect_reader

    with connect_reader(warehouse) as con:
        (user,) = con.execute("SELECT min(user_id) FROM serving.latest_recommendations").fetchone()
    out["application_read"] = read_latency(warehouse, user)
    out["load_after"] = load()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="results file (default benchmarks/results)")
    args = parser.parse_args()
    quiet_sparse_warnings()
    from recs_pipeline.data.synthetic import write_landing_files
    from tests.conftest import SMALL_LOG
    from tests.postgres_support import PostgresServer

    with tempfile.TemporaryDirectory(prefix="warehouse-backends-") as tmp:
        tmp = Path(tmp)
        landing = tmp / "landing"
        write_landing_files(SMALL_LOG, landing)
        results = []
        work = tmp / "duckdb"
        work.mkdir()
        file = {"database": str(work / "warehouse.duckdb")}
        results.append(measure("duckdb_file", file, landing, work))
        with PostgresServer(durable=True) as server:
            work = tmp / "ducklake"
            work.mkdir()
            db = server.create_database("lake")
            lake = {
                "database": str(work / "unused.duckdb"),
                "catalog": f"postgres:dbname={db} host={server.host} port={server.port}"
                f" user={server.user}",
                "data_path": str(work / "lake-data"),
            }
            results.append(measure("ducklake_postgres", lake, landing, work))
    path = write_results("warehouse_backends", {"results": results}, args.out)
    print(json.dumps(results, indent=2, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
