"""History exports (issue 12, findings 3 and 4): one file, many files or hive folders holding
the whole log are ingested in one pass by event day; every row is accounted for per day
(in = accepted + quarantined + outside the run's range); implausible dates are quarantined; a
day whose rows were all rejected fails the ``rows_accepted`` check. Hand-written fixtures mimic
a MovieLens ratings CSV and a Last.fm tag TSV (never the real datasets)."""

from __future__ import annotations

import datetime as dt
import gc
from pathlib import Path

import dagster as dg
import pytest

from assets.ingest import raw_interactions
from assets.lib.partitions import range_tags
from recs_pipeline.data.logs import EmptyDaysError, LogFormat, export_files, ingest_history
from resources import LogSource, Warehouse

D1, D2, D3 = (dt.date(2026, 3, 1) + dt.timedelta(days=i) for i in range(3))
BEFORE, AFTER = dt.date(2026, 2, 27), dt.date(2026, 3, 5)


def epoch(day: dt.date, seconds: int = 0) -> int:
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()) + seconds


# MovieLens-like: userId,movieId,rating,timestamp (epoch seconds), two trailing empty columns.
MOVIELENS_ROWS = [
    (1, 31, 2.5, epoch(BEFORE, 10)),  # before the range
    (1, 1029, 3.0, epoch(D1, 60)),
    (2, 1061, 4.0, epoch(D1, 3600)),
    (2, 1129, 2.0, epoch(D2, 7)),
    ("", 1172, 4.0, epoch(D2, 8)),  # empty user id: quarantined on D2
    (3, 1263, 5.0, epoch(AFTER, 5)),  # after the range
    (4, 1287, 1.0, -441763200),  # 1956-01-02: implausible
]
MOVIELENS = "userId,movieId,rating,timestamp,,\n" + "".join(
    f"{u},{i},{r},{t},,\n" for u, i, r, t in MOVIELENS_ROWS
)
ML_FORMAT = LogFormat(
    user_column="userId",
    item_column="movieId",
    timestamp_column="timestamp",
    timestamp_unit="s",
    event_type_column=None,
    weight_column="rating",
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def stored(con, table: str) -> dict[dt.date, int]:
    return dict(con.execute(f"SELECT event_date, count(*) FROM {table} GROUP BY 1").fetchall())


def test_a_one_file_export_is_read_once_and_each_day_written_to_its_own_partition(con, tmp_path):
    path = write(tmp_path / "land" / "ratings.csv", MOVIELENS)
    files = export_files(tmp_path / "land", "ratings.csv")
    assert files == [str(path.resolve())]
    report = ingest_history(con, files, ML_FORMAT, [D1, D2, D3])

    assert stored(con, "raw.interactions") == {D1: 2, D2: 1}
    by_day = {r.day: r for r in report.days}
    assert (by_day[D1].accepted, by_day[D1].rejected) == (2, 0)
    assert (by_day[D2].accepted, by_day[D2].rejected) == (1, 1)
    assert (by_day[D3].accepted, by_day[D3].rejected) == (0, 0)
    assert by_day[D2].reasons == {"null or empty user id": 1}
    # The rows outside the range are counted, never quarantined; the 1956 row has no plausible
    # day, so it belongs to the export's first day (2026-02-27), before the range as well.
    assert (report.outside_before, report.outside_after) == (2, 1)
    assert report.undated == 1 and report.undated_day == BEFORE
    assert stored(con, "raw.rejected_interactions") == {D2: 1}
    # Every row of the file is accounted for, exactly.
    assert report.rows_in == len(MOVIELENS_ROWS)
    assert report.rows_in == (
        sum(r.accepted + r.rejected for r in report.days)
        + report.outside_before
        + report.outside_after
    )
    weights = con.execute("SELECT weight FROM raw.interactions ORDER BY event_ts").fetchall()
    assert weights == [(3.0,), (4.0,), (2.0,)]

    # A one-day run of the same export writes that day only; the rest is outside its range.
    report = ingest_history(con, files, ML_FORMAT, [D2])
    assert [(r.day, r.accepted, r.rejected) for r in report.days] == [(D2, 1, 1)]
    assert (report.outside_before, report.outside_after) == (4, 1)
    assert stored(con, "raw.interactions") == {D1: 2, D2: 1}  # idempotent, nothing duplicated


def test_implausible_dates_are_quarantined_in_the_exports_first_day(con, tmp_path):
    write(tmp_path / "land" / "ratings.csv", MOVIELENS)
    files = export_files(tmp_path / "land", "*.csv")
    report = ingest_history(con, files, ML_FORMAT, [BEFORE, D1])
    first = report.days[0]
    assert first.day == BEFORE and first.accepted == 1
    assert first.reasons == {"implausible timestamp": 1}
    [(record, reason)] = con.execute(
        "SELECT record, reason FROM raw.rejected_interactions WHERE event_date = ?", [BEFORE]
    ).fetchall()
    assert "-441763200" in record and reason.startswith("implausible timestamp")
    # With the bound lowered, 1956 is a day of its own (outside this range: counted).
    lowered = LogFormat(**{**ML_FORMAT.__dict__, "min_plausible_date": dt.date(1950, 1, 1)})
    report = ingest_history(con, files, lowered, [BEFORE, D1])
    assert report.days[0].reasons == {} and report.outside_before == 1


def test_the_min_plausible_date_also_applies_to_per_day_folders(con, tmp_path):
    from recs_pipeline.data.logs import ingest_day

    path = write(tmp_path / "x.csv", "userId,movieId,rating,timestamp\n1,2,3,0\n")
    day = dt.date(1970, 1, 1)
    report = ingest_day(con, [str(path)], ML_FORMAT, day)
    assert (report.accepted, report.reasons) == (0, {"implausible timestamp": 1})


# Last.fm-like: tab-separated, the date in three columns (month granularity in practice).
LASTFM = (
    "userID\tartistID\ttagID\tday\tmonth\tyear\n"
    "2\t52\t13\t1\t3\t2026\n"
    "2\t52\t15\t1\t3\t2026\n"
    "2\t63\t13\t2\t3\t2026\n"
    "7\t63\t13\t1\t13\t2026\n"  # month 13: unparseable
    "9\t70\t13\t1\t4\t1956\n"  # implausible
)


def test_a_tsv_with_the_date_in_three_columns(con, tmp_path):
    folder = tmp_path / "land"
    write(folder / "user_taggedartists.dat", LASTFM)
    fmt = LogFormat(
        user_column="userID",
        item_column="artistID",
        timestamp_column="",
        date_columns=("year", "month", "day"),
        event_type_column=None,
    )
    report = ingest_history(con, export_files(folder, "*.dat"), fmt, [D1, D2])
    assert stored(con, "raw.interactions") == {D1: 2, D2: 1}
    assert report.days[0].reasons == {"unparseable timestamp": 1, "implausible timestamp": 1}
    assert report.rows_in == 5


def test_hive_folders_by_month_and_a_day_without_rows_keeps_its_stored_partition(con, tmp_path):
    land = tmp_path / "land"
    header = "userId,movieId,rating,timestamp\n"
    write(land / "month=2026-02" / "part-0.csv", header + f"1,1,1,{epoch(BEFORE)}\n")
    write(land / "month=2026-03" / "part-0.csv", header + f"1,2,1,{epoch(D1)}\n")
    files = export_files(land, "month=*/*.csv")
    assert len(files) == 2
    ingest_history(con, files, ML_FORMAT, [D1])
    (land / "month=2026-03" / "part-0.csv").write_text(header)  # D1's rows are gone
    with pytest.raises(EmptyDaysError, match="allow_empty_days"):
        ingest_history(con, export_files(land, "month=*/*.csv"), ML_FORMAT, [D1])
    assert stored(con, "raw.interactions") == {D1: 1}
    ingest_history(con, files, ML_FORMAT, [D1], allow_empty_days=True)
    assert stored(con, "raw.interactions") == {}


def test_a_history_range_is_written_in_chunks_and_a_failure_names_the_days_committed(
    con, tmp_path, monkeypatch
):
    """The range is replaced a chunk of days per transaction (two statements per table, not
    two per day: a many-year export has thousands of days). A failure in a chunk leaves the
    earlier chunks committed and names them; the failed chunk and later ones are untouched."""
    from recs_pipeline.data import logs

    path = write(tmp_path / "land" / "ratings.csv", MOVIELENS)
    monkeypatch.setattr(logs, "CHUNK_ROWS", 1)  # every day with rows starts a chunk
    real = logs.replace_partitions
    calls = []

    def failing_on_the_second_chunk(con, table, first, last, *args):
        calls.append((table, first, last))
        if first == D2:
            raise OSError("disk full (injected)")
        return real(con, table, first, last, *args)

    monkeypatch.setattr(logs, "replace_partitions", failing_on_the_second_chunk)
    with pytest.raises(logs.IngestInterrupted) as raised:
        ingest_history(con, [str(path)], ML_FORMAT, [D1, D2, D3])
    assert (raised.value.day, raised.value.committed, raised.value.not_ingested) == (D2, [D1], [D3])
    assert calls[0] == ("raw.interactions", D1, D1)
    assert stored(con, "raw.interactions") == {D1: 2}


# -- through Dagster: per-day metadata and the rows_accepted check, read from the instance --


def materialize(landing: Path, db: Path, days: list[dt.date], instance, **source):
    result = dg.materialize(
        [raw_interactions],
        instance=instance,
        resources={
            "warehouse": Warehouse(database=str(db)),
            "log_source": LogSource(landing_root=str(landing), **source),
        },
        tags=range_tags(days[0], days[-1]),
        raise_on_error=False,
    )
    gc.collect()
    return result


def day_metadata(instance, day: dt.date) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("raw_interactions"), asset_partitions=[day.isoformat()]
        ),
        limit=1,
    ).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def check_evaluations(
    result, check: str = "rows_accepted"
) -> dict[str | None, dg.AssetCheckEvaluation]:
    return {e.partition: e for e in result.get_asset_check_evaluations() if e.check_name == check}


