"""Odd exports must not lose or duplicate rows: Windows line endings, a file the reader returns
nothing from, symlink loops in the landing folder, NUL-filled files and a landing root that
would take the whole filesystem."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest

from recs_pipeline.data import logs
from recs_pipeline.data.logs import (
    DiscoveryLimits,
    LogConfigError,
    LogFormat,
    LogReadError,
    day_files,
    export_files,
    ingest_day,
    ingest_history,
)

DAY = dt.date(2024, 5, 2)
DAY_START_MS = 1714608000000  # 2024-05-02T00:00:00Z
HEADER = "timestamp,user_id,item_id,event_type"


def rows(n: int, day: int = 0, prefix: str = "u") -> list[str]:
    start = DAY_START_MS + day * 86_400_000
    return [f"{start + i},{prefix}{i},i{i % 7},click" for i in range(n)]


def write_bytes(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def csv_bytes(lines: list[str], newline: str) -> bytes:
    return (newline.join([HEADER, *lines]) + newline).encode()


def stored(con, day=DAY) -> tuple[int, int]:
    return con.execute(
        """SELECT (SELECT count(*) FROM raw.interactions WHERE event_date = $1),
                  (SELECT count(*) FROM raw.rejected_interactions WHERE event_date = $1)""",
        [day],
    ).fetchone()


@pytest.mark.parametrize("newline", ["\r\n", "\r"], ids=["crlf", "cr"])
def test_a_day_written_with_windows_or_old_mac_line_endings_keeps_every_row(con, tmp_path, newline):
    lf = write_bytes(tmp_path / "lf" / "events.csv", csv_bytes(rows(40), "\n"))
    ingest_day(con, [lf], LogFormat(), DAY)
    assert stored(con) == (40, 0)
    # The same rows re-exported with other line endings (Python's csv.writer writes CRLF).
    other = write_bytes(tmp_path / "other" / "events.csv", csv_bytes(rows(40), newline))
    report = ingest_day(con, [other], LogFormat(), DAY)
    assert (report.accepted, report.rejected) == (40, 0)
    assert stored(con) == (40, 0)


def test_a_malformed_line_in_a_crlf_file_is_quarantined_with_its_own_text(con, tmp_path):
    bad = f"{DAY_START_MS + 5},u5,i5,click,extra"
    path = write_bytes(
        tmp_path / "e.csv",
        csv_bytes([*rows(3), bad, '1714608000009,u9,i9,"multi\r\nline"'], "\r\n"),
    )
    report = ingest_day(con, [path], LogFormat(), DAY)
    assert (report.accepted, report.rejected) == (4, 1)
    [(record, reason)] = con.execute(
        "SELECT record, reason FROM raw.rejected_interactions WHERE event_date = ?", [DAY]
    ).fetchall()
    assert record == bad and reason.startswith("malformed CSV line 5: TOO MANY COLUMNS")
    # A quoted field keeps its own line break.
    assert con.execute(
        "SELECT event_type FROM raw.interactions WHERE user_id = 'u9'"
    ).fetchone() == ("multi\r\nline",)


def test_a_history_export_with_a_crlf_file_beside_lf_files_keeps_its_rows(con, tmp_path):
    root = tmp_path / "export"
    write_bytes(root / "part-0.csv", csv_bytes(rows(30, 0, "a"), "\n"))
    write_bytes(root / "part-1.csv", csv_bytes(rows(50, 1, "b"), "\r\n"))
    write_bytes(root / "part-2.csv", csv_bytes(rows(20, 1, "c"), "\n"))
    days = [DAY, DAY + dt.timedelta(days=1)]
    report = ingest_history(con, export_files(root, "*.csv"), LogFormat(), days)
    assert report.rows_in == 100
    assert [(r.day, r.accepted) for r in report.days] == [(days[0], 30), (days[1], 70)]


def test_a_crlf_export_alone_is_read_not_refused_as_unmounted(con, tmp_path):
    root = tmp_path / "export"
    write_bytes(root / "ratings.csv", csv_bytes(rows(25), "\r\n"))
    report = ingest_history(con, export_files(root, "ratings.csv"), LogFormat(), [DAY])
    assert report.days[0].accepted == 25


def test_a_file_the_reader_returns_nothing_from_fails_loudly(con, tmp_path, monkeypatch):
    """Whatever the reader's next failure to parse a dialect, a file whose data lines yield
    neither a row nor a quarantine record fails the ingest; it never passes as empty. The
    reader is given the settings that lost CRLF files in DuckDB 1.5.5 (sniffed new_line passed
    back together with strict_mode)."""
    broken = logs._read_sql(LogFormat()).replace("comment=?", "new_line='\\r\\n', comment=?")
    monkeypatch.setattr(logs, "_read_sql", lambda fmt: broken)
    path = write_bytes(tmp_path / "events.csv", csv_bytes(rows(12), "\r\n"))
    with pytest.raises(LogReadError, match=r"events\.csv.*12 data lines.*0 rows"):
        ingest_day(con, [path], LogFormat(), DAY)
    assert stored(con) == (0, 0)


def test_header_only_and_blank_line_files_are_still_empty_files(con, tmp_path):
    only_header = write_bytes(tmp_path / "a.csv", (HEADER + "\r\n").encode())
    blank_lines = write_bytes(tmp_path / "b.csv", (HEADER + "\n\n\n").encode())
    no_newline = write_bytes(tmp_path / "c.csv", HEADER.encode())
    report = ingest_day(con, [only_header, blank_lines, no_newline], LogFormat(), DAY)
    assert (report.accepted, report.rejected) == (0, 0)


def test_a_nul_filled_csv_is_quarantined_at_once_as_binary(con, tmp_path):
    sparse = tmp_path / "land" / "dump.csv"
    sparse.parent.mkdir(parents=True)
    with open(sparse, "wb") as f:  # a sparse file: 64 MiB of NUL bytes, no disk used
        f.truncate(64 << 20)
    good = write_bytes(tmp_path / "land" / "events.csv", csv_bytes(rows(5), "\n"))
    started = time.monotonic()
    report = ingest_day(con, [str(sparse), good], LogFormat(), DAY)
    # Seconds, not the quadratic minutes DuckDB's sniffer takes on NUL bytes (4 MiB took 85 s).
    assert time.monotonic() - started < 60
    assert (report.accepted, report.rejected) == (5, 1)
    [(source, reason)] = con.execute(
        "SELECT source_file, reason FROM raw.rejected_interactions WHERE event_date = ?", [DAY]
    ).fetchall()
    assert source == str(sparse)
    assert reason == "binary csv file: NUL bytes from offset 0 (a csv log is text)"


def test_a_file_cut_short_into_zero_padding_is_quarantined(con, tmp_path):
    # A preallocated export cut short by a crash: good lines, then zeros to its full size.
    data = csv_bytes(rows(5), "\n") + bytes(3 << 20)
    path = write_bytes(tmp_path / "x.csv", data)
    report = ingest_day(con, [path], LogFormat(), DAY)
    assert (report.accepted, report.rejected) == (0, 1)
    assert report.reasons == {"binary csv file": 1}


def test_a_symlink_loop_in_the_landing_folder_counts_each_file_once(con, tmp_path):
    root = tmp_path / "landing"
    write_bytes(root / "part1" / "events.csv", csv_bytes(rows(100), "\n"))
    os.symlink("..", root / "part1" / "loop")
    os.symlink(root / "part1", root / "alias")  # the same folder under a second name
    files = export_files(root, "**/*.csv")
    assert files == [str((root / "part1" / "events.csv").resolve())]
    report = ingest_history(con, files, LogFormat(), [DAY])
    assert (report.files, report.rows_in, report.days[0].accepted) == (1, 100, 100)


def test_a_link_out_of_the_landing_root_is_never_followed(tmp_path):
    root = tmp_path / "landing"
    write_bytes(root / "in" / "a.csv", b"x\n")
    write_bytes(tmp_path / "elsewhere" / "b.csv", b"x\n")
    os.symlink(tmp_path / "elsewhere", root / "out")
    os.symlink(tmp_path, root / "up")
    # A '**' walk passes the links by; a pattern that names the link explicitly is refused.
    assert export_files(root, "**/*.csv") == [str((root / "in" / "a.csv").resolve())]
    with pytest.raises(LogConfigError, match="outside landing_root"):
        export_files(root, "out/*.csv")


def test_day_patterns_still_match_like_glob(tmp_path):
    root = tmp_path / "landing"
    expected = [
        write_bytes(root / "dt=20240502" / "part-0.parquet", b"x"),
        write_bytes(root / "dt=20240502" / "part-1.parquet", b"x"),
    ]
    write_bytes(root / "dt=20240502" / ".hidden.parquet", b"x")
    write_bytes(root / "dt=20240503" / "part-0.parquet", b"x")
    write_bytes(root / "dt=20240502" / "sub" / "part-2.parquet", b"x")
    assert day_files(root, "dt={date:%Y%m%d}/part-*.parquet", DAY) == expected
    assert day_files(root, "dt={date:%Y%m%d}/**/*.parquet", DAY) == [
        str(root / "dt=20240502" / "sub" / "part-2.parquet")
    ]
    assert export_files(root, "dt=*/**/part-[01].parquet") == [
        *expected,
        str(root / "dt=20240503" / "part-0.parquet"),
    ]


def test_the_filesystem_root_is_refused_as_a_landing_root():
    started = time.monotonic()
    with pytest.raises(LogConfigError, match="filesystem root"):
        export_files("/", "**/*.csv")
    assert time.monotonic() - started < 5


def test_discovery_is_bounded_in_depth_entries_and_time_and_reports_progress(tmp_path):
    root = tmp_path / "landing"
    deep = root
    for level in range(6):
        deep = deep / f"d{level}"
        write_bytes(deep / "x.csv", b"x\n")
    with pytest.raises(LogConfigError, match=r"more than 3 folders deep"):
        export_files(root, "**/*.csv", limits=DiscoveryLimits(max_depth=3))
    with pytest.raises(LogConfigError, match=r"more than 5 entries"):
        export_files(root, "**/*.csv", limits=DiscoveryLimits(max_entries=5))
    with pytest.raises(LogConfigError, match=r"after 0 s"):
        export_files(root, "**/*.csv", limits=DiscoveryLimits(max_seconds=0))
    said: list[str] = []
    found = export_files(
        root, "**/*.csv", limits=DiscoveryLimits(report_every_seconds=0), progress=said.append
    )
    assert len(found) == 6
    assert said and all("discovering" in line for line in said)
