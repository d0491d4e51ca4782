"""Applications read the published recommendations at any moment, while the pipeline writes.

Real processes: a reader polls the serving files (and, for comparison, a second one the DuckDB
warehouse) while days are published through dg.materialize, one of them older than the newest
(a backfill) and one blocked by the quality gate."""

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb

from recs_pipeline.infra.warehouse import ensure_schema, replace_partition
from recs_pipeline.serving.files import export_published
from resources import Warehouse
from tests.conftest import SMALL_LOG, make_resources
from tests.test_pipeline import ingest, run_chain

ROOT = Path(__file__).resolve().parents[1]
K = 5
DAYS = [SMALL_LOG.end - dt.timedelta(days=n) for n in (3, 2, 1, 0)]


def chain(instance, resources, day: dt.date, model: str):
    config = {
        "interaction_split": {"config": {"window_days": 14, "test_days": 2}},
        "trained_model": {"config": {"model": model}},
        "recommendations": {"config": {"k": K}},
    }
    return run_chain(instance, resources, day, run_config={"ops": config})


def start_reader(mode: str, target: Path, stop: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.serving_reader",
            mode,
            str(target),
            str(stop),
            str(out),
            "200000",
            "900",
        ],
        cwd=ROOT,
    )


def test_readers_see_whole_published_days_while_the_pipeline_writes(small_landing, tmp_path):
    resources = make_resources(small_landing, tmp_path)
    serving = tmp_path / "serving"
    database = Path(resources["warehouse"].database)
    stop = tmp_path / "stop"
    files_reader = start_reader("files", serving, stop, tmp_path / "files.json")
    warehouse_reader = start_reader("warehouse", database, stop, tmp_path / "warehouse.json")
    try:
        instance = dg.DagsterInstance.ephemeral()
        assert ingest(instance, resources, SMALL_LOG.start, SMALL_LOG.end).success
        # Two days in order, the gate blocking a third (popularity cannot beat itself), then an
        # older day published after the newest, as a backfill does.
        blocked_day, backfilled_day = DAYS[0], DAYS[1]
        outcomes = {
            DAYS[2]: chain(instance, resources, DAYS[2], "gfcf"),
            DAYS[3]: chain(instance, resources, DAYS[3], "gfcf"),
            blocked_day: chain(instance, resources, blocked_day, "popularity"),
            backfilled_day: chain(instance, resources, backfilled_day, "gfcf"),
        }
    finally:
        stop.touch()
        files_reader.wait(timeout=120)
        warehouse_reader.wait(timeout=120)
    published = {DAYS[1], DAYS[2], DAYS[3]}
    for day in published:
        assert outcomes[day].success, day
    assert "recommendations" not in {
        event.asset_key.to_user_string()
        for event in outcomes[blocked_day].get_asset_materialization_events()
    }

    with duckdb.connect(str(database), read_only=True) as con:
        truth = {
            day.isoformat(): (rows, users)
            for day, rows, users in con.execute(
                """SELECT as_of_date, count(*), count(DISTINCT user_id)
                   FROM serving.recommendations GROUP BY 1"""
            ).fetchall()
        }
        assert set(truth) == {day.isoformat() for day in published}
        # The serving views hold exactly the warehouse's rows, the blocked day in neither.
        con.execute(f"ATTACH '{serving / 'published.duckdb'}' AS published (READ_ONLY)")
        for view in ("serving.recommendations", "serving.latest_recommendations"):
            assert (
                con.execute(
                    f"""SELECT count(*) FROM (
                      (SELECT * FROM {view} EXCEPT ALL SELECT * FROM published.{view})
                      UNION ALL
                      (SELECT * FROM published.{view} EXCEPT ALL SELECT * FROM {view}))"""
                ).fetchone()[0]
                == 0
            ), view
    assert sorted(p.relative_to(serving).parent.name for p in serving.rglob("*.parquet")) == [
        f"as_of_date={day.isoformat()}" for day in sorted(published)
    ]

    seen = json.loads((tmp_path / "files.json").read_text())
    assert seen["stopped"] == "stop file"
    assert seen["n_errors"] == 0, seen["errors"]
    latest_days = set()
    for kind, groups, _times in seen["reads"]:
        if kind == "latest":
            # latest_recommendations: always exactly one day, never the blocked or backfilled one.
            assert len(groups) == 1, groups
            latest_days.add(groups[0][0])
        for day, rows, users, user_ranks, max_rank in groups:
            # A whole day: users × K rows, every user with ranks 1..K, the day's final count.
            assert (rows, users) == truth[day], (kind, groups)
            assert rows == users * K == user_ranks and max_rank == K, (kind, groups)
    assert latest_days <= {DAYS[2].isoformat(), DAYS[3].isoformat()}
    assert DAYS[3].isoformat() in latest_days

    old_way = json.loads((tmp_path / "warehouse.json").read_text())
    print(
        f"files reader: {seen['polls']} polls, 0 errors; warehouse reader: {old_way['polls']}"
        f" polls, {old_way['n_errors']} errors, e.g. {old_way['errors'][:1]}"
    )