ML_SOURCE = {
    "path_pattern": "ratings.csv",
    "user_column": "userId",
    "item_column": "movieId",
    "timestamp_unit": "s",
    "event_type_column": None,
    "weight_column": "rating",
}


def test_a_ranged_run_reports_each_day_and_fails_the_check_on_a_day_all_rejected(tmp_path):
    landing = tmp_path / "land"
    rows = MOVIELENS + f",9,1.0,{epoch(D3, 1)},,\n,9,1.0,{epoch(D3, 2)},,\n"  # D3: all bad
    write(landing / "ratings.csv", rows)
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(landing, tmp_path / "w.duckdb", [D1, D2, D3], instance, **ML_SOURCE)
    assert result.success  # the check fails; the ingest itself succeeded

    d1, d2, d3 = (day_metadata(instance, day) for day in (D1, D2, D3))
    assert (d1["rows_in"], d1["rows_ingested"], d1["rows_quarantined"]) == (2, 2, 0)
    assert (d2["rows_in"], d2["rows_ingested"], d2["rows_quarantined"]) == (2, 1, 1)
    assert (d3["rows_in"], d3["rows_ingested"], d3["rows_quarantined"]) == (2, 0, 2)
    assert d2["quarantine_reasons"] == {"null or empty user id": 1}

    evaluations = check_evaluations(result)
    assert {day: e.passed for day, e in evaluations.items() if day} == {
        D1.isoformat(): True,
        D2.isoformat(): True,
        D3.isoformat(): False,
    }
    assert "null or empty user id" in evaluations[D3.isoformat()].description


