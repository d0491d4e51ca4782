"""Faults: a run killed with SIGKILL mid-write loses nothing and leaves nothing half-written.

Each test first materialises a good state in a temporary warehouse and artifact root, then runs
one step again in a subprocess (``tests/fault_runner.py``: the same assets and resources, no
hooks in the product) on an input large enough that its write takes a measurable time, and
SIGKILLs it at moments found by polling every millisecond:

- ingestion (``raw_interactions``, a 600k-row extra file): after a random delay, when the DuckDB
  file is first written (bulk insert writing row groups, before the commit), and when the
  write-ahead log grows past its start-of-session size (commit or checkpoint; best effort, the
  window is a few milliseconds and a run that finishes first still has its result checked);
- publication (``recommendations``, K raised from 10 to 400: ~1M rows): when the file is first
  written, and at a random moment up to 0.4 s later; and, re-published with another model,
  exactly between the warehouse commit and the serving export (the runner's ``sigkill_at``),
  after which the next publication of another day must bring the serving files and
  ``published_model.pt`` back to the warehouse's lists;
- training (``trained_model``): at a random moment of the epoch after the second save of
  ``progress.pt``;
- the artifact store: at random moments while it rewrites a 16 MB checkpoint in a loop.

After every kill the warehouse opens (read-only, as a reader would), the partitions the run did
not touch are exactly as before (row count and a checksum of every column), the killed partition
holds either its old rows or its complete new rows, never a mix, and every artifact with a real
name (not a dot-prefixed temporary file) loads. Then the next run completes and yields the
expected rows; training resumes from its last saved epoch. Random choices print their seed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import torch

from assets.definitions import ALL_ASSETS
from assets.ingest import raw_interactions
from assets.lib.partitions import range_tags
from recs_pipeline.data.logs import ingest_day
from recs_pipeline.data.synthetic import SyntheticLogSpec, write_landing_files
from recs_pipeline.infra.artifacts import (
    MODEL,
    PROGRESS,
    PUBLISHED_MODEL,
    Artifact,
    UrlArtifactStore,
)
from recs_pipeline.infra.warehouse import ensure_schema
from recs_pipeline.schema import PARTITION_COLUMN
from tests.conftest import SMALL_LOG, make_resources
from tests.test_pipeline import ingest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")

PROJECT = Path(__file__).resolve().parents[1]
RNG = random.Random()  # seeded per test below; the seed is in every failure message


# --- running a step in a subprocess and killing it ------------------------------------------


@dataclasses.dataclass
class Outcome:
    trigger: str
    killed: bool  # SIGKILL was sent while the process was alive
    returncode: int
    seconds: float
    log: str  # stdout + tail of stderr, for failure messages


def job_for(resources: dict, asset: str, **extra) -> dict:
    return {
        "asset": asset,
        "warehouse": resources["warehouse"].database,
        "artifacts": resources["artifacts"].root,
        "landing": resources["log_source"].landing_root,
        **extra,
    }


def run_and_kill(
    job: dict, should_kill: Callable[[float | None], bool], trigger: str, tmp: Path
) -> Outcome:
    """Run ``job`` in a subprocess; poll every millisecond and SIGKILL it as soon as
    ``should_kill(seconds since the runner started work, or None before)`` is true."""
    err_path = tmp / f"runner-{time.monotonic_ns()}.err"
    started_at: list[float] = []
    out_lines: list[str] = []
    t0 = time.monotonic()
    with open(err_path, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fault_runner", json.dumps(job)],
            cwd=PROJECT,
            # One torch thread: on a busy machine two spinning OpenMP threads make the tiny
            # training epochs here ~30x slower; the faults under test do not depend on it.
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )

        def read() -> None:
            for line in proc.stdout:
                out_lines.append(line.rstrip())
                if line.startswith("RUNNER START"):
                    started_at.append(time.monotonic())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        killed = False
        deadline = t0 + 600  # generous: a loaded CI machine may be many times slower
        while proc.poll() is None:
            since = time.monotonic() - started_at[0] if started_at else None
            if should_kill(since):
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise AssertionError(
                    f"runner still running after 600 s: {err_path.read_text()[-3000:]}"
                )
            time.sleep(0.001)
        returncode = proc.wait()
        reader.join(timeout=5)
    killed = killed and returncode == -signal.SIGKILL
    log = "\n".join(out_lines) + "\n" + err_path.read_text()[-3000:]
    return Outcome(trigger, killed, returncode, time.monotonic() - t0, log)


def kill_when_file_written(path: Path, then: float = 0.0) -> Callable[[float | None], bool]:
    """True ``then`` seconds after ``path`` (the DuckDB file) was first written since now: its
    modification time or size changed. Only a bulk insert's row groups (or the replay of a log
    an earlier kill left) reach the main file before a commit; growth alone would miss an
    insert that reuses the free blocks an earlier killed or superseded write left behind."""

    def signature() -> tuple[int, int]:
        stat = path.stat()
        return stat.st_mtime_ns, stat.st_size

    base = signature()
    written: list[float] = []

    def should(_since: float | None) -> bool:
        if not written and signature() != base:
            written.append(time.monotonic())
        return bool(written) and time.monotonic() >= written[0] + then

    return should


def kill_when_wal_grows(db: Path, above: int = 64 << 10) -> Callable[[float | None], bool]:
    """True once the write-ahead log is larger than ``above`` bytes: the commit (or the
    checkpoint right after it) is under way. Opening a session writes a small WAL entry only.
    A WAL left large by an earlier kill counts only after the new run has replayed and
    truncated it (it shrinks below ``above`` or disappears first)."""
    wal = Path(str(db) + ".wal")

    def size() -> int:
        try:
            return wal.stat().st_size
        except FileNotFoundError:
            return 0

    armed = [size() <= above]

    def should(_since: float | None) -> bool:
        current = size()
        if not armed[0]:
            armed[0] = current <= above
            return False
        return current > above

    return should


def kill_after(seconds: float) -> Callable[[float | None], bool]:
    return lambda since: since is not None and since >= seconds


# --- checking the warehouse and the artifact store ------------------------------------------


def digest(con, table: str, day: dt.date, columns: list[str] | None = None) -> tuple[int, int]:
    """(rows, sum of row hashes) of one partition: equal digests mean the same multiset of rows."""
    if columns is None:
        columns = [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]
    (count, total) = con.execute(
        f"SELECT count(*), coalesce(sum(hash({', '.join(columns)})), 0) FROM {table}"
        f" WHERE {PARTITION_COLUMN[table]} = ?",
        [day],
    ).fetchone()
    return int(count), int(total)


def digests(db: str, days: list[dt.date]) -> dict[tuple[str, dt.date], tuple[int, int]]:
    """Digest of every partitioned table for each of ``days``, read through a read-only
    connection (the file must open after a crash, as it would for a reader)."""
    with duckdb.connect(db, read_only=True) as con:
        return {(table, day): digest(con, table, day) for table in PARTITION_COLUMN for day in days}


def artifact_report(root: Path) -> tuple[list[str], list[str]]:
    """(real artifacts, leftover temporary files). Every real artifact (a name without the
    leading dot of UrlArtifactStore's temporary files) must load completely, its checksum
    verified by the store."""
    real, temporary = [], []
    if not root.exists():
        return real, temporary
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = str(path.relative_to(root))
        if path.name.startswith("."):
            temporary.append(relative)
            continue
        asset, partition, name = path.relative_to(root).parts
        UrlArtifactStore(root).get(Artifact(asset, name), partition)
        real.append(relative)
    return real, temporary


# --- ingestion ------------------------------------------------------------------------------

INGEST_LOG = SyntheticLogSpec(
    start=dt.date(2026, 3, 1),
    days=3,
    n_users=300,
    n_items=100,
    events_per_day=500,
    dirty_fraction=0.01,
    seed=3,
)
BIG_ROWS = 600_000  # about 18 MB of CSV: its insert writes row groups for a few hundred ms


def write_big_day(folder: Path, day: dt.date, rows: int) -> Path:
    """One large CSV for ``day``, with one row in a thousand invalid (empty item id)."""
    path = folder / "big-0.csv"
    day_ms = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)
    with duckdb.connect() as con:
        con.execute(
            f"""COPY (SELECT {day_ms} + (i * 997) % 86400000 AS timestamp,
                             'u' || (i % 5000) AS user_id,
                             CASE WHEN i % 1000 = 0 THEN '' ELSE 'i' || (i % 3000) END AS item_id,
                             'view' AS event_type
                      FROM range({rows}) t(i)) TO '{path}' (HEADER)"""
        )
    return path


def test_ingestion_killed_mid_write_keeps_old_partitions_and_the_next_run_completes(tmp_path):
    seed = time.time_ns() % 1_000_000
    RNG.seed(seed)
    landing = tmp_path / "landing"
    write_landing_files(INGEST_LOG, landing)
    resources = make_resources(landing, tmp_path)
    db = Path(resources["warehouse"].database)
    day1, day2, day3 = (INGEST_LOG.start + dt.timedelta(days=i) for i in range(3))
    good = dg.materialize(
        [raw_interactions],
        instance=dg.DagsterInstance.ephemeral(),
        resources=resources,
        tags=range_tags(day1, day3),
    )
    assert good.success
    days = [day1, day2, day3]
    before = digests(str(db), days)
    assert all(before[("raw.interactions", d)][0] > 0 for d in days)
    assert all(before[("raw.rejected_interactions", d)][0] > 0 for d in days)

    # Day 3 gets a large extra file; its complete new partitions, ingested into a scratch
    # in-memory warehouse by the same core function, are what a finished run must leave.
    write_big_day(landing / day3.isoformat(), day3, BIG_ROWS)
    source = resources["log_source"]
    with duckdb.connect() as scratch:
        ensure_schema(scratch)
        ingest_day(scratch, source.files_for(day3), source.log_format(), day3)
        expected = {
            table: digest(scratch, table, day3)
            for table in ("raw.interactions", "raw.rejected_interactions")
        }
    assert expected["raw.interactions"][0] > BIG_ROWS * 0.99
    assert expected != {t: before[(t, day3)] for t in expected}

    # A single-run backfill of days 2..3: day 2 is rewritten identically, day 3 grows.
    job = job_for(resources, "raw_interactions", range=[day2.isoformat(), day3.isoformat()])
    delay = RNG.uniform(0.3, 2.0)
    outcomes = []
    # Triggers are made right before their run: they measure the file as the last kill left it.
    for trigger, should_kill in (
        (f"after {delay:.2f}s", lambda: kill_after(delay)),
        ("insert writing row groups", lambda: kill_when_file_written(db)),
        ("commit or checkpoint", lambda: kill_when_wal_grows(db)),
    ):
        outcome = run_and_kill(job, should_kill(), trigger, tmp_path)
        outcomes.append(outcome)
        context = f"seed {seed}, kill {trigger}: rc {outcome.returncode}\n{outcome.log}"
        after = digests(str(db), days)
        for table in PARTITION_COLUMN:
            for day in (day1, day2):
                assert after[(table, day)] == before[(table, day)], (table, day, context)
        state = {t: after[(t, day3)] for t in expected}
        old = {t: before[(t, day3)] for t in expected}
        # Both tables of the day change together: old and old, or new and new.
        assert state in (old, expected), (state, old, expected, context)
        artifact_report(Path(resources["artifacts"].root))
    # The file-write trigger fires only while the file is being written: that kill was mid-write.
    assert outcomes[1].killed, outcomes[1].log

    rerun = dg.materialize(
        [raw_interactions],
        instance=dg.DagsterInstance.ephemeral(),
        resources=resources,
        partition_key=day3.isoformat(),
    )
    assert rerun.success
    final = digests(str(db), days)
    assert {t: final[(t, day3)] for t in expected} == expected
    for table in PARTITION_COLUMN:
        for day in (day1, day2):
            assert final[(table, day)] == before[(table, day)], (table, day)


# --- publication ----------------------------------------------------------------------------

PUBLISH_LOG = SyntheticLogSpec(
    start=dt.date(2026, 3, 1),
    days=8,
    n_users=3000,
    n_items=600,
    events_per_day=3000,
    seed=3,
)
# Publication needs the quality gate's verdict on the model it publishes, so the model is
# evaluated too.
UPSTREAM = ["interaction_split", "interaction_graph", "trained_model", "model_evaluation"]
UPSTREAM_CONFIG = {
    "ops": {
        "interaction_split": {"config": {"window_days": 7, "test_days": 1}},
        # Training-free: the fault under test is in publication, not in training. (Popularity
        # itself can never pass the gate: it cannot beat itself.)
        "trained_model": {"config": {"model": "gfcf"}},
    }
}
OLD_K, NEW_K = 10, 400  # 400 of 600 items for ~2,600 users: about a million rows to publish


def publish_config(k: int) -> dict:
    return {"ops": {"recommendations": {"config": {"k": k}}}}


def publication_shape(db: str, day: dt.date) -> tuple[int, int, int, int]:
    """(users, rows, users whose list is not ranks 1..n of n distinct items, latest days)."""
    with duckdb.connect(db, read_only=True) as con:
        users, rows, broken = con.execute(
            """SELECT count(*), sum(n), count(*) FILTER (WHERE n <> max_rank OR n <> items
                                                        OR min_rank <> 1)
               FROM (SELECT user_id, count(*) AS n, max(rank) AS max_rank, min(rank) AS min_rank,
                            count(DISTINCT item_id) AS items
                     FROM serving.recommendations WHERE as_of_date = ? GROUP BY user_id)""",
            [day],
        ).fetchone()
        latest = con.execute(
            "SELECT count(DISTINCT as_of_date) FROM serving.latest_recommendations"
        ).fetchone()[0]
    return users, int(rows or 0), broken, latest


def republished(day: dt.date) -> set[tuple[str, dt.date]]:
    """The partitions a publication of ``day`` replaces: its lists and their record."""
    return {("serving.recommendations", day), ("serving.publications", day)}


# Digest of a published partition that ignores which of equally scored items got which rank.
RECS_COLUMNS = ["as_of_date", "user_id", "rank", "score", "model"]


def test_publication_killed_mid_write_keeps_published_lists_and_the_next_run_completes(
    tmp_path,
):
    seed = time.time_ns() % 1_000_000
    RNG.seed(seed)
    landing = tmp_path / "landing"
    write_landing_files(PUBLISH_LOG, landing)
    resources = make_resources(landing, tmp_path)
    db = Path(resources["warehouse"].database)
    instance = dg.DagsterInstance.ephemeral()
    assert ingest(instance, resources, PUBLISH_LOG.start, PUBLISH_LOG.end).success
    day1, day2 = PUBLISH_LOG.end - dt.timedelta(days=1), PUBLISH_LOG.end
    for day in (day1, day2):
        for selection, config in (
            (UPSTREAM, UPSTREAM_CONFIG),
            (["recommendations"], publish_config(OLD_K)),
        ):
            assert dg.materialize(
                ALL_ASSETS,
                selection=selection,
                partition_key=day.isoformat(),
                instance=instance,
                resources=resources,
                run_config=config,
            ).success
    days = [*(PUBLISH_LOG.start + dt.timedelta(days=i) for i in range(PUBLISH_LOG.days))]
    before = digests(str(db), days)
    with duckdb.connect(str(db), read_only=True) as con:
        old_recs = digest(con, "serving.recommendations", day2, RECS_COLUMNS)
    users, rows, broken, _ = publication_shape(str(db), day2)
    assert users > 2000 and rows == users * OLD_K and broken == 0
    artifacts_before, _ = artifact_report(Path(resources["artifacts"].root))

    job = job_for(
        resources, "recommendations", partition=day2.isoformat(), run_config=publish_config(NEW_K)
    )
    delay = RNG.uniform(0.0, 0.4)
    seen = []
    outcomes = []
    # Triggers are made right before their run: they measure the file as the last kill left it.
    for trigger, should_kill in (
        ("insert writing row groups", lambda: kill_when_file_written(db)),
        (f"{delay:.2f}s after the insert began", lambda: kill_when_file_written(db, then=delay)),
    ):
        outcome = run_and_kill(job, should_kill(), trigger, tmp_path)
        outcomes.append(outcome)
        context = f"seed {seed}, kill {trigger}: rc {outcome.returncode}\n{outcome.log}"
        after = digests(str(db), days)
        for key, value in before.items():
            if key not in republished(day2):
                assert after[key] == value, (key, context)
        n_users, n_rows, n_broken, latest = publication_shape(str(db), day2)
        assert (n_users, n_broken, latest) == (users, 0, 1), context
        # Old lists (K = 10 each) or new ones (K = 400 each), never some of each.
        assert n_rows in (users * OLD_K, users * NEW_K), (n_rows, context)
        with duckdb.connect(str(db), read_only=True) as con:
            seen.append((digest(con, "serving.recommendations", day2, RECS_COLUMNS), context))
        assert artifact_report(Path(resources["artifacts"].root))[0] == artifacts_before
    assert outcomes[0].killed, outcomes[0].log

    rerun = dg.materialize(
        ALL_ASSETS,
        selection=["recommendations"],
        partition_key=day2.isoformat(),
        instance=instance,
        resources=resources,
        run_config=publish_config(NEW_K),
    )
    assert rerun.success
    assert publication_shape(str(db), day2) == (users, users * NEW_K, 0, 1)
    with duckdb.connect(str(db), read_only=True) as con:
        new_recs = digest(con, "serving.recommendations", day2, RECS_COLUMNS)
    for state, context in seen:
        assert state in (old_recs, new_recs), context
    final = digests(str(db), days)
    for key, value in before.items():
        if key not in republished(day2):
            assert final[key] == value, key


def served_differences(db: Path, day: dt.date) -> int:
    """Rows of ``day`` in the warehouse and not in published.duckdb, or the other way round."""
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute(f"ATTACH '{db.parent / 'serving' / 'published.duckdb'}' AS served (READ_ONLY)")
        return con.execute(
            """SELECT count(*) FROM (
                 (SELECT * FROM serving.recommendations WHERE as_of_date = $day
                  EXCEPT ALL SELECT * FROM served.serving.recommendations WHERE as_of_date = $day)
                 UNION ALL
                 (SELECT * FROM served.serving.recommendations WHERE as_of_date = $day
                  EXCEPT ALL SELECT * FROM serving.recommendations WHERE as_of_date = $day))""",
            {"day": day},
        ).fetchone()[0]


def doctor(resources: dict, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.doctor",
            "--warehouse",
            resources["warehouse"].database,
            "--artifacts",
            resources["artifacts"].root,
            *extra,
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_publication_killed_between_commit_and_export_converges_at_the_next_one(
    small_landing, tmp_path
):
    """A day re-published with another model, SIGKILLed after the warehouse committed the new
    lists and before the serving export and the model pin: the serving files and
    published_model.pt still hold the old model's. The next publication, of another day,
    brings both to the warehouse's lists, and the doctor reports the disagreement meanwhile."""
    resources = make_resources(small_landing, tmp_path)
    db = Path(resources["warehouse"].database)
    store = UrlArtifactStore(resources["artifacts"].root)
    instance = dg.DagsterInstance.ephemeral()
    assert ingest(instance, resources, SMALL_LOG.start, SMALL_LOG.end).success
    day1, day2 = SMALL_LOG.end - dt.timedelta(days=1), SMALL_LOG.end

    def materialise(day: dt.date, selection: list[str], model: str) -> None:
        config = {
            "interaction_split": {"config": {"window_days": 14, "test_days": 2}},
            "trained_model": {"config": {"model": model}},
            "recommendations": {"config": {"k": 5}},
        }
        assert dg.materialize(
            ALL_ASSETS,
            selection=selection,
            partition_key=day.isoformat(),
            instance=instance,
            resources=resources,
            run_config={"ops": {key: config[key] for key in selection if key in config}},
        ).success

    for day in (day1, day2):
        materialise(day, [*UPSTREAM, "recommendations"], "gfcf")
    gfcf = store.stamp(MODEL, day2.isoformat()).sha256
    materialise(day2, UPSTREAM, "dnfilter")
    dnfilter = store.stamp(MODEL, day2.isoformat()).sha256
    assert dnfilter != gfcf

    job = job_for(
        resources,
        "recommendations",
        partition=day2.isoformat(),
        run_config=publish_config(5),
        sigkill_at="recs_pipeline.steps.publish.export_published",
    )
    outcome = run_and_kill(job, lambda _since: False, "at the serving export", tmp_path)
    assert outcome.returncode == -signal.SIGKILL and "RUNNER SIGKILL" in outcome.log, outcome.log
    with duckdb.connect(str(db), read_only=True) as con:
        models = con.execute(
            "SELECT DISTINCT model FROM serving.recommendations"
            " WHERE as_of_date = ? AND model <> 'popularity'",
            [day2],
        ).fetchall()
    assert models == [("dnfilter",)]  # the warehouse committed the new lists
    assert served_differences(db, day2) > 0  # applications still read the old ones
    assert store.stamp(PUBLISHED_MODEL, day2.isoformat()).sha256 == gfcf
    found = doctor(resources)

    # A later publication of another day converges every copy on the warehouse.
    materialise(day1, ["recommendations"], "gfcf")
    assert served_differences(db, day2) == 0
    assert served_differences(db, day1) == 0
    assert store.stamp(PUBLISHED_MODEL, day2.isoformat()).sha256 == dnfilter

    assert found.returncode == 1, found.stdout + found.stderr
    assert f"serving file of {day2.isoformat()}" in found.stdout, found.stdout
    assert f"recommendations/{day2.isoformat()}/published_model.pt" in found.stdout
    clean = doctor(resources)
    assert clean.returncode == 0, clean.stdout + clean.stderr


# --- the artifact store itself --------------------------------------------------------------

_WRITER = """
import sys, torch
from recs_pipeline.infra.artifacts import MODEL, UrlArtifactStore
store = UrlArtifactStore(sys.argv[1])
print("RUNNER START", flush=True)
version = 0
while True:
    version += 1
    store.put(MODEL, "2026-03-01",
              {"version": version, "weights": torch.full((4_000_000,), float(version))})
    print(version, flush=True)
"""


def test_artifact_overwritten_in_a_loop_and_killed_is_always_a_whole_version(tmp_path):
    """SIGKILL at random moments while UrlArtifactStore rewrites a 16 MB checkpoint: the
    artifact is always one complete version, never a torn file."""
    seed = time.time_ns() % 1_000_000
    RNG.seed(seed)
    root = tmp_path / "artifacts"
    writer = tmp_path / "writer.py"
    writer.write_text(_WRITER)
    for attempt in range(2):
        printed: list[str] = []
        proc = subprocess.Popen(
            [sys.executable, str(writer), str(root)],
            cwd=PROJECT,
            env={**os.environ, "PYTHONPATH": str(PROJECT)},
            stdout=subprocess.PIPE,
            text=True,
        )
        reader = threading.Thread(
            target=lambda out=proc.stdout, into=printed: into.extend(line.strip() for line in out),
            daemon=True,
        )
        reader.start()
        deadline = time.monotonic() + 60
        while len(printed) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.001)
        # Writes follow each other without pause: a random moment falls inside one.
        time.sleep(RNG.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, printed
        reader.join(timeout=5)
        last_done = int(printed[-1])
        state = UrlArtifactStore(root).get(MODEL, "2026-03-01")
        version = state["version"]
        assert version in (last_done, last_done + 1), (version, last_done, seed)
        assert torch.equal(state["weights"], torch.full((4_000_000,), float(version))), seed
        real, temporary = artifact_report(root)
        assert real == ["trained_model/2026-03-01/model.pt"], (real, seed, attempt)


# --- training -------------------------------------------------------------------------------

TRAIN_DAY = SMALL_LOG.end
TRAIN_UPSTREAM = ["interaction_split", "interaction_graph", "hard_negatives"]
SPLIT_CONFIG = {"interaction_split": {"config": {"window_days": 14, "test_days": 2}}}
# Evaluated every epoch, never stopped early: a run of 6 epochs saves progress 6 times.
TRAIN_CONFIG = {
    "epochs": 6,
    "dim": 16,
    "layers": 2,
    "batch_size": 4096,
    "eval_every": 1,
    "patience": 100,
}


def kill_mid_epoch_after_saves(progress: Path, saves: int) -> Callable[[float | None], bool]:
    """True at a random moment of the epoch after the ``saves``-th save of ``progress``
    (each save replaces the file: a new mtime), the epoch length measured from the saves."""
    seen: list[tuple[float, tuple[int, int]]] = []
    wait: list[float] = []

    def should(_since: float | None) -> bool:
        try:
            stat = progress.stat()
        except FileNotFoundError:
            return False
        version = (stat.st_ino, stat.st_mtime_ns)
        if not seen or seen[-1][1] != version:
            seen.append((time.monotonic(), version))
            if len(seen) == saves:
                epoch = seen[-1][0] - seen[-2][0] if saves > 1 else 0.2
                wait.append(seen[-1][0] + RNG.uniform(0.1, 0.8) * epoch)
        return bool(wait) and time.monotonic() >= wait[0]

    return should


def file_bytes(path: Path) -> bytes:
    return path.read_bytes()


def test_training_killed_mid_run_keeps_the_previous_model_and_resumes(small_landing, tmp_path):
    seed = time.time_ns() % 1_000_000
    RNG.seed(seed)
    resources = make_resources(small_landing, tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    key = TRAIN_DAY.isoformat()
    assert dg.materialize(
        [raw_interactions],
        instance=instance,
        resources=resources,
        tags=range_tags((TRAIN_DAY - dt.timedelta(days=13)), key),
    ).success
    assert dg.materialize(
        ALL_ASSETS,
        selection=TRAIN_UPSTREAM,
        partition_key=key,
        instance=instance,
        resources=resources,
        run_config={"ops": SPLIT_CONFIG},
    ).success
    # The previous model of this partition, finished and saved (training-free: quick).
    short = {"ops": {"trained_model": {"config": {"model": "popularity"}}}}
    assert dg.materialize(
        ALL_ASSETS,
        selection=["trained_model"],
        partition_key=key,
        instance=instance,
        resources=resources,
        run_config=short,
    ).success
    root = Path(resources["artifacts"].root)
    model_path = root / "trained_model" / key / "model.pt"
    progress_path = root / "trained_model" / key / "progress.pt"
    previous = file_bytes(model_path)
    assert not progress_path.exists()

    config = {"ops": {"trained_model": {"config": TRAIN_CONFIG}}}
    job = job_for(resources, "trained_model", partition=key, run_config=config)
    outcome = run_and_kill(
        job, kill_mid_epoch_after_saves(progress_path, saves=2), "epoch after 2nd save", tmp_path
    )
    context = f"seed {seed}: rc {outcome.returncode}\n{outcome.log}"
    assert outcome.killed, context
    # The finished model of the earlier run is untouched and loads; the progress is whole.
    assert file_bytes(model_path) == previous, context
    store = UrlArtifactStore(root)
    assert store.get(MODEL, key)["model"] == "popularity", context
    real, _temporary = artifact_report(root)
    assert f"trained_model/{key}/progress.pt" in real, context
    saved_epoch = store.get(PROGRESS, key)["epoch"]
    assert 2 <= saved_epoch < TRAIN_CONFIG["epochs"], context

    lines: list[str] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the subprocess (see run_and_kill)
    try:
        rerun = dg.materialize(
            ALL_ASSETS,
            selection=["trained_model"],
            partition_key=key,
            instance=instance,
            resources=resources,
            run_config=config,
        )
    finally:
        torch.set_num_threads(threads)
    assert rerun.success
    for event in rerun.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            metadata = event.event_specific_data.materialization.metadata
    for record in instance.all_logs(rerun.run_id):
        lines.append(record.user_message)
    assert metadata["resumed_from_epoch"].value == saved_epoch, [
        line for line in lines if "epoch" in line or "progress" in line or "warm" in line
    ]
    assert any(line.startswith(f"resumed from epoch {saved_epoch}") for line in lines), lines
    trained = [line for line in lines if line.startswith("epoch ")]
    assert trained and trained[0].startswith(f"epoch {saved_epoch + 1}:"), trained
    state = store.get(MODEL, key)
    assert [h["epoch"] for h in state["history"]] == list(range(1, TRAIN_CONFIG["epochs"] + 1))
    assert not progress_path.exists()


# --- a failed step releases the warehouse ---------------------------------------------------


def test_a_step_failing_inside_a_warehouse_session_releases_the_file(tmp_path):
    landing = tmp_path / "landing"
    (landing / "2026-03-02").mkdir(parents=True)
    # The mapped user column exists in no file: ingest_day raises inside the session.
    (landing / "2026-03-02" / "events-0.csv").write_text("timestamp,item_id\n1772409600000,i1\n")
    resources = make_resources(landing, tmp_path)
    import gc

    gc.disable()  # deterministic: nothing but reference counting frees the connection
    try:
        result = dg.materialize(
            [raw_interactions],
            partition_key="2026-03-02",
            instance=dg.DagsterInstance.ephemeral(),
            resources=resources,
            raise_on_error=False,
        )
        assert not result.success
        # Another process (the next run, a reader) can open the file read-write right away.
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "import duckdb, sys; duckdb.connect(sys.argv[1]).close()",
                resources["warehouse"].database,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert probe.returncode == 0, probe.stderr[-500:]
    finally:
        gc.enable()
        gc.collect()
