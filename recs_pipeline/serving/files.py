"""The published recommendations, readable by applications at any moment while the pipeline
writes.

DuckDB lets one process write a database file and no other process open it meanwhile, so an
application reading the warehouse meets the pipeline's lock (and holds it against the pipeline).
After ``serving.recommendations`` commits a day, :func:`export_published` copies the published
state out of the warehouse::

    {root}/published.duckdb                          replaced atomically:
        serving.recommendations          (view) every published day
        serving.latest_recommendations   (view) the newest published day
        serving.day_files                (table) the file the views read for each day
    {root}/recommendations/as_of_date=YYYY-MM-DD/part-{version}.{sha256}.parquet   one per day

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

Every file is checked against the warehouse, so the copies converge on it whatever happened
between a commit and its export. A publication commits its lists with a record in
``serving.publications`` (:func:`record_publication`): a fresh publication id. The day file
carries that id in its Parquet key-value metadata (``recs_publication``) and its own sha256 in
its name, ``part-{version}.{sha256}.parquet`` (Parquet has no room for a header covering its own
bytes, as the artifacts' has; the name is published with the file in one rename). Each export
verifies every day's newest file, its bytes against the name and its id against the
warehouse's, and rewrites the days that disagree: one whose re-publication was killed after
its commit and before its export (the warehouse holds the new lists, the file the old ones), a
file edited or corrupted on disk, a file from before this check (no checksum in its name), a
missing one. ``published.duckdb`` also holds ``serving.day_files``, the file it lists for each
day, so :func:`serving_problems` (``python -m cli.doctor``) can check it too. A day
published before ``serving.publications`` existed is adopted: it gets a record (model unknown)
at its next export.

This export is for the embedded DuckDB file only. A DuckLake warehouse (``Warehouse.catalog``)
is itself what applications read: they attach it read-only
(:func:`recs_pipeline.infra.warehouse.connect_lake`), take no lock, and each query reads one
snapshot, in which a day's replacement (delete and insert, one commit) is entirely there or not
at all. Exporting from it would add a copy that several machines would write into one folder
at once, for nothing a snapshot does not already give.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import os
import re
import time
import uuid
from pathlib import Path
from typing import NamedTuple

import duckdb

from recs_pipeline.infra.warehouse import replace_partition, transaction

DATABASE = "published.duckdb"
DAYS_DIR = "recommendations"
DAY_FILES = "day_files"
# How long a superseded day file stays for readers that opened published.duckdb before.
GRACE_SECONDS = 3600.0
# The Parquet key-value metadata entry holding the id of the publication a day file exports.
PUBLICATION_KEY = "recs_publication"
# A day file's name: its version (export time, then random) and the sha256 of its bytes.
_DAY_FILE = re.compile(
    r"^part-(?P<version>[0-9]{20}-[0-9a-f]{8})\.(?P<sha256>[0-9a-f]{64})\.parquet$"
)


def _new_id() -> str:
    """Sorts by time: day file versions and publication ids."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


def record_publication(
    con: duckdb.DuckDBPyConnection, day: dt.date, model_sha256: str | None
) -> str:
    """Record a new publication of ``day`` in ``serving.publications`` (call it in the
    transaction that replaces the day's lists); returns its id."""
    publication = _new_id()
    replace_partition(
        con,
        "serving.publications",
        day,
        "SELECT CAST(? AS DATE), ?, ?, CAST(? AS TIMESTAMP)",
        [day, publication, model_sha256, dt.datetime.now(dt.UTC).replace(tzinfo=None)],
    )
    return publication


class LivePublication(NamedTuple):
    """The publication applications are served: the newest published day's."""

    day: dt.date
    publication: str
    model_sha256: str | None
    published_at: dt.datetime


def live_publication(con: duckdb.DuckDBPyConnection) -> LivePublication | None:
    """The live publication: the newest day of ``serving.publications``, the day
    ``serving.latest_recommendations`` serves (None: nothing published yet). Publishing an
    older day (a backfill, a re-run) leaves it; only a newer day's publication moves it."""
    row = con.execute(
        """SELECT as_of_date, publication, model_sha256, published_at
           FROM serving.publications ORDER BY as_of_date DESC LIMIT 1"""
    ).fetchone()
    return None if row is None else LivePublication(*row)


