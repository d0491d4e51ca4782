"""A corpus of malformed landing files: every input row is ingested or quarantined with a
reason, and no file crashes the ingest."""

import datetime as dt

import polars as pl
import pytest

from recs_pipeline.data.logs import MAX_RECORD_CHARS, LogFormat, ingest_day

DAY = dt.date(2024, 5, 2)
T0 = 1714608000000  # 2024-05-02T00:00:00Z in ms
HEADER = "timestamp,user_id,item_id,event_type\n"
FORMAT = LogFormat(event_types=("view", "click", "purchase"))


def csv(*rows: str) -> bytes:
    return (HEADER + "".join(row + "\n" for row in rows)).encode()


# name -> (file bytes, file suffix, rows ingested, {reason prefix: rows quarantined})
CORPUS = {
    "clean": (csv(f"{T0},u1,i1,view", f"{T0 + 1},u2,i2,click"), "csv", 2, {}),
    "wrong types": (
        csv(f"{T0},u1,i1,view", "yesterday,u2,i2,view"),
        "csv",
        1,
        {"unparseable timestamp": 1},
    ),
    "null ids": (
        csv(f"{T0},,i1,view", f"{T0},u2,,view", f"{T0},  ,i3,view"),
        "csv",
        0,
        {"null or empty user id": 2, "null or empty item id": 1},
    ),
    "timestamp outside the day": (
        csv(f"{T0 - 1},u1,i1,view", f"{T0 + 86_400_000},u2,i2,view"),
        "csv",
        0,
        {"timestamp outside partition day": 2},
    ),
    "far past and far future": (
        csv("-62135596800000,u1,i1,view", "253402300799000,u2,i2,view", "1e30,u3,i3,view"),
        "csv",
        0,
        # Year 1 is before min_plausible_date (issue 12): implausible, not merely another day.
        {
            "implausible timestamp": 1,
            "timestamp outside partition day": 1,
            "unparseable timestamp": 1,
        },
    ),
    "duplicate rows": (csv(f"{T0},u1,i1,view", f"{T0},u1,i1,view"), "csv", 2, {}),
    "empty file": (b"", "csv", 0, {}),
    "header only": (HEADER.encode(), "csv", 0, {}),
    "not the declared format": (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR garbage",
        "csv",
        0,
        {"unreadable csv file": 1},
    ),
    "mixed encodings": (
        HEADER.encode()
        + f"{T0},u\xe9,i1,view\n".encode("latin-1")
        + f"{T0},u\u00e9,i2,view\n".encode(),
        "csv",
        1,
        {"malformed CSV line 2: INVALID ENCODING": 1},
    ),
    "quotes and newlines in fields": (
        csv(f'{T0},"u ""quoted"", one",i1,view', f'{T0},"u\nmultiline",i2,view'),
        "csv",
        1,
        {"control character in user id": 1},  # a line break inside an id (finding 12)
    ),
    "unknown event types": (
        csv(f"{T0},u1,i1,view", f"{T0},u2,i2,teleport"),
        "csv",
        1,
        {"unknown event type": 1},
    ),
    "extra columns": (
        b"timestamp,user_id,item_id,event_type,referrer\n" + f"{T0},u1,i1,view,ads\n".encode(),
        "csv",
        1,
        {},
    ),
    "malformed lines": (
        csv(f"{T0},u1,i1,view", f"{T0},u2,i2,view,surplus", f'{T0},"u3'),
        "csv",
        1,
        {"malformed CSV line": 2},
    ),
    "very long and SQL-looking ids": (
        csv(f"{T0},{'u' * 10_000},i1,view", f"{T0},x'); DROP TABLE raw.interactions; --,i2,view"),
        "csv",
        2,
        {},
    ),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_row_is_ingested_or_quarantined(name, con, tmp_path):
    content, suffix, n_ingested, reasons = CORPUS[name]
    path = tmp_path / f"part.{suffix}"
    path.write_bytes(content)
    report = ingest_day(con, [str(path)], FORMAT, DAY)
    rows = con.execute(
        "SELECT user_id, item_id FROM raw.interactions WHERE event_date = ?", [DAY]
    ).fetchall()
    quarantined = con.execute(
        "SELECT reason, record FROM raw.rejected_interactions WHERE event_date = ?", [DAY]
    ).fetchall()
    assert report.accepted == len(rows) and report.rejected == len(quarantined)
    assert all(reason for reason, _ in quarantined)
    assert len(rows) == n_ingested
    for prefix, count in reasons.items():
        assert sum(reason.startswith(prefix) for reason, _ in quarantined) == count, quarantined
    assert len(quarantined) == sum(reasons.values())
    # The table survives SQL-looking ids, and the ids are stored verbatim.
    assert con.execute("SELECT count(*) FROM raw.interactions").fetchone()[0] == len(rows)


def test_a_file_missing_a_column_is_quarantined_when_others_have_it(con, tmp_path):
    broken = tmp_path / "a.csv"
    broken.write_bytes(b"timestamp,item_id,event_type\n" + f"{T0},i1,view\n".encode())
    good = tmp_path / "b.csv"
    good.write_bytes(csv(f"{T0},u2,i2,view"))
    report = ingest_day(con, [str(broken), str(good)], FORMAT, DAY)
    assert report.accepted == 1
    (reason, record) = con.execute(
        "SELECT reason, record FROM raw.rejected_interactions"
    ).fetchone()
    assert reason == "missing column 'user_id' (user_column)" and '"i1"' in record


def test_truncated_parquet_is_quarantined_as_a_file(con, tmp_path):
    path = tmp_path / "part.parquet"
    pl.DataFrame(
        {"timestamp": [T0], "user_id": ["u1"], "item_id": ["i1"], "event_type": ["view"]}
    ).write_parquet(path)
    path.write_bytes(path.read_bytes()[:-20])
    good = tmp_path / "good.parquet"
    pl.DataFrame(
        {"timestamp": [T0], "user_id": ["u2"], "item_id": ["i2"], "event_type": ["view"]}
    ).write_parquet(good)
    report = ingest_day(con, [str(path), str(good)], LogFormat(format="parquet"), DAY)
    assert report.accepted == 1
    (reason,) = con.execute("SELECT reason FROM raw.rejected_interactions").fetchone()
    assert reason.startswith("unreadable parquet file")


def test_sql_looking_ids_are_stored_verbatim(con, tmp_path):
    evil = "x'); DROP TABLE raw.interactions; --"
    path = tmp_path / "part.csv"
    path.write_bytes(csv(f"{T0},{evil},i1,view"))
    ingest_day(con, [str(path)], FORMAT, DAY)
    assert con.execute("SELECT user_id FROM raw.interactions").fetchall() == [(evil,)]


def test_columns_with_quotes_in_their_names_are_quoted_not_interpolated(con, tmp_path):
    path = tmp_path / "part.csv"
    path.write_bytes(b'"ts","user ""id""","item"\n' + f"{T0},u1,i1\n".encode())
    fmt = LogFormat(
        timestamp_column="ts", user_column='user "id"', item_column="item", event_type_column=None
    )
    assert ingest_day(con, [str(path)], fmt, DAY).accepted == 1


def test_a_line_over_the_maximum_line_size_quarantines_only_that_line(con, tmp_path):
    # Issue 11, finding 7: a line longer than DuckDB's maximum line size (2,000,000 bytes) in
    # the part of the file the CSV sniffer reads used to quarantine the whole file as one record
    # with no raw text and without the cause. Only that line is quarantined, with its raw text
    # (truncated) and the reader's cause; the other rows of the file are ingested.
    long_user = "u" * 2_100_000
    path = tmp_path / "part.csv"
    path.write_bytes(
        csv(f"{T0},u1,i1,view", f"{T0 + 1},{long_user},i2,view", f"{T0 + 2},u3,i3,view")
    )
    report = ingest_day(con, [str(path)], FORMAT, DAY)
    rows = con.execute("SELECT user_id FROM raw.interactions ORDER BY user_id").fetchall()
    assert rows == [("u1",), ("u3",)]
    [(reason, record)] = con.execute(
        "SELECT reason, record FROM raw.rejected_interactions"
    ).fetchall()
    assert reason.startswith("malformed CSV line 3: LINE SIZE OVER MAXIMUM"), reason
    assert "Maximum line size of 2000000 bytes exceeded" in reason
    assert record.startswith(f"{T0 + 1},uuuu") and len(record) == MAX_RECORD_CHARS
    assert report.accepted == 2 and report.rejected == 1


NFC_E = "\u00e9"  # é as one code point
NFD_E = "e\u0301"  # é as e + combining acute accent


def test_ids_are_nfc_trimmed_and_control_characters_quarantined(con, tmp_path):
    # Issue 11, finding 12: NUL and control characters in ids were accepted and published,
    # spaces and NBSP were trimmed but tabs were not, and NFC and NFD forms of one name were two
    # users. The rule: Unicode NFC, leading/trailing Unicode White_Space trimmed, a control
    # character (Unicode Cc) left inside the id quarantined with a reason; user and item ids.
    rows = {
        f"{T0},\tu1\t,i1,view": ("u1", "i1"),
        f"{T0},u2\u00a0,\u2003i2 ,view": ("u2", "i2"),
        f'{T0},"\u3000u3\u0085",i3,view': ("u3", "i3"),
        f"{T0},j{NFC_E}r{NFC_E}me,i4,view": (f"j{NFC_E}r{NFC_E}me", "i4"),
        f"{T0},j{NFD_E}r{NFD_E}me,i5,view": (f"j{NFC_E}r{NFC_E}me", "i5"),
        f"{T0},caf{NFD_E},i6,view": (f"caf{NFC_E}", "i6"),
    }
    bad = {
        f"{T0},u\x00x,i7,view": "control character in user id",
        f"{T0},u\x01,i8,view": "control character in user id",
        f"{T0},u\tx,i9,view": "control character in user id",
        f"{T0},u\x7f,i10,view": "control character in user id",
        f"{T0},u11,i\x1b[31m,view": "control character in item id",
        f"{T0},u12,i\x9f,view": "control character in item id",
        f"{T0},\t \u00a0,i13,view": "null or empty user id",
    }
    path = tmp_path / "part.csv"
    path.write_bytes(csv(*rows, *bad))
    report = ingest_day(con, [str(path)], FORMAT, DAY)
    ingested = con.execute("SELECT user_id, item_id FROM raw.interactions").fetchall()
    assert sorted(ingested) == sorted(rows.values())
    assert len({user for user, _ in ingested}) == 5  # the NFD jérème is the NFC one
    quarantined = con.execute("SELECT reason FROM raw.rejected_interactions").fetchall()
    assert sorted(reason for (reason,) in quarantined) == sorted(bad.values())
    assert report.rejected == len(bad)


def test_parquet_ids_follow_the_same_rule(con, tmp_path):
    path = tmp_path / "part.parquet"
    pl.DataFrame(
        {
            "timestamp": [T0, T0, T0],
            "user_id": [f" caf{NFD_E}\t", "u\x00", "u3"],
            "item_id": ["i1", "i2", "i3\r\n"],
            "event_type": ["view"] * 3,
        }
    ).write_parquet(path)
    ingest_day(con, [str(path)], LogFormat(format="parquet"), DAY)
    assert sorted(con.execute("SELECT user_id, item_id FROM raw.interactions").fetchall()) == [
        (f"caf{NFC_E}", "i1"),
        ("u3", "i3"),
    ]
    assert con.execute("SELECT reason FROM raw.rejected_interactions").fetchall() == [
        ("control character in user id",)
    ]