def test_a_ranged_runs_day_checks_attach_to_that_days_new_materialization(tmp_path):
    """Issue 28, UI finding 3: the per-day check results of a ranged run were logged before
    the days' materializations, so each attached to the day's previous one and the UI showed
    the check "Missing" on the new one. Now each follows its day's materialization and names
    it as its target; a day without rows has nothing to check and gets no evaluation."""
    landing = tmp_path / "land"
    write(landing / "ratings.csv", MOVIELENS)
    instance = dg.DagsterInstance.ephemeral()
    db = tmp_path / "w.duckdb"
    assert materialize(landing, db, [D1, D2, D3], instance, **ML_SOURCE).success
    result = materialize(landing, db, [D1, D2, D3], instance, **ML_SOURCE)  # a re-run
    assert result.success
    order = [
        (e.event_type_value, e.partition or getattr(e.event_specific_data, "partition", None))
        for e in result.all_events
        if e.event_type_value in ("ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION")
    ]
    materialized = [i for i, (kind, _) in enumerate(order) if kind == "ASSET_MATERIALIZATION"]
    day_checks = [
        i for i, (kind, day) in enumerate(order) if kind == "ASSET_CHECK_EVALUATION" and day
    ]
    assert day_checks and min(day_checks) > max(materialized), order
    evaluations = check_evaluations(result)
    assert set(evaluations) - {None} == {D1.isoformat(), D2.isoformat()}  # D3 has no rows
    for day in (D1, D2):
        target = evaluations[day.isoformat()].target_materialization_data
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("raw_interactions"), asset_partitions=[day.isoformat()]
            ),
            limit=1,
        ).records[0]
        assert (target.run_id, target.storage_id) == (result.run_id, record.storage_id)