def published_evaluation(
    con: duckdb.DuckDBPyConnection, day: dt.date, model_sha256: str | None
) -> tuple[str | None, dict[str, dict[tuple[str, int], float]]]:
    """The test-fold metrics behind day ``day``'s publication: the newest evaluation in
    ``ml.metrics`` of the model.pt ``model_sha256`` (the one the gate passed), as (the
    evaluated model, {scorer: {(metric, k): value}}) with the model first, then the baselines.
    (None, {}) when there is none (no test users: nothing was scored)."""
    if model_sha256 is None:
        return None, {}
    rows = con.execute(
        """SELECT evaluated_model, model, metric, k, value FROM ml.metrics
           WHERE as_of_date = $day AND model_sha256 = $sha AND run_id = (
               SELECT arg_max(run_id, evaluated_at) FROM ml.metrics
               WHERE as_of_date = $day AND model_sha256 = $sha)
           ORDER BY model <> evaluated_model, model <> 'popularity', model, metric, k""",
        {"day": day, "sha": model_sha256},
    ).fetchall()
    results: dict[str, dict[tuple[str, int], float]] = {}
    for _, model, metric, k, value in rows:
        results.setdefault(model, {})[(metric, k)] = value
    return (rows[0][0] if rows else None), results


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


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


def _export_day(con: duckdb.DuckDBPyConnection, root: Path, day: dt.date, publication: str) -> Path:
    directory = _day_dir(root, day)
    directory.mkdir(parents=True, exist_ok=True)
    _drop_leftovers(directory)
    version = _new_id()
    # The name needs the checksum of the bytes written: the temporary one cannot have it.
    tmp = _temporary(directory / f"part-{version}.parquet")
    try:
        con.execute(
            f"""COPY (SELECT * FROM serving.recommendations
                      WHERE as_of_date = DATE '{day.isoformat()}' ORDER BY user_id, rank)
                TO {_literal(tmp)}
                (FORMAT parquet, KV_METADATA {{{PUBLICATION_KEY}: {_literal(publication)}}})"""
        )
        _fsync(tmp)
        target = directory / f"part-{version}.{file_sha256(tmp)}.parquet"
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync(directory)
    return target


def _held_publications(con: duckdb.DuckDBPyConnection, paths: list[Path]) -> dict[str, str]:
    """{file: the publication id it holds} of Parquet files whose bytes were verified, read in
    one query (their footers only)."""
    if not paths:
        return {}
    rows = con.execute(
        "SELECT file_name, value FROM parquet_kv_metadata(?) WHERE key = ?",
        [[str(path) for path in paths], PUBLICATION_KEY],
    ).fetchall()
    return {name: value.decode() for name, value in rows}


def _checksum_problem(path: Path | None) -> str | None:
    if path is None:
        return "no file"
    named = _DAY_FILE.match(path.name)
    if named is None:
        return f"{path.name} records no checksum (exported before files were verified)"
    if file_sha256(path) != named["sha256"]:
        return f"{path.name} does not match its checksum (edited or corrupted on disk)"
    return None


def published_days(con: duckdb.DuckDBPyConnection) -> dict[dt.date, str | None]:
    """Each day of ``serving.recommendations`` and the id of its publication (None: a day
    published before publications were recorded)."""
    return dict(
        con.execute(
            """SELECT d.as_of_date, p.publication
               FROM (SELECT DISTINCT as_of_date FROM serving.recommendations) d
               LEFT JOIN serving.publications p USING (as_of_date)
               ORDER BY 1"""
        ).fetchall()
    )


def day_file_problems(
    con: duckdb.DuckDBPyConnection, root: Path, days: dict[dt.date, str | None] | None = None
) -> dict[dt.date, tuple[Path | None, str | None]]:
    """Each published day's newest file and why it does not serve the warehouse's publication
    of the day (None: it does, its bytes matching the checksum in its name and its metadata
    holding that publication's id). ``days``: :func:`published_days`, when the caller has it."""
    days = published_days(con) if days is None else days
    found = {}
    for day, publication in days.items():
        versions = _versions(root, day)
        newest = versions[-1] if versions else None
        problem = (
            "published before publications were recorded: no id to check its file against"
            if publication is None
            else _checksum_problem(newest)
        )
        found[day] = (newest, problem)
    held = _held_publications(con, [path for path, problem in found.values() if problem is None])
    for day, (path, problem) in found.items():
        if problem is None and held.get(str(path)) != days[day]:
            found[day] = (
                path,
                f"{path.name} holds publication {held.get(str(path))}, the warehouse"
                f" publication {days[day]} (a publication interrupted between its commit and"
                " its export, or an older file)",
            )
    return found