def test_each_export_replaces_whole_files_under_a_polling_reader(con, tmp_path):
    """The same day re-published many times with a different number of users: a reader polling
    in another process sees one of the written versions, whole, every time."""
    day = dt.date(2026, 3, 1)
    stop, out = tmp_path / "stop", tmp_path / "reader.json"
    reader = start_reader("files", tmp_path / "serving", stop, out)
    sizes = [20 + 37 * (i % 5) for i in range(60)]
    try:
        for i, users in enumerate(sizes):
            replace_partition(
                con,
                "serving.recommendations",
                day,
                """SELECT CAST(? AS DATE), 'u' || u, r, 'i' || r, 1.0 / r, 'test'
                   FROM range(?) t(u), range(1, ? + 1) s(r)""",
                [day, users, K],
            )
            export_published(con, tmp_path / "serving", day)
            # Count-bounded wait for the reader's first poll, so the exports overlap its reads.
            while i == 0 and not Path(f"{out}.started").exists() and reader.poll() is None:
                time.sleep(0.05)
    finally:
        stop.touch()
        reader.wait(timeout=120)
    seen = json.loads(out.read_text())
    assert seen["stopped"] == "stop file" and seen["n_errors"] == 0, seen["errors"]
    assert seen["reads"]
    for kind, groups, _times in seen["reads"]:
        assert len(groups) == 1, (kind, groups)
        ((date, rows, users, user_ranks, max_rank),) = groups
        assert date == day.isoformat() and users in sizes, (kind, groups)
        assert rows == users * K == user_ranks and max_rank == K, (kind, groups)
    assert not [p for p in (tmp_path / "serving").rglob("*") if p.name.endswith(".tmp")]
    # Superseded versions stay for readers that opened published.duckdb before (GRACE_SECONDS).
    assert len(list((tmp_path / "serving").rglob("*.parquet"))) == len(sizes)


def test_an_export_killed_midway_leaves_nothing_behind_the_next_one(con, tmp_path):
    day = dt.date(2026, 3, 1)
    root = tmp_path / "serving"
    day_dir = root / "recommendations" / f"as_of_date={day.isoformat()}"
    day_dir.mkdir(parents=True)
    leftovers = [
        day_dir / ".part-1-dead.parquet.4242.tmp",
        root / ".published.duckdb.4242.tmp",
        root / ".published.duckdb.4242.tmp.wal",
    ]
    for leftover in leftovers:
        leftover.write_bytes(b"half")
    replace_partition(con, "serving.recommendations", day, "SELECT ?, 'u', 1, 'i', 1.0, 'm'", [day])
    export_published(con, root, day)
    assert not [p for p in leftovers if p.exists()]
    with duckdb.connect(str(root / "published.duckdb"), read_only=True) as served:
        assert served.execute("SELECT count(*) FROM serving.latest_recommendations").fetchone() == (
            1,
        )