def test_per_day_folders_report_each_days_own_counts(tmp_path):
    landing = tmp_path / "land"
    for day, users in ((D1, 1), (D2, 3)):
        ms = epoch(day) * 1000
        lines = [f"{ms + i},u{i},i{i},view" for i in range(users)]
        write(
            landing / day.isoformat() / "e.csv",
            "timestamp,user_id,item_id,event_type\n" + "\n".join(lines) + "\n",
        )
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(landing, tmp_path / "w.duckdb", [D1, D2], instance).success
    assert day_metadata(instance, D1)["rows_ingested"] == 1
    assert day_metadata(instance, D2)["rows_ingested"] == 3


LASTFM_SOURCE = {
    "path_pattern": "*.dat",
    "user_column": "userID",
    "item_column": "artistID",
    "event_type_column": None,
}


def test_the_tsv_through_the_resource_and_a_wrong_mapping_fails_the_days_check(tmp_path):
    landing = tmp_path / "land"
    write(landing / "user_taggedartists.dat", LASTFM)
    instance = dg.DagsterInstance.ephemeral()
    db = tmp_path / "w.duckdb"
    result = materialize(
        landing, db, [D1], instance, date_columns="year, month, day", **LASTFM_SOURCE
    )
    assert result.success
    assert day_metadata(instance, D1)["rows_ingested"] == 2
    evaluation = check_evaluations(result)[D1.isoformat()]
    assert evaluation.passed

    # The year column read as epoch seconds: every row is 1970, all quarantined on D1 (the
    # export has no plausible day): the run succeeds, the day's check fails and says why.
    wrong = {**LASTFM_SOURCE, "timestamp_column": "year", "timestamp_unit": "s"}
    result = materialize(landing, db, [D1], instance, **wrong)
    assert result.success
    assert day_metadata(instance, D1)["rows_ingested"] == 0
    evaluation = check_evaluations(result)[D1.isoformat()]
    assert not evaluation.passed
    assert "all 5 rows quarantined" in evaluation.description
    assert "implausible timestamp" in evaluation.description


def test_a_partition_key_run_attaches_the_check_to_its_day(tmp_path):
    landing = tmp_path / "land"
    write(landing / "user_taggedartists.dat", LASTFM)
    wrong = {**LASTFM_SOURCE, "timestamp_column": "year", "timestamp_unit": "s"}
    result = dg.materialize(
        [raw_interactions],
        instance=dg.DagsterInstance.ephemeral(),
        partition_key=D1.isoformat(),
        resources={
            "warehouse": Warehouse(database=str(tmp_path / "w.duckdb")),
            "log_source": LogSource(landing_root=str(landing), **wrong),
        },
    )
    [evaluation] = check_evaluations(result).values()
    assert (evaluation.partition, evaluation.passed) == (D1.isoformat(), False)
    [materialization] = result.asset_materializations_for_node("raw_interactions")
    assert materialization.metadata["rows_quarantined"].value == 5


