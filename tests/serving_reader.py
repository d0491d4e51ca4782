"""An application polling the published recommendations in its own process, bounded in reads and
seconds, stopping by itself when a stop file appears. Writes what it saw as JSON.

    python -m tests.serving_reader files|warehouse TARGET STOP OUT MAX_READS MAX_SECONDS

``files``: TARGET is the serving folder; each poll opens ``published.duckdb`` read-only and reads
both views, as docs/published-table.md says.
``warehouse``: TARGET is the DuckDB warehouse, opened read-only, ``serving.latest_recommendations``
read (the old way, for comparison).
Nothing published yet (no file) is waiting, not an error; any exception is an error.
"""

import json
import sys
import time
from pathlib import Path

import duckdb

# Between polls: often enough to read many times during each publication, seldom enough that the
# reader does not take a core from the pipeline it watches (at 0.01 s the two readers of one test
# used 1.7 of a 2-core machine's cores).
POLL_PAUSE_SECONDS = 0.02

SUMMARY = """SELECT CAST(as_of_date AS VARCHAR), count(*), count(DISTINCT user_id),
                    count(DISTINCT (user_id, rank)), max(rank)
             FROM {source} GROUP BY as_of_date ORDER BY as_of_date"""


def poll_files(root: Path) -> list[tuple[str, list]]:
    database = root / "published.duckdb"
    if not database.exists():
        return []
    with duckdb.connect(str(database), read_only=True) as con:
        return [
            (
                "latest",
                con.execute(SUMMARY.format(source="serving.latest_recommendations")).fetchall(),
            ),
            ("days", con.execute(SUMMARY.format(source="serving.recommendations")).fetchall()),
        ]


def poll_warehouse(database: Path) -> list[tuple[str, list]]:
    if not database.exists():
        return []
    with duckdb.connect(str(database), read_only=True) as con:
        if not con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE schema_name = 'serving'"
        ).fetchone()[0]:
            return []
        return [
            (
                "latest",
                con.execute(SUMMARY.format(source="serving.latest_recommendations")).fetchall(),
            )
        ]


def main(mode: str, target: str, stop: str, out: str, max_reads: str, max_seconds: str) -> None:
    poll = {"files": poll_files, "warehouse": poll_warehouse}[mode]
    deadline = time.monotonic() + float(max_seconds)
    reads, errors, n_errors, polls, stopped = {}, [], 0, 0, "bounds"
    while polls < int(max_reads) and time.monotonic() < deadline:
        last = Path(stop).exists()
        polls += 1
        try:
            for kind, groups in poll(Path(target)):
                key = json.dumps([kind, groups])
                reads[key] = reads.get(key, 0) + 1
        except Exception as exc:  # noqa: BLE001 - every failure is what this reader reports
            n_errors += 1
            if len(errors) < 20:
                errors.append(f"{type(exc).__name__}: {exc}")
        if polls == 1:
            Path(out + ".started").touch()
        if last:
            stopped = "stop file"
            break
        time.sleep(POLL_PAUSE_SECONDS)
    Path(out).write_text(
        # Distinct observations with how often each was seen.
        json.dumps(
            {
                "polls": polls,
                "reads": [[*json.loads(k), n] for k, n in reads.items()],
                "errors": errors,
                "n_errors": n_errors,
                "stopped": stopped,
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
