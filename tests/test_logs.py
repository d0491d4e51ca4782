"""ingest_day on hand-written landing files: clean rows, quarantine with reasons, idempotent
re-ingest, configuration errors and path safety."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import polars as pl
import pytest

from recs_pipeline.data.logs import EmptyDaysError, LogConfigError, LogFormat, day_files, ingest_day

DAY = dt.date(2024, 5, 2)
DAY_START_MS = 1714608000000  # 2024-05-02T00:00:00Z
EVENT_TYPES = ("view", "click", "purchase")


def utc(ms: int) -> dt.datetime:
    """Epoch milliseconds as a naive UTC datetime (what a DuckDB TIMESTAMP reads back as)."""
    return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def accepted(con, day=DAY):
    return con.execute(
        """SELECT event_date, event_ts, user_id, item_id, event_type, weight, source_file
           FROM raw.interactions WHERE event_date = ? ORDER BY event_ts, user_id""",
        [day],
    ).fetchall()


def rejected(con, day=DAY):
    return con.execute(
        """SELECT source_file, record, reason FROM raw.rejected_interactions
           WHERE event_date = ? ORDER BY reason, record""",
        [day],
    ).fetchall()


CLEAN = [
    (DAY_START_MS, "u1", "i1", "click"),  # exactly midnight: inside the day
    (DAY_START_MS + 43_200_123, "u2", "i2", "view"),  # 12:00:00.123
    (DAY_START_MS + 86_399_999, "u3", "i3", "purchase"),  # last millisecond of the day
]
BAD = {
    # raw line -> reason
    f"{DAY_START_MS + 1000},,i5,click": "null or empty user id",
    f"{DAY_START_MS + 1000},   ,i6,click": "null or empty user id",
    f"{DAY_START_MS + 1000},u7,,click": "null or empty item id",
    "not-a-time,u8,i8,click": "unparseable timestamp",
    ",u9,i9,click": "unparseable timestamp",
    f"{DAY_START_MS - 1},u10,i10,click": "timestamp outside partition day 2024-05-02",
    f"{DAY_START_MS + 86_400_000},u11,i11,click": "timestamp outside partition day 2024-05-02",
    f"{DAY_START_MS + 2000},u12,i12,like": "unknown event type",
    f"{DAY_START_MS + 2000},u13,i13,": "unknown event type",  # null type with event_types set
}
MALFORMED = f"{DAY_START_MS + 3000},u14,i14,click,extra-field"


def hand_csv(tmp_path: Path) -> str:
    lines = ["timestamp,user_id,item_id,event_type"]
    lines += [",".join(map(str, row)) for row in CLEAN]
    lines += list(BAD)
    lines.append(MALFORMED)
    return write(tmp_path / "land" / "2024-05-02" / "events-0.csv", "\n".join(lines) + "\n")


def test_clean_and_rejected_rows(con, tmp_path):
    path = hand_csv(tmp_path)
    report = ingest_day(con, [path], LogFormat(event_types=EVENT_TYPES), DAY)

    assert accepted(con) == [
        (DAY, utc(ms), user, item, event, 1.0, path) for ms, user, item, event in CLEAN
    ]
    assert utc(CLEAN[1][0]) == dt.datetime(2024, 5, 2, 12, 0, 0, 123000)

    rows = rejected(con)
    assert all(source == path for source, _, _ in rows)
    by_reason: dict[str, list[str]] = {}
    for _, record, reason in rows:
        by_reason.setdefault(reason, []).append(record)
    # Every bad line is quarantined once, with its reason and its raw values in the record.
    for line, reason in BAD.items():
        user = line.split(",")[1].strip()
        matches = [r for r in by_reason.get(reason, []) if f'"{user}"' in r or not user]
        assert matches, (line, reason)
    # A malformed line's reason carries the reader's error type and message.
    too_many = "malformed CSV line 14: TOO MANY COLUMNS (Expected Number of Columns: 4 Found: 5)"
    assert sorted(by_reason) == sorted(set(BAD.values()) | {too_many})
    assert by_reason[too_many] == [MALFORMED]
    assert len(rows) == len(BAD) + 1
    assert any('"not-a-time"' in r for r in by_reason["unparseable timestamp"])

    assert report.accepted == len(CLEAN)
    assert report.rejected == len(BAD) + 1
    assert report.files == 1
    expected_reasons: dict[str, int] = {}
    for reason in BAD.values():
        expected_reasons[reason] = expected_reasons.get(reason, 0) + 1
    expected_reasons["malformed CSV line 14"] = 1
    assert report.reasons == expected_reasons


def test_event_types_unset_accepts_any_type(con, tmp_path):
    path = write(
        tmp_path / "a.csv",
        f"timestamp,user_id,item_id,event_type\n{DAY_START_MS + 5},u1,i1,like\n"
        f"{DAY_START_MS + 6},u2,i2,\n",
    )
    report = ingest_day(con, [path], LogFormat(), DAY)
    assert [(r[2], r[4]) for r in accepted(con)] == [("u1", "like"), ("u2", None)]
    assert report.rejected == 0


def test_reingest_replaces_partition(con, tmp_path):
    path = hand_csv(tmp_path)
    fmt = LogFormat(event_types=EVENT_TYPES)
    first = ingest_day(con, [path], fmt, DAY)
    rows, bad = accepted(con), rejected(con)
    second = ingest_day(con, [path], fmt, DAY)
    assert second == first
    assert accepted(con) == rows and rejected(con) == bad
    assert con.execute("SELECT count(*) FROM raw.interactions").fetchone()[0] == len(CLEAN)

    # A corrected file for the same day replaces both partitions; other days are untouched.
    other_day = DAY + dt.timedelta(days=1)
    other = write(
        tmp_path / "other.csv",
        f"timestamp,user_id,item_id,event_type\n{DAY_START_MS + 86_400_000 + 7},x,y,view\n",
    )
    ingest_day(con, [other], fmt, other_day)
    fixed = write(
        tmp_path / "fixed.csv",
        f"timestamp,user_id,item_id,event_type\n{DAY_START_MS + 9},u,i,view\n",
    )
    ingest_day(con, [fixed], fmt, DAY)
    assert accepted(con) == [(DAY, utc(DAY_START_MS + 9), "u", "i", "view", 1.0, fixed)]
    assert rejected(con) == []
    assert len(accepted(con, other_day)) == 1


def test_day_without_files_gives_empty_partition(con, tmp_path):
    # Nothing stored: a day without files is a valid empty partition.
    report = ingest_day(con, [], LogFormat(), DAY)
    assert (report.files, report.accepted, report.rejected, report.reasons) == (0, 0, 0, {})
    path = hand_csv(tmp_path)
    ingest_day(con, [path], LogFormat(event_types=EVENT_TYPES), DAY)
    rows, bad = accepted(con), rejected(con)
    # Stored rows: no files never deletes them (issue 11, finding 2) unless explicitly allowed.
    with pytest.raises(EmptyDaysError, match=r"2024-05-02 \(13 rows\).*allow_empty_days"):
        ingest_day(con, [], LogFormat(event_types=EVENT_TYPES), DAY)
    assert accepted(con) == rows and rejected(con) == bad
    report = ingest_day(con, [], LogFormat(event_types=EVENT_TYPES), DAY, allow_empty=True)
    assert (report.files, report.accepted, report.rejected, report.reasons) == (0, 0, 0, {})
    assert accepted(con) == [] and rejected(con) == []


def test_mapped_column_absent_everywhere_raises_naming_setting(con, tmp_path):
    a = write(tmp_path / "a.csv", f"timestamp,user_id,item_id\n{DAY_START_MS},u1,i1\n")
    b = write(tmp_path / "b.csv", f"timestamp,user_id,item_id\n{DAY_START_MS},u2,i2\n")
    with pytest.raises(LogConfigError, match="user_column") as error:
        ingest_day(con, [a, b], LogFormat(user_column="uid"), DAY)
    assert "'uid'" in str(error.value)
    with pytest.raises(LogConfigError, match="timestamp_column"):
        ingest_day(con, [a], LogFormat(timestamp_column="ts"), DAY)
    assert accepted(con) == []


def test_mapped_column_absent_in_one_file_quarantines_that_file(con, tmp_path):
    good = write(tmp_path / "good.csv", f"ts,uid,item_id\n{DAY_START_MS + 1},u1,i1\n")
    bad = write(tmp_path / "bad.csv", f"ts,user,item_id\n{DAY_START_MS + 2},u2,i2\n")
    fmt = LogFormat(user_column="uid", timestamp_column="ts", event_type_column=None)
    report = ingest_day(con, [good, bad], fmt, DAY)
    assert [(r[2], r[3], r[6]) for r in accepted(con)] == [("u1", "i1", good)]
    [(source, record, reason)] = rejected(con)
    assert source == bad and '"u2"' in record and "uid" in reason and "user_column" in reason
    assert report.accepted == 1 and report.rejected == 1


def test_optional_columns_missing_are_null_or_default(con, tmp_path):
    # event_type_column is mapped but absent: event_type NULL; no weight column: weight 1.0.
    path = write(tmp_path / "a.csv", f"timestamp,user_id,item_id\n{DAY_START_MS + 1},u1,i1\n")
    ingest_day(con, [path], LogFormat(), DAY)
    assert accepted(con) == [(DAY, utc(DAY_START_MS + 1), "u1", "i1", None, 1.0, path)]


def test_day_files_pattern_and_escape(tmp_path):
    root = tmp_path / "land"
    inside = [
        write(root / "2024-05-02" / "events-1.csv", "x\n"),
        write(root / "2024-05-02" / "events-0.csv", "x\n"),
    ]
    write(root / "2024-05-03" / "events-0.csv", "x\n")
    write(tmp_path / "outside" / "2024-05-02.csv", "x\n")
    assert day_files(root, "{date:%Y-%m-%d}/*.csv", DAY) == sorted(
        str(Path(p).resolve()) for p in inside
    )
    assert day_files(root, "{date:%Y-%m-%d}/*.parquet", DAY) == []
    with pytest.raises(LogConfigError, match="outside landing_root"):
        day_files(root, "../outside/{date:%Y-%m-%d}.csv", DAY)
    with pytest.raises(LogConfigError, match="relative"):
        day_files(root, str(tmp_path / "outside" / "{date:%Y-%m-%d}.csv"), DAY)
    with pytest.raises(LogConfigError, match="not a valid pattern"):
        day_files(root, "{day:%Y}/*.csv", DAY)
    with pytest.raises(LogConfigError, match="landing_root"):
        day_files(tmp_path / "missing", "*.csv", DAY)
    # A symlink inside the root that points outside it is refused as well.
    os.symlink(tmp_path / "outside", root / "link")
    with pytest.raises(LogConfigError, match="outside landing_root"):
        day_files(root, "link/*.csv", DAY)


def test_iso_timestamps_with_offset_convert_to_utc(con, tmp_path):
    path = write(
        tmp_path / "iso.csv",
        "timestamp,user_id,item_id,event_type\n"
        "2024-05-03T01:00:00+02:00,u1,i1,view\n"  # 2024-05-02 23:00 UTC: inside
        "2024-05-02T10:15:30.250-03:30,u2,i2,view\n"  # 13:45:30.25 UTC
        "2024-05-02T09:00:00Z,u3,i3,view\n"
        "2024-05-02T01:30:00+02:00,u4,i4,view\n"  # 2024-05-01 23:30 UTC: outside
        "2024-05-02 07:00:00,u5,i5,view\n"  # no offset: UTC
        "02/05/2024 07:00,u6,i6,view\n",  # not ISO-8601
    )
    report = ingest_day(con, [path], LogFormat(timestamp_unit="iso"), DAY)
    assert [(r[1], r[2]) for r in accepted(con)] == [
        (dt.datetime(2024, 5, 2, 7, 0), "u5"),
        (dt.datetime(2024, 5, 2, 9, 0), "u3"),
        (dt.datetime(2024, 5, 2, 13, 45, 30, 250000), "u2"),
        (dt.datetime(2024, 5, 2, 23, 0), "u1"),
    ]
    assert report.reasons == {
        "timestamp outside partition day 2024-05-02": 1,
        "unparseable timestamp": 1,
    }


def test_iso_naive_timestamps_are_utc_whatever_the_session_time_zone(con, tmp_path):
    con.execute("SET TimeZone = 'America/New_York'")
    path = write(
        tmp_path / "iso.csv",
        "timestamp,user_id,item_id\n2024-05-02 22:00:00,u1,i1\n2024-05-02T10:00:00+02:00,u2,i2\n",
    )
    report = ingest_day(con, [path], LogFormat(timestamp_unit="iso"), DAY)
    assert report.accepted == 2
    assert [(r[1], r[2]) for r in accepted(con)] == [
        (dt.datetime(2024, 5, 2, 8, 0), "u2"),
        (dt.datetime(2024, 5, 2, 22, 0), "u1"),
    ]
    assert con.execute("SELECT current_setting('TimeZone')").fetchone()[0] == "America/New_York"


@pytest.mark.parametrize(("unit", "scale"), [("s", 1), ("ms", 1_000), ("us", 1_000_000)])
def test_epoch_units(con, tmp_path, unit, scale):
    seconds = 1714608000 + 3723  # 01:02:03 UTC
    path = write(
        tmp_path / "e.csv",
        f"timestamp,user_id,item_id\n{seconds * scale},u1,i1\n{10**30},u2,i2\n",
    )
    report = ingest_day(con, [path], LogFormat(timestamp_unit=unit), DAY)
    assert [(r[1], r[2]) for r in accepted(con)] == [(dt.datetime(2024, 5, 2, 1, 2, 3), "u1")]
    assert report.reasons == {"unparseable timestamp": 1}


def test_parquet_file_with_weights(con, tmp_path):
    path = tmp_path / "day.parquet"
    pl.DataFrame(
        {
            "ts_ms": [DAY_START_MS + 10, DAY_START_MS + 20, DAY_START_MS + 30, None],
            "who": ["a", "b", None, "d"],
            "what": ["x", "y", "z", "w"],
            "kind": ["view", "click", "view", "view"],
            "w": [2.5, -1.0, 1.0, 1.0],
        }
    ).write_parquet(path)
    fmt = LogFormat(
        format="parquet",
        user_column="who",
        item_column="what",
        timestamp_column="ts_ms",
        event_type_column="kind",
        weight_column="w",
    )
    report = ingest_day(con, [str(path)], fmt, DAY)
    assert accepted(con) == [(DAY, utc(DAY_START_MS + 10), "a", "x", "view", 2.5, str(path))]
    assert report.reasons == {
        "invalid weight": 1,
        "null or empty user id": 1,
        "unparseable timestamp": 1,
    }
    records = [record for _, record, _ in rejected(con)]
    assert any('"b"' in r and '"y"' in r for r in records)


def test_unreadable_file_is_quarantined(con, tmp_path):
    path = write(tmp_path / "broken.parquet", "this is not parquet")
    good = tmp_path / "good.parquet"
    pl.DataFrame(
        {"timestamp": [DAY_START_MS + 1], "user_id": ["u"], "item_id": ["i"]}
    ).write_parquet(good)
    report = ingest_day(con, [path, str(good)], LogFormat(format="parquet"), DAY)
    assert report.accepted == 1 and report.rejected == 1
    [(source, record, reason)] = rejected(con)
    assert source == path and record is None and reason.startswith("unreadable parquet file")


def test_quoted_csv_fields_are_unescaped(con, tmp_path):
    # RFC 4180: a quoted field may hold the delimiter, and "" inside quotes is one quote.
    path = write(
        tmp_path / "q.csv",
        "timestamp,user_id,item_id,event_type\n"
        f'{DAY_START_MS + 1},"u,1",i1,view\n'
        f'{DAY_START_MS + 2},"u""2",i2,view\n',
    )
    report = ingest_day(con, [path], LogFormat(), DAY)
    assert [r[2] for r in accepted(con)] == ["u,1", 'u"2']
    assert report.rejected == 0
