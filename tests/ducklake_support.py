"""The processes of the shared-warehouse concurrency test (tests/test_ducklake.py), each what
one machine of a deployment runs:

- ``chain WAREHOUSE ARTIFACTS LANDING DAY RUN_CONFIG``: retrain, evaluate and publish ``DAY``
  with its own ephemeral Dagster instance (as a run worker on another machine would), then
  print the run's outcome as one JSON line;
- ``deployed-chain DAY RUN_CONFIG``: the same with the deployment's resources
  (``assets.definitions.default_resources``: the ``RECS_*`` environment and ``RECS_CONFIG``'s
  file), as a run worker of a deployment builds them;
- ``reader WAREHOUSE OUT STOP``: an application reading the published recommendations in a loop,
  each query in its own snapshot, until the file ``STOP`` exists; writes what it saw to ``OUT``.

``WAREHOUSE`` is the Warehouse resource's fields as JSON (a DuckLake catalog, or a DuckDB file).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from pathlib import Path


def run_chain_process(
    warehouse: dict, artifacts: str, landing: str, day: str, run_config: str
) -> dict:
    from resources import ArtifactStore, ComputeEngine, LogSource, Warehouse

    resources = {
        "warehouse": Warehouse(**warehouse),
        "artifacts": ArtifactStore(root=artifacts),
        "log_source": LogSource(landing_root=landing),
        "engine": ComputeEngine(),
    }
    return chain_outcome(resources, day, run_config)


def chain_outcome(resources: dict, day: str, run_config: str) -> dict:
    """Run ``day``'s chain with its own ephemeral instance; whether it succeeded, and why not."""
    import dagster as dg

    from tests.test_pipeline import run_chain

    with dg.DagsterInstance.ephemeral() as instance:
        result = run_chain(instance, resources, dt.date.fromisoformat(day), json.loads(run_config))
    failures = [
        f"{event.step_key}: {event.event_specific_data.error.message.strip()}"
        for event in result.all_events
        if event.event_type_value == "STEP_FAILURE"
    ]
    return {"day": day, "run_id": result.run_id, "success": result.success, "failures": failures}


def connect_reader(warehouse: dict):
    """An application's connection: the lake attached read-only, or the DuckDB file read-only
    (the embedded default, which only works while no step holds the file)."""
    import duckdb

    if warehouse.get("catalog"):
        from recs_pipeline.infra.warehouse import connect_lake

        return connect_lake(warehouse["catalog"], warehouse.get("data_path"), read_only=True)
    return duckdb.connect(warehouse["database"], read_only=True)


# Between reads: dozens a second still read during each publication, while a reader that never
# paused took a whole core from the two writers it watched on a 2-core machine.
READ_PAUSE_SECONDS = 0.02


def read_in_a_loop(warehouse: dict, out: Path, stop: Path) -> None:
    """Each query is its own transaction, so its own snapshot: what an application sees."""
    from recs_pipeline.infra.warehouse import is_single_process_catalog

    seen: list[dict] = []
    errors: list[str] = []
    con = None
    while not stop.exists():
        try:
            con = con or connect_reader(warehouse)
            latest = con.execute(
                "SELECT as_of_date, count(*) FROM serving.latest_recommendations GROUP BY 1"
            ).fetchall()
            days = con.execute(
                "SELECT as_of_date, count(*) FROM serving.recommendations GROUP BY 1"
            ).fetchall()
            seen.append(
                {
                    "latest": {d.isoformat(): n for d, n in latest},
                    "days": {d.isoformat(): n for d, n in days},
                }
            )
        except Exception as error:  # recorded: the test says what went wrong
            errors.append(f"{type(error).__name__}: {str(error).splitlines()[0]}")
            con = None
            time.sleep(0.05)
        if con is not None and is_single_process_catalog(warehouse.get("catalog") or ""):
            # The DuckDB file (or a lake's DuckDB catalog file): a reader must let go for the
            # writers between queries.
            con.close()
            con = None
        time.sleep(READ_PAUSE_SECONDS)
    out.write_text(json.dumps({"seen": seen, "errors": errors}))


def main(argv: list[str]) -> int:
    role, *rest = argv
    if role == "deployed-chain":
        from assets.definitions import default_resources

        print(json.dumps(chain_outcome(default_resources(), *rest)), flush=True)
        return 0
    warehouse, *rest = rest
    warehouse = json.loads(warehouse)
    if role == "chain":
        print(json.dumps(run_chain_process(warehouse, *rest)), flush=True)
        return 0
    if role == "reader":
        out, stop = map(Path, rest)
        read_in_a_loop(warehouse, out, stop)
        return 0
    raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    os.environ.setdefault("RECS_CONFIG", "")
    sys.exit(main(sys.argv[1:]))