def _write_database(root: Path, files: dict[dt.date, Path]) -> Path:
    target = root / DATABASE
    _drop_leftovers(root)
    tmp = _temporary(target)
    newest = max(files)
    paths = ", ".join(_literal(files[day].resolve()) for day in sorted(files))
    try:
        with duckdb.connect(str(tmp)) as out:
            out.execute("CREATE SCHEMA serving")
            # What the views read, for the doctor (serving_problems).
            out.execute(
                f"CREATE TABLE serving.{DAY_FILES} AS"
                " SELECT unnest(?::DATE[]) AS as_of_date, unnest(?::VARCHAR[]) AS file",
                [sorted(files), [str(files[day].resolve()) for day in sorted(files)]],
            )
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
    con: duckdb.DuckDBPyConnection, root: str | Path | None, as_of: dt.date | None
) -> dict[str, str]:
    """Export day ``as_of`` of ``serving.recommendations`` (already committed) to ``root``,
    rewrite every other day whose file disagrees with the warehouse (see the module docstring),
    and replace ``published.duckdb`` by one listing every published day. ``as_of`` None only
    converges (``python -m cli.doctor --repair``). ``root`` None (an in-memory warehouse)
    exports nothing. Returns metadata: the day's file, the newest published day and, when
    there were any, the other days rewritten and why (``serving_repaired``)."""
    if root is None:
        return {}
    root = Path(root)
    files: dict[dt.date, Path] = {}
    repaired: dict[dt.date, str] = {}
    days = published_days(con)
    for day, (newest, problem) in day_file_problems(con, root, days).items():
        if day != as_of and problem is None:
            files[day] = newest
            continue
        publication = days[day]
        if publication is None:
            with transaction(con):  # adopted: a day published before its record existed
                publication = record_publication(con, day, None)
        if day != as_of:
            repaired[day] = problem
        files[day] = _export_day(con, root, day, publication)
    metadata = {}
    if as_of in files:
        metadata["serving_file"] = str(files[as_of])
    if not files:
        return metadata
    _write_database(root, files)
    now = time.time()
    for day in {as_of, *repaired} & set(files):
        _drop_superseded(root, day, now)
    metadata["serving_latest_day"] = max(files).isoformat()
    if repaired:
        metadata["serving_repaired"] = "; ".join(
            f"{day.isoformat()}: {problem}" for day, problem in sorted(repaired.items())
        )
    return metadata


def serving_problems(con: duckdb.DuckDBPyConnection, root: str | Path | None) -> list[str]:
    """Every way the serving files disagree with the warehouse: a day file (see
    :func:`day_file_problems`) or ``published.duckdb`` listing other files than the days'.
    Empty when all agree, or when nothing is exported (``root`` None)."""
    if root is None:
        return []
    root = Path(root)
    problems = []
    expected = {}
    states = day_file_problems(con, root)
    for day, (newest, problem) in states.items():
        if problem is None:
            expected[day] = str(newest.resolve())
        else:
            problems.append(f"serving file of {day.isoformat()}: {problem}")
    database = root / DATABASE
    if not database.exists():
        return [*problems, f"{database} is missing"] if expected or problems else problems
    try:
        with duckdb.connect(str(database), read_only=True) as served:
            listed = dict(
                served.execute(f"SELECT as_of_date, file FROM serving.{DAY_FILES}").fetchall()
            )
    except duckdb.Error as error:
        return [*problems, f"{database} lists no day files ({error.__class__.__name__})"]
    # A day whose file is wrong is reported once, above.
    for day in sorted((set(listed) - set(states)) | set(expected)):
        if listed.get(day) != expected.get(day):
            problems.append(
                f"{database.name} serves {listed.get(day) or 'nothing'} for {day.isoformat()},"
                f" the warehouse's is {expected.get(day) or 'none'}"
            )
    return problems
