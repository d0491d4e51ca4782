"""A history export's ingest against DuckDB reading the same file. One command:

    .venv/bin/python -m benchmarks.history_ingest

A MovieLens-latest-small-like ratings export (``--rows`` rows, ``--users`` users, ``--items``
items, timestamps spread over ``--days`` days with a heavy tail of quiet days; written to a
temporary folder, never the real dataset) is:

- read by DuckDB alone: ``read_csv`` of the file with the columns cast as ingest casts them and
  the rows counted per event day (what any ingest must at least do);
- ingested by the core alone (``ingest_history``, no Dagster);
- ingested through Dagster: one run of ``raw_interactions`` over every day of the log (a single
  run backfill, as ``cli.demo --own-logs`` and a UI backfill launch it), in a fresh home with
  the project's ``dagster.yaml`` and warehouse; then ``recs ingest`` over the unchanged export
  again, which finds every day ingested (``assets.ingest.pending_days``) and starts no run; and
  once more in a home whose event log is Dagster's own SQLite storage, the project's
  being Dagster's with its databases kept open (assets/platform/event_log.py);
- and, for Dagster's floor, an asset on the same daily partitions whose body does nothing, run
  the same way over every day and over one day: what recording a day as a partition costs before
  any work, and what any run costs; with ``--postgres`` (the default) over every day on a
  PostgreSQL instance too, its events an event at a time (Dagster's default) and in batches.

Reported: each wall time, the ingest's ratio to the read (the target: at most 2), the run's
event-log size and the number of lines it printed. Results:
``benchmarks/results/history_ingest.json``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import io
import os
import random
import tempfile
import time
from pathlib import Path
from unittest import mock

from benchmarks._common import write_results


def write_export(path: Path, rows: int, users: int, items: int, days: int, seed: int) -> None:
    """userId,movieId,rating,timestamp rows, sorted by user as MovieLens' export is; a user's
    ratings cluster around a few active days, so most days of the span are quiet."""
    rng = random.Random(seed)
    start = dt.datetime(1996, 3, 29, tzinfo=dt.UTC).timestamp()
    per_user = [max(1, int(rng.paretovariate(1.2) * rows / users / 6)) for _ in range(users)]
    scale = rows / sum(per_user)
    with path.open("w") as out:
        out.write("userId,movieId,rating,timestamp\n")
        for user, count in enumerate(per_user, 1):
            sessions = [start + rng.random() * days * 86400 for _ in range(rng.randint(1, 6))]
            for _ in range(max(1, round(count * scale))):
                ts = int(rng.choice(sessions) + rng.random() * 3 * 86400)
                item = min(items, int(rng.paretovariate(0.8)))
                out.write(f"{user},{item},{rng.choice((2.5, 3.0, 3.5, 4.0, 4.5, 5.0))},{ts}\n")


def duckdb_read(path: Path) -> tuple[float, int, int]:
    """Seconds for DuckDB to read the file and count its rows per event day; (rows, days)."""
    import duckdb

    started = time.perf_counter()
    con = duckdb.connect(":memory:")
    rows, days = con.execute(
        """SELECT sum(n), count(*) FROM (
               SELECT CAST(to_timestamp(CAST(timestamp AS BIGINT)) AS DATE) AS day, count(*) AS n
               FROM read_csv(?, all_varchar=true) GROUP BY 1)""",
        [str(path)],
    ).fetchone()
    con.close()
    return time.perf_counter() - started, int(rows), int(days)


def core_ingest(export: Path, database: Path) -> float:
    """Seconds of :func:`recs_pipeline.data.logs.ingest_history` alone over every day of the export,
    into a fresh warehouse file: the warehouse's part of the ingest."""
    import duckdb

    from recs_pipeline.data.logs import LogFormat, ingest_history
    from recs_pipeline.infra.warehouse import ensure_schema

    fmt = LogFormat(user_column="userId", item_column="movieId", timestamp_column="timestamp",
                    timestamp_unit="s", event_type_column=None, weight_column="rating")  # fmt: skip
    con = duckdb.connect(str(database))
    ensure_schema(con)
    first, last = con.execute(
        "SELECT CAST(min(to_timestamp(timestamp)) AS DATE),"
        " CAST(max(to_timestamp(timestamp)) AS DATE) FROM read_csv(?)",
        [str(export)],
    ).fetchone()
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    started = time.perf_counter()
    ingest_history(con, [str(export)], fmt, days)
    seconds = time.perf_counter() - started
    con.close()
    return seconds