def test_malformed_lines_and_control_characters_in_an_export_are_quarantined(con, tmp_path):
    text = (
        "userId,movieId,rating,timestamp\n"
        f"1,2,3,{epoch(D1)}\n"
        f"u\x07x,2,3,{epoch(D1, 1)}\n"  # control character in the user id: on its day
        f"1,2,3,{epoch(D2)},extra\n"  # malformed line: no trusted day, the export's first day
        f"2,2,3,{epoch(D2, 5)}\n"
    )
    write(tmp_path / "land" / "ratings.csv", text)
    report = ingest_history(con, export_files(tmp_path / "land", "*.csv"), ML_FORMAT, [D1, D2])
    d1, d2 = report.days
    assert (d1.accepted, d2.accepted) == (1, 1)
    assert d1.reasons == {"control character in user id": 1, "malformed CSV line 4": 1}
    assert report.rows_in == 4 == d1.rows_in + d2.rows_in


def test_days_ingested_from_an_unchanged_export_are_not_read_again(tmp_path):
    """Issue 28: `--own-logs` (and `recs run`) re-ingested the whole window on every run. The
    days already ingested from the same export are now skipped; a re-export (another size or
    modification time) re-ingests the days read from the old one, and a day never ingested is
    ingested."""
    import os

    from assets.ingest import pending_days

    landing = tmp_path / "land"
    export = write(landing / "ratings.csv", MOVIELENS)
    instance = dg.DagsterInstance.ephemeral()
    source = LogSource(landing_root=str(landing), **ML_SOURCE)
    assert pending_days(instance, source, D1, D3) == ([D1, D2, D3], "not ingested yet")
    assert materialize(landing, tmp_path / "w.duckdb", [D1, D2], instance, **ML_SOURCE).success
    assert pending_days(instance, source, D1, D2) == ([], "not ingested yet")
    assert pending_days(instance, source, D1, D3) == ([D3], "not ingested yet")
    stat = export.stat()
    os.utime(export, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # re-exported
    changed = "the export or the log's mapping changed since they were ingested"
    assert pending_days(instance, source, D1, D2) == ([D1, D2], changed)
    # Only D3 ingested from the new export: D1 and D2 still hold the old one's rows (the check
    # looked at the newest ingest of any day, and found nothing to do).
    assert materialize(landing, tmp_path / "w.duckdb", [D3], instance, **ML_SOURCE).success
    assert pending_days(instance, source, D1, D3) == ([D1, D2], changed)


def test_a_days_changed_landing_files_are_read_again_and_unchanged_ones_are_not(tmp_path):
    """Issue 28, daily files (a {date} pattern): `recs run` and `--own-logs` skipped every
    ingested day, so a day re-exported (a corrected file, a late file) kept its old rows, and
    `recs ingest` re-read every day of its range. Each day now records its own files'
    fingerprint: a day whose files changed is read again, an unchanged one is not."""
    import os

    from assets.ingest import pending_days

    def write_day(day: dt.date, users: int, name: str = "e.csv") -> Path:
        ms = epoch(day) * 1000
        lines = [f"{ms + i},u{i},i{i},view" for i in range(users)]
        return write(
            landing / day.isoformat() / name,
            "timestamp,user_id,item_id,event_type\n" + "\n".join(lines) + "\n",
        )

    landing = tmp_path / "land"
    write_day(D1, 1)
    d2 = write_day(D2, 2)
    instance = dg.DagsterInstance.ephemeral()
    source = LogSource(landing_root=str(landing))
    assert materialize(landing, tmp_path / "w.duckdb", [D1, D2], instance).success
    assert pending_days(instance, source, D1, D2) == ([], "not ingested yet")
    assert pending_days(instance, source, D1, D3) == ([D3], "not ingested yet")
    changed = "their landing files or the log's mapping changed since they were ingested"
    stat = d2.stat()
    os.utime(d2, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # re-exported
    assert pending_days(instance, source, D1, D2) == ([D2], changed)
    write_day(D1, 1, "late.csv")  # a file that arrived late
    assert pending_days(instance, source, D1, D2) == ([D1, D2], changed)
    assert materialize(landing, tmp_path / "w.duckdb", [D1, D2], instance).success
    assert day_metadata(instance, D1)["rows_ingested"] == 2
    assert pending_days(instance, source, D1, D2) == ([], "not ingested yet")
    # A day ingested before days recorded their files (a deployment upgraded): read once more.
    instance.report_runless_asset_event(
        dg.AssetMaterialization("raw_interactions", partition=D2.isoformat())
    )
    before = "ingested before their files' fingerprints were recorded"
    assert pending_days(instance, source, D1, D2) == ([D2], before)
    assert pending_days(instance, source, D1, D3) == (
        [D2, D3], "1 not ingested yet, 1 ingested before their files' fingerprints were recorded"
    )  # fmt: skip
    assert materialize(landing, tmp_path / "w.duckdb", [D2], instance).success

    # A day whose files are all gone (archived) keeps its rows: reading nothing would refuse
    # to empty it, and `recs run` would stop at its window's ingest.
    for file in (landing / D1.isoformat()).iterdir():
        file.unlink()
    assert pending_days(instance, source, D1, D2) == ([], "not ingested yet")
    # Another column mapping reads the same files otherwise: every day with files is read again.
    remapped = LogSource(landing_root=str(landing), event_type_column=None)
    assert pending_days(instance, remapped, D1, D2) == ([D2], changed)


def test_days_read_again_are_read_in_runs_of_consecutive_days(tmp_path):
    """`recs ingest`, `recs run` and `--own-logs` read the days pending_days names in one run
    from the first to the last, the unchanged days between included. With daily files, a day
    between whose folder was archived made that run refuse to start (reading nothing would
    empty its stored day), so a late file for an old day stopped every later `recs run` at its
    window's ingest. Each run of consecutive pending days is now read by a run of its own."""
    import os

    from assets.ingest import pending_days, pending_ranges

    d4, d5 = D3 + dt.timedelta(days=1), D3 + dt.timedelta(days=2)
    days = [D1, D2, D3, d4, d5]
    landing = tmp_path / "land"
    for day in days:
        ms = epoch(day) * 1000
        write(landing / day.isoformat() / "e.csv",
              f"timestamp,user_id,item_id,event_type\n{ms},u1,i1,view\n{ms + 1},u2,i2,view\n")  # fmt: skip
    instance = dg.DagsterInstance.ephemeral()
    source = LogSource(landing_root=str(landing))
    db = tmp_path / "w.duckdb"
    assert materialize(landing, db, days, instance).success

    for file in (landing / D3.isoformat()).iterdir():
        file.unlink()  # archived: its day keeps its rows
    for day in (D2, d4, d5):  # re-exported
        [file] = (landing / day.isoformat()).iterdir()
        stat = file.stat()
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    pending, _ = pending_days(instance, source, D1, d5)
    assert pending == [D2, d4, d5]
    # What the commands read before: D2..d5 in one run, which refuses D3.
    span = materialize(landing, db, [D2, d5], instance)
    assert not span.success
    assert "EmptyDaysError" in str(span.get_step_failure_events()[0].event_specific_data.error)

    assert pending_ranges(pending) == [(D2, D2), (d4, d5)]
    assert pending_ranges([]) == []
    for first, last in pending_ranges(pending):
        assert materialize(landing, db, [first, last], instance).success
    assert pending_days(instance, source, D1, d5)[0] == []
    with Warehouse(database=str(db)).session() as con:
        assert stored(con, "raw.interactions") == dict.fromkeys(days, 2)
