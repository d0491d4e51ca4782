"""The published recommendations, readable by applications at any moment while the pipeline
writes.

DuckDB lets one process write a database file and no other process open it meanwhile, so an
application reading the warehouse meets the pipeline's lock (and holds it against the pipeline).
After ``serving.recommendations`` commits a day, :func:`export_published` copies the published
state out of the warehouse::

    {root}/published.duckdb                                    views only, replaced atomically:
        serving.recommendations          every published day
        serving.latest_recommendations   the newest published day
    {root}/recommendations/as_of_date=YYYY-MM-DD/part-{version}.parquet   one file per day

A day file is never changed once it has its name: re-publishing a day writes a new version
beside it. ``published.duckdb`` is built under a temporary name, listing the current version of
every day, and moved over the old one with ``os.replace`` (atomic on one filesystem). Renaming a
new file over the *same* name is not enough for Parquet: DuckDB opens a file path more than
once per query (metadata, then row groups), and a rename between the opens yields errors or
wrong results; the views point at immutable files, so every query reads one whole version.
A reader opens ``published.duckdb`` read-only: it takes a shared lock on that file, which the
writer never opens again after the rename, so neither waits for the other; a reader that opened
the old file keeps reading the old (whole) state. Superseded day versions are deleted once they
have been superseded for :data:`GRACE_SECONDS`.

Only days that passed the quality gate reach ``serving.recommendations``, so only those are
exported; ``latest_recommendations`` is the newest of them, as in the warehouse, so
backfilling an older day leaves it alone.

This export is for the embedded DuckDB file only. A DuckLake warehouse (``Warehouse.catalog``)
is itself what applications read: they attach it read-only
(:func:`recs_pipeline.warehouse.connect_lake`), take no lock, and each query reads one
snapshot, in which a day's replacement (delete and insert, one commit) is entirely there or not
at all. Exporting from it would add a copy that several machines would write into one folder
at once, for nothing a snapshot does not already give.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import time
import uuid
from pathlib import Path

import duckdb

DATABASE = "published.duckdb"
DAYS_DIR = "recommendations"
# How long a superseded day file stays for readers that opened published.duckdb before.
GRACE_SECONDS = 3600.0


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(target: Path) -> Path:
    # Hidden, and not ending in .parquet or .duckdb: no glob of readers matches it.
    return target.parent / f".{target.name}.{os.getpid()}.tmp"


def _drop_leftovers(directory: Path) -> None:
    """Temporary files of an export that was killed. Exports never run concurrently (each
    runs inside the warehouse's read-write connection), so none is in use."""
    for pattern in (".*.tmp", ".*.tmp.wal"):
        for leftover in directory.glob(pattern):
            leftover.unlink(missing_ok=True)


def _day_dir(root: Path, day: dt.date) -> Path:
    return root / DAYS_DIR / f"as_of_date={day.isoformat()}"


def _versions(root: Path, day: dt.date) -> list[Path]:
    """The day's files, oldest first (version names sort by time)."""
    directory = _day_dir(root, day)
    return sorted(directory.glob("part-*.parquet")) if directory.is_dir() else []


def _export_day(con: duckdb.DuckDBPyConnection, root: Path, day: dt.date) -> Path:
    directory = _day_dir(root, day)
    directory.mkdir(parents=True, exist_ok=True)
    _drop_leftovers(directory)
    version = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    target = directory / f"part-{version}.parquet"
    tmp = _temporary(target)
    try:
        con.execute(
            f"""COPY (SELECT * FROM serving.recommendations
                      WHERE as_of_date = DATE '{day.isoformat()}' ORDER BY user_id, rank)
                TO {_literal(tmp)} (FORMAT parquet)"""
        )
        _fsync(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync(directory)
    return target


def _write_database(root: Path, files: dict[dt.date, Path]) -> Path:
    target = root / DATABASE
    _drop_leftovers(root)
    tmp = _temporary(target)
    newest = max(files)
    paths = ", ".join(_literal(files[day].resolve()) for day in sorted(files))
    try:
        with duckdb.connect(str(tmp)) as out:
            out.execute("CREATE SCHEMA serving")
            out.execute(
                "CREATE VIEW serving.recommendations AS SELECT * FROM"
                f" read_parquet([{paths}], hive_partitioning = false)"
            )
            out.execute(
                "CREATE VIEW serving.latest_recommendations AS SELECT * FROM"
                f" read_parquet({_literal(files[newest].resolve())}, hive_partitioning = false)"
            )
        _fsync(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)  # a .tmp.wal, should DuckDB leave one
    _fsync(root)
    return target


def _drop_superseded(root: Path, day: dt.date, now: float) -> None:
    versions = _versions(root, day)
    for old, successor in itertools.pairwise(versions):
        if now - successor.stat().st_mtime > GRACE_SECONDS:
            old.unlink(missing_ok=True)


def export_published(
    con: duckdb.DuckDBPyConnection, root: str | Path | None, as_of: dt.date
) -> dict[str, str]:
    """Export day ``as_of`` of ``serving.recommendations`` (already committed) to ``root`` and
    replace ``published.duckdb`` by one listing every published day. Days published before this
    export existed get their file now. ``root`` None (an in-memory warehouse) exports nothing.
    Returns metadata: the day's file and the newest published day."""
    if root is None:
        return {}
    root = Path(root)
    exported = _export_day(con, root, as_of)
    published = [
        row[0]
        for row in con.execute(
            "SELECT DISTINCT as_of_date FROM serving.recommendations ORDER BY 1"
        ).fetchall()
    ]
    files = {}
    for day in published:
        versions = _versions(root, day)
        files[day] = versions[-1] if versions else _export_day(con, root, day)
    if not files:
        return {"serving_file": str(exported)}
    _write_database(root, files)
    _drop_superseded(root, as_of, time.time())
    return {"serving_file": str(exported), "serving_latest_day": max(files).isoformat()}