def new_instance(home: Path, storage: str, extra_config: str = ""):
    """An instance in the new folder ``home``, with the project's ``dagster.yaml`` (and
    ``extra_config`` after it) and ``storage``, created as the project's commands create it."""
    import dagster as dg

    from assets.platform.instance import prepare_instance
    from cli.environment import HOME_TEMPLATE

    home.mkdir()
    (home / "dagster.yaml").write_text(HOME_TEMPLATE.read_text() + extra_config)
    return dg.DagsterInstance.from_config(str(prepare_instance(home, storage)))


def dagster_ingest(
    landing: Path, home: Path, first: dt.date, last: dt.date, event_log: str, attempts: list[str]
) -> list[dict]:
    """One run of ``raw_interactions`` over every day, per attempt, in a new home with the
    project's ``dagster.yaml``. ``event_log``: ``project`` (the storage the project's instance
    opens: assets/platform/event_log.py) or ``dagster`` (Dagster's own SQLite storage, as a
    ``storage: sqlite:`` section names it)."""

    from assets.definitions import ALL_ASSETS, default_resources, ingest_job
    from assets.ingest import pending_days, raw_interactions
    from assets.lib.partitions import range_tags
    from cli.step_lines import materialize
    from resources import LogSource, Warehouse

    extra = f"\nstorage:\n  sqlite:\n    base_dir: {home}\n" if event_log == "dagster" else ""
    instance = new_instance(home, "sqlite", extra)
    resources = {
        **default_resources(),  # the job's other assets' resources (unused by the ingest)
        "warehouse": Warehouse(database=str(home / "warehouse.duckdb")),
        "log_source": LogSource(
            landing_root=str(landing),
            path_pattern="ratings.csv",
            user_column="userId",
            item_column="movieId",
            timestamp_column="timestamp",
            timestamp_unit="s",
            event_type_column=None,
            weight_column="rating",
        ),
    }
    runs = []
    for attempt in attempts:
        printed = io.StringIO()
        started = time.perf_counter()
        # After the first run, as `recs ingest` does: only the days not ingested from the export
        # as it is now are read, in one run, or none.
        if (
            attempt != "first"
            and not pending_days(instance, resources["log_source"], first, last)[0]
        ):
            runs.append({"event_log": event_log, "run": attempt, "success": True,
                         "seconds": time.perf_counter() - started, "runs_started": 0})  # fmt: skip
            print(f"  recs ingest again ({event_log} event log, {attempt}): no run,"
                  f" {runs[-1]['seconds']:.2f}s", flush=True)  # fmt: skip
            continue
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            # As the project's commands run it: the job of the code location, the terminal's
            # step lines (cli/step_lines.py) instead of Dagster's console log.
            result = materialize(
                ingest_job,
                ALL_ASSETS,
                asset_selection=[raw_interactions],
                instance=instance,
                resources=resources,
                tags=range_tags(first, last),
            )
        seconds = time.perf_counter() - started
        logs = instance.all_logs(result.run_id)
        events = len(logs)
        by_type = collections.Counter(
            entry.dagster_event.event_type_value if entry.dagster_event else "log message"
            for entry in logs
        )
        runs.append({
            "event_log": event_log, "run": attempt, "seconds": seconds, "success": result.success,
            "runs_started": 1, "event_log_entries": events,
            "event_types": dict(by_type.most_common()),
            "printed_lines": printed.getvalue().count("\n"),
        })  # fmt: skip
        print(f"  dagster ingest ({event_log} event log, {attempt}): {seconds:.1f}s,"
              f" {events} events", flush=True)  # fmt: skip
    instance.dispose()
    return runs