def test_the_serving_folder_defaults_beside_the_warehouse_and_is_none_in_memory(tmp_path):
    assert Warehouse(database=str(tmp_path / "w.duckdb")).serving_path() == tmp_path / "serving"
    assert Warehouse(
        database=str(tmp_path / "w.duckdb"), serving_root="/srv/recs"
    ).serving_path() == Path("/srv/recs")
    assert Warehouse(database=":memory:").serving_path() is None
    assert Warehouse.model_fields["serving_root"].description


def served_rows(root: Path, day: dt.date) -> list[tuple]:
    with duckdb.connect(str(root / "published.duckdb"), read_only=True) as served:
        return served.execute(
            "SELECT * FROM serving.recommendations WHERE as_of_date = ? ORDER BY user_id, rank",
            [day],
        ).fetchall()


def silently_different_edit(path: Path, truth: list[tuple]) -> int:
    """Change one byte of the Parquet file ``path`` so that it still reads, but other rows than
    ``truth``: the edit a checksum is for. Returns its offset."""
    original = path.read_bytes()
    for offset in range(len(original) // 4, len(original)):
        edited = bytearray(original)
        edited[offset] ^= 0x01
        path.write_bytes(bytes(edited))
        try:
            rows = (
                duckdb.connect()
                .execute(f"SELECT * FROM '{path}' ORDER BY user_id, rank")
                .fetchall()
            )
        except duckdb.Error:
            continue
        if rows != truth:
            return offset
    raise AssertionError("no single-byte edit reads back different rows")


def test_a_day_file_edited_on_disk_is_rewritten_by_the_next_export_and_reported(tmp_path, capsys):
    """A byte of a published day file flipped (it still reads, other scores or items): the
    next export, of another day, verifies the file it would reuse and rewrites it from the
    warehouse; `python -m cli.doctor` reports such a file, and repairs it with --repair."""
    database, root = tmp_path / "warehouse.duckdb", tmp_path / "serving"
    day1, day2 = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
    con = duckdb.connect(str(database))
    ensure_schema(con)

    def publish(day: dt.date) -> dict:
        replace_partition(
            con,
            "serving.recommendations",
            day,
            """SELECT CAST(? AS DATE), 'u' || u, r, 'i' || ((u * 7 + r) % 50), 1.0 / (u + r),
                      'gfcf'
               FROM range(200) t(u), range(1, 6) s(r)""",
            [day],
        )
        return export_published(con, root, day)

    def truth(day: dt.date) -> list[tuple]:
        return con.execute(
            "SELECT * FROM serving.recommendations WHERE as_of_date = ? ORDER BY user_id, rank",
            [day],
        ).fetchall()

    publish(day1)
    (file1,) = (root / "recommendations" / f"as_of_date={day1}").glob("*.parquet")
    silently_different_edit(file1, truth(day1))
    assert served_rows(root, day1) != truth(day1)

    metadata = publish(day2)
    assert served_rows(root, day1) == truth(day1)
    assert served_rows(root, day2) == truth(day2)
    assert "does not match its checksum" in metadata["serving_repaired"], metadata
    assert day1.isoformat() in metadata["serving_repaired"]

    # The doctor: the same edit found, repaired, then nothing left.
    from cli import doctor

    (*_, newest) = sorted((root / "recommendations" / f"as_of_date={day1}").glob("*.parquet"))
    silently_different_edit(newest, truth(day1))
    expected = truth(day1)
    con.close()
    where = ["--warehouse", str(database), "--artifacts", str(tmp_path / "artifacts")]
    capsys.readouterr()
    assert doctor.main(where) == 1
    report = capsys.readouterr().out
    assert f"serving-files: serving file of {day1}: " in report, report
    assert "does not match its checksum" in report and "published-models: ok" in report, report
    assert doctor.main([*where, "--repair"]) == 0
    assert f"serving-files: rewrote {day1}" in capsys.readouterr().out
    assert doctor.main(where) == 0
    assert "serving-files: ok" in capsys.readouterr().out
    assert served_rows(root, day1) == expected