def dagster_floor(
    home: Path, first: dt.date, last: dt.date, storage: str = "sqlite", batches: bool = True
) -> list[dict]:
    """Seconds of one run of an asset that does nothing, on the project's daily partitions and
    instance: over every day from ``first`` to ``last`` in one run, then (on SQLite) over
    ``last`` alone. Each day still costs Dagster a planned and a recorded materialization, which
    is the least any ingest that records its days as partitions can cost. ``storage``: the
    instance's (``postgres``: a server started for the benchmark with PostgreSQL's defaults,
    ``tests/postgres_support.py``); ``batches``: the project's event batch size, or none
    (``DAGSTER_EVENT_BATCH_SIZE=0``, Dagster's default)."""
    import dagster as dg

    from assets.lib.partitions import daily_partitions, range_tags

    @dg.asset(partitions_def=daily_partitions, backfill_policy=dg.BackfillPolicy.single_run())
    def nothing() -> None:
        """Records its days and does nothing else."""

    environment = {} if batches else {"DAGSTER_EVENT_BATCH_SIZE": "0"}
    with contextlib.ExitStack() as stack:
        if storage == "postgres":
            from tests.postgres_support import PostgresServer

            server = stack.enter_context(PostgresServer(durable=True))
            environment |= server.environment(server.create_database("floor"))
        stack.enter_context(mock.patch.dict(os.environ, environment))
        instance = new_instance(home, storage)
        stack.callback(instance.dispose)
        runs = []
        spans = [("every day", first), ("one day", last)][: 2 if storage == "sqlite" else 1]
        for name, start in spans:
            started = time.perf_counter()
            result = dg.materialize([nothing], instance=instance, tags=range_tags(start, last),
                                    raise_on_error=True)  # fmt: skip
            seconds = time.perf_counter() - started
            runs.append({"run": name, "days": (last - start).days + 1, "seconds": seconds,
                         "storage": storage, "batches": batches, "success": result.success,
                         "event_log_entries": len(instance.all_logs(result.run_id))})  # fmt: skip
            print(f"  dagster floor, a body that does nothing ({name}, {storage},"
                  f" {'batches' if batches else 'an event at a time'}): {seconds:.1f}s,"
                  f" {runs[-1]['event_log_entries']} events", flush=True)  # fmt: skip
    return runs


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.history_ingest",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--rows", type=int, default=100_836)
    parser.add_argument("--users", type=int, default=610)
    parser.add_argument("--items", type=int, default=9_742)
    parser.add_argument("--days", type=int, default=2_000)
    # Not TrainConfig's seed: the generated export's (nothing is trained).
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--event-logs",
        default="project,dagster",
        help="the event logs to ingest with: project (the project's), dagster (Dagster's own,"
        " several times slower), or both",
    )
    parser.add_argument(
        "--postgres",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the floor on a PostgreSQL instance, an event at a time and in"
        " batches (needs the PostgreSQL server binaries, as the tests do)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        landing = root / "landing"
        landing.mkdir()
        export = landing / "ratings.csv"
        write_export(export, args.rows, args.users, args.items, args.days, args.seed)
        read_seconds, rows, active_days = duckdb_read(export)
        print(f"duckdb read: {read_seconds:.2f}s, {rows} rows on {active_days} days", flush=True)
        import duckdb

        core_seconds = core_ingest(export, root / "core.duckdb")
        print(f"core ingest (no Dagster): {core_seconds:.2f}s", flush=True)

        con = duckdb.connect(":memory:")
        first, last = con.execute(
            "SELECT CAST(min(to_timestamp(timestamp)) AS DATE), CAST(max(to_timestamp(timestamp))"
            " AS DATE) FROM read_csv(?)",
            [str(export)],
        ).fetchone()
        con.close()
        # Partitions from the log's first day, read when the code location is imported; no
        # project config file of this checkout.
        os.environ["RECS_PARTITION_START"] = first.isoformat()
        os.environ["RECS_CONFIG"] = str(root / "recs.toml")
        os.environ["RECS_DATA_ROOT"] = str(root / "data")
        os.environ.setdefault("DAGSTER_HOME", str(root / "project"))
        # Side by side on one machine: the project's event log, then Dagster's own.
        event_logs = args.event_logs.split(",")
        runs = []
        if "project" in event_logs:
            runs += dagster_ingest(landing, root / "project", first, last, "project",
                                   ["first", "unchanged export"])  # fmt: skip
        if "dagster" in event_logs:
            runs += dagster_ingest(landing, root / "dagster", first, last, "dagster", ["first"])
        floor = dagster_floor(root / "floor", first, last)
        if args.postgres:
            for batches in (False, True):
                floor += dagster_floor(root / f"floor_postgres_{batches}", first, last,
                                       "postgres", batches)  # fmt: skip
    span = (last - first).days + 1
    first_run = runs[0]["seconds"]
    payload = {
        "args": vars(args),
        "export": {"rows": rows, "span_days": span, "days_with_rows": active_days},
        "duckdb_read_seconds": read_seconds,
        "core_ingest_seconds": core_seconds,
        "runs": runs,
        "dagster_floor": floor,
        "ratio_to_read": first_run / read_seconds,
    }
    print(f"{span} days ({active_days} with rows): ingest {first_run:.1f}s,"
          f" {payload['ratio_to_read']:.1f}x DuckDB's read ({read_seconds:.2f}s)")  # fmt: skip
    path = write_results("history_ingest", payload, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
