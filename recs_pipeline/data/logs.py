"""Read one day of landing files through DuckDB: map columns, validate, quarantine bad rows.

A landing file is CSV, Parquet or newline-delimited JSON. Its columns are mapped onto the
contract of ``raw.interactions`` by :class:`LogFormat`. Every input row ends in exactly one of
two places: ``raw.interactions`` (clean) or ``raw.rejected_interactions`` (its raw text and the
reason). A file that cannot be read at all is quarantined as one record naming the error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import glob
import hashlib
import os
import string
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

import duckdb

from recs_pipeline.infra.warehouse import (
    quote_identifier,
    replace_partition,
    replace_partitions,
    transaction,
)

TimestampUnit = Literal["s", "ms", "us", "iso"]
FileFormat = Literal["csv", "parquet", "json"]

# The earliest event date accepted by default. Older than any web interaction log (MovieLens
# starts in 1995), newer than the dates a broken export produces: epoch 0 (1970) from a zero
# timestamp or a millisecond epoch read as microseconds, the 1956-1979 dates of Last.fm's HetRec
# tag log. Lower it (``min_plausible_date``) for an older log.
MIN_PLAUSIBLE_DATE = dt.date(1990, 1, 1)
# The landing layout the project writes and reads by default: one folder per day.
DEFAULT_PATTERN = "{date:%Y-%m-%d}/*.csv"
# Microseconds per unit of an epoch timestamp.
_EPOCH_FACTOR = {"s": 1_000_000, "ms": 1_000, "us": 1}


# The id rule, for user and item ids at ingest and for the item catalogue's ids: Unicode NFC;
# leading and trailing Unicode White_Space trimmed (tab, line breaks, NEL, NBSP and every other
# space separator); nothing left is an empty id; a control character (Unicode Cc: U+0000-U+001F,
# U+007F-U+009F) left inside quarantines the row. NFC and NFD spellings are then one id.
_WHITE_SPACE = r"[\t\n\x{0B}\f\r\x{85}\pZ]"


def normalized_id_sql(expr: str) -> str:
    """SQL for the id ``expr`` (text) under the id rule: NFC, trimmed, NULL when empty."""
    trim = f"^{_WHITE_SPACE}+|{_WHITE_SPACE}+$"
    return f"nullif(regexp_replace(nfc_normalize({expr}), '{trim}', '', 'g'), '')"


def control_character_sql(expr: str) -> str:
    """SQL true when the text ``expr`` holds a control character (Unicode Cc)."""
    return f"regexp_matches({expr}, '\\p{{Cc}}')"


class LogConfigError(ValueError):
    """A setting of the log source is wrong; the message names the setting."""


class LogReadError(RuntimeError):
    """The reader returned fewer records from a file than the file has data lines, without
    quarantining them: a reader fault that would otherwise pass as a short or empty file.
    Raised before anything is replaced."""


@dataclasses.dataclass(frozen=True)
class LogFormat:
    """How landing files map onto ``raw.interactions``.

    ``*_column`` name columns of the landing files. ``timestamp_unit`` says how the timestamp
    column is written: epoch seconds / milliseconds / microseconds, or ``iso`` (ISO-8601 text, an
    offset converted to UTC). ``event_types``, when given, is the set of accepted event types;
    other types are quarantined. ``weight_column`` is optional (weight 1.0 without it).

    ``date_columns`` (year, month, day), when given, builds each event's time from three
    columns (midnight UTC of that date) instead of ``timestamp_column``. An event dated before
    ``min_plausible_date`` is quarantined as "implausible timestamp" (a zero or missing epoch
    reads as 1970; bogus 1956-1979 dates occur in real exports).
    """

    format: FileFormat = "csv"
    user_column: str = "user_id"
    item_column: str = "item_id"
    timestamp_column: str = "timestamp"
    timestamp_unit: TimestampUnit = "ms"
    event_type_column: str | None = "event_type"
    weight_column: str | None = None
    event_types: tuple[str, ...] | None = None
    date_columns: tuple[str, str, str] | None = None
    min_plausible_date: dt.date | None = MIN_PLAUSIBLE_DATE

    def __post_init__(self) -> None:
        if self.format not in ("csv", "parquet", "json"):
            raise LogConfigError(f"format must be csv, parquet or json, not {self.format!r}")
        if self.timestamp_unit not in ("s", "ms", "us", "iso"):
            raise LogConfigError(
                f"timestamp_unit must be s, ms, us or iso, not {self.timestamp_unit!r}"
            )
        if self.date_columns is not None and (
            len(self.date_columns) != 3 or not all(self.date_columns)
        ):
            raise LogConfigError(
                f"date_columns must name three columns (year, month, day), not"
                f" {list(self.date_columns)!r}"
            )
        for setting in ("user_column", "item_column", "timestamp_column"):
            if setting == "timestamp_column" and self.date_columns is not None:
                continue
            if not getattr(self, setting):
                raise LogConfigError(f"{setting} must name a column of the landing files")

    def required_columns(self) -> dict[str, str]:
        """Setting name -> landing column, for the columns every file must have."""
        if self.date_columns is not None:
            year, month, day = self.date_columns
            time = {"date_columns (year)": year, "date_columns (month)": month}
            time["date_columns (day)"] = day
        else:
            time = {"timestamp_column": self.timestamp_column}
        return {"user_column": self.user_column, "item_column": self.item_column, **time}

    def optional_columns(self) -> dict[str, str]:
        return {
            name: column
            for name, column in (
                ("event_type_column", self.event_type_column),
                ("weight_column", self.weight_column),
            )
            if column
        }


# A range of at least two days in which more than this fraction of the days have no landing
# files is refused as a whole (an unmounted or unfinished export), unless empty days are allowed.
MOSTLY_EMPTY_FRACTION = 0.5


class EmptyDaysError(RuntimeError):
    """Days without landing files would delete stored rows, or most days of a range have no
    files. Raised before anything is replaced."""


class IngestInterrupted(RuntimeError):
    """An ingest of several days stopped at ``day`` on ``cause`` (also its ``__cause__``).

    Each day is replaced in its own transaction: the ``committed`` days were completely replaced
    before the error, ``day`` was rolled back and it and the ``not_ingested`` days keep their
    previous partitions. Re-running the range is safe (a day's replacement is idempotent).
    """

    def __init__(
        self,
        day: dt.date,
        committed: Sequence[dt.date],
        not_ingested: Sequence[dt.date],
        cause: BaseException,
    ) -> None:
        self.day = day
        self.committed = list(committed)
        self.not_ingested = list(not_ingested)
        self.cause = cause

        def days(values: Sequence[dt.date]) -> str:
            return ", ".join(d.isoformat() for d in values) or "none"

        super().__init__(
            f"{type(cause).__name__}: {cause}\n"
            f"Ingest of {day} failed and was rolled back. Days committed before it (complete):"
            f" {days(self.committed)}. Not ingested (previous partitions kept): {day}"
            + (f", {days(self.not_ingested)}" if self.not_ingested else "")
            + ". Fix the cause and re-run the range."
        )


@dataclasses.dataclass(frozen=True)
class IngestReport:
    day: dt.date
    files: int
    accepted: int
    rejected: int
    reasons: dict[str, int]

    @property
    def rows_in(self) -> int:
        """Rows read for this day: every one accepted or quarantined."""
        return self.accepted + self.rejected


@dataclasses.dataclass(frozen=True)
class HistoryReport:
    """One pass over a history export: a report per day of the run's range, and the rows whose
    day lies before or after it (counted, not stored). ``undated`` rows (no plausible
    timestamp, unreadable lines) are quarantined in ``undated_day``, the export's first day,
    so every run places them in the same partition.
    ``rows_in == sum(day.rows_in) + outside_before + outside_after``."""

    files: int
    rows_in: int
    days: list[IngestReport]
    outside_before: int
    outside_after: int
    undated: int
    undated_day: dt.date | None


def is_history_pattern(pattern: str) -> bool:
    """True when ``pattern`` has no ``{date...}`` field: it names a whole export, not a day."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None]
    except ValueError as error:
        raise LogConfigError(f"path_pattern {pattern!r} is not a valid pattern: {error}") from None
    return not fields


def export_files(
    landing_root: str | os.PathLike,
    pattern: str,
    *,
    limits: DiscoveryLimits | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[str]:
    """Every file of a history export: ``pattern`` (no ``{date}``; ``**`` crosses folders)
    globbed under ``landing_root``, for example ``"ratings.csv"``, ``"*.dat"`` or
    ``"month=*/*.parquet"``. Every match must lie inside ``landing_root``; each file is listed
    once (by its real path), and the walk is bounded by ``limits``, telling ``progress`` how
    far it is on a long one."""
    relative = pattern.replace("{{", "{").replace("}}", "}")
    return _glob_files(
        landing_root,
        relative,
        pattern,
        recursive=True,
        limits=limits or DiscoveryLimits(),
        progress=progress,
    )


def day_files(
    landing_root: str | os.PathLike,
    pattern: str,
    day: dt.date,
    *,
    progress: Callable[[str], None] | None = None,
) -> list[str]:
    """The landing files of ``day``: ``pattern`` formatted with ``date=day``, globbed.

    ``pattern`` is relative to ``landing_root`` and may use strftime codes, for example
    ``"{date:%Y-%m-%d}/*.csv"`` or ``"dt={date:%Y%m%d}/part-*.parquet"``. Every match must lie
    inside ``landing_root`` (no ``..`` or symlink escapes), as with :func:`export_files`.
    """
    try:
        relative = pattern.format(date=day)
    except (KeyError, IndexError, ValueError) as error:
        raise LogConfigError(f"path_pattern {pattern!r} is not a valid pattern: {error}") from None
    return _glob_files(landing_root, relative, pattern, progress=progress)


@dataclasses.dataclass(frozen=True)
class DiscoveryLimits:
    """Bounds on finding a pattern's files. A landing folder is a few thousand day folders and
    files; a walk that goes past these bounds has been pointed at the wrong folder (a mount
    point, a home directory), and saying so beats walking it for hours."""

    max_depth: int = 32  # folders below landing_root
    max_entries: int = 2_000_000  # folder entries looked at
    max_seconds: float = 600.0
    report_every_seconds: float = 10.0  # how often ``progress`` hears how far the walk is


def _glob_files(
    landing_root: str | os.PathLike,
    relative: str,
    pattern: str,
    *,
    recursive: bool = False,
    limits: DiscoveryLimits | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[str]:
    root = Path(landing_root).resolve()
    if not root.is_dir():
        raise LogConfigError(f"landing_root {str(landing_root)!r} is not an existing directory")
    if root == Path(root.anchor):
        raise LogConfigError(
            f"landing_root {str(landing_root)!r} is the filesystem root: point it at the folder"
            " that holds the logs"
        )
    if os.path.isabs(relative):
        raise LogConfigError(f"path_pattern {pattern!r} must be relative to landing_root")
    walk = _Walk(root, pattern, recursive, limits or DiscoveryLimits(), progress)
    walk.match(root, tuple(Path(relative).parts), 0)
    return sorted(walk.files)


class _Walk:
    """Glob ``parts`` under ``root`` as :func:`glob.glob` does (``*`` skips dot-names, ``**``
    spans folders when ``recursive``), except that every folder and file is taken by its real
    path: a folder is entered once per pattern position (a link loop ends there), a file is
    listed once whatever names reach it, and a link out of ``root`` is never followed (named
    by the pattern itself, it is an error)."""

    def __init__(self, root, pattern, recursive, limits, progress) -> None:
        self.root, self.pattern, self.recursive = root, pattern, recursive
        self.limits, self.progress = limits, progress
        self.files: set[str] = set()
        self.seen: set[tuple[str, int]] = set()
        self.entries = 0
        self.started = self.reported = time.monotonic()

    def _outside(self, real: Path, shown: Path) -> LogConfigError:
        return LogConfigError(
            f"path_pattern {self.pattern!r} reaches outside landing_root: {shown} ({real})"
        )

    def _tick(self, entries: int) -> None:
        self.entries += entries
        now = time.monotonic()
        elapsed = now - self.started
        where = f"under landing_root {str(self.root)!r} for path_pattern {self.pattern!r}"
        if self.entries > self.limits.max_entries:
            raise LogConfigError(
                f"stopped finding files {where}: more than {self.limits.max_entries} entries"
                f" looked at ({len(self.files)} files matched so far). Point landing_root at the"
                " folder of the logs, or narrow the pattern (no '**' from a large folder)."
            )
        if elapsed > self.limits.max_seconds:
            raise LogConfigError(
                f"stopped finding files {where} after {elapsed:.0f} s ({self.entries} entries,"
                f" {len(self.files)} files matched). Point landing_root at the folder of the"
                " logs, or narrow the pattern."
            )
        if self.progress is not None and now - self.reported >= self.limits.report_every_seconds:
            self.reported = now
            self.progress(
                f"discovering files {where}: {self.entries} entries in {elapsed:.0f} s,"
                f" {len(self.files)} files matched"
            )

    def match(self, folder: Path, parts: tuple[str, ...], depth: int) -> None:
        real = folder.resolve()
        if not real.is_relative_to(self.root):
            raise self._outside(real, folder)
        if (str(real), len(parts)) in self.seen:
            return  # this folder at this pattern position: a link loop or a second name
        self.seen.add((str(real), len(parts)))
        if not parts:
            return
        if depth > self.limits.max_depth:
            raise LogConfigError(
                f"stopped finding files under landing_root {str(self.root)!r} for path_pattern"
                f" {self.pattern!r}: more than {self.limits.max_depth} folders deep ({folder})"
            )
        head, rest = parts[0], parts[1:]
        if head == "**" and self.recursive:
            self.match(folder, rest, depth)  # ** as no folder at all
            for entry in self._listing(folder):
                if not entry.name.startswith(".") and entry.is_dir():
                    child = Path(entry.path)
                    if child.resolve().is_relative_to(self.root):
                        self.match(child, parts, depth + 1)
            return
        if head == "**":
            head = "*"
        if glob.has_magic(head):
            names = [
                entry.name
                for entry in self._listing(folder)
                if fnmatch.fnmatchcase(entry.name, head)
                and (head.startswith(".") or not entry.name.startswith("."))
            ]
        else:
            names = [head]
        for name in names:
            path = folder / name
            if rest:
                if path.is_dir():
                    self.match(path, rest, depth + 1)
            elif path.is_file():
                real_file = path.resolve()
                if not real_file.is_relative_to(self.root):
                    raise self._outside(real_file, path)
                self.files.add(str(real_file))

    def _listing(self, folder: Path) -> list[os.DirEntry]:
        try:
            with os.scandir(folder) as scan:
                entries = list(scan)
        except OSError:
            return []  # unreadable folder: nothing to match in it
        self._tick(len(entries))
        return entries


# A CSV line longer than DuckDB's reader limit (``max_line_size``, 2,000,000 bytes) is one
# rejected line, quarantined with the reader's message. Its raw text is kept up to
# MAX_RECORD_CHARS characters (DuckDB's rejects table keeps no more).
MAX_RECORD_CHARS = 10_000
# The dialect and header are sniffed from the start of each file with this larger limit, so that
# a long line among the first rows cannot make the whole file unreadable.
SNIFF_MAX_LINE_BYTES = 64 << 20


def _sniffed_csv(con: duckdb.DuckDBPyConnection, path: str) -> list:
    """The read_csv parameters of one CSV file: its dialect and header sniffed once, every
    column as text. Reading with them fixed (``auto_detect=false``) makes a line over the
    reader's maximum size a rejected line like any other malformed line.

    The sniffed line ending is not passed back: DuckDB 1.5.5's reader given ``new_line`` with
    ``strict_mode`` returns no row and no reject from a CRLF file (Python's csv.writer's
    default), and left to itself it reads LF, CRLF and CR files alike."""
    delim, quote, escape, comment, skip, columns = con.execute(
        """SELECT Delimiter, Quote, Escape, Comment, SkipRows, Columns
           FROM sniff_csv(?, header=true, all_varchar=true, ignore_errors=true,
                          strict_mode=true, max_line_size=?)""",
        [path, SNIFF_MAX_LINE_BYTES],
    ).fetchone()

    def option(value: str) -> str:
        return "" if value == "(empty)" else value

    names = {column["name"]: "VARCHAR" for column in columns}
    return [
        path,
        option(delim),
        option(quote),
        option(escape),
        option(comment),
        skip,
        names,
    ]


@dataclasses.dataclass(frozen=True)
class _TextScan:
    lines: int  # lines holding anything (a reader skips empty lines)
    bytes_present: frozenset[int]  # which of the quote characters occur
    nul_offset: int | None  # where a run of NUL bytes starts: not a text file


_QUOTES = frozenset(b"\"'")
# A run of NUL bytes this long makes a text log binary: a sparse or zero-filled file, a
# preallocated file cut short by a crash, an image. A lone NUL inside a field is a bad row,
# quarantined by the id rule like any control character.
NUL_RUN = b"\0" * 64


def _scan_text(path: str, chunk_bytes: int = 1 << 20) -> _TextScan:
    """One pass over a text log before the reader sees it: its non-empty lines (any of LF, CRLF,
    CR ends a line) and quote characters, to check what the reader returns; and the first run
    of NUL bytes, after which it is not read at all (DuckDB's sniffer takes time quadratic in
    such a run: minutes for a few MiB, a sparse 2 GB file hung it)."""
    lines, quotes, carry, tail, offset = 0, set(), b"", b"", 0
    with open(path, "rb") as file:
        while chunk := file.read(chunk_bytes):
            if (nul := (tail + chunk).find(NUL_RUN)) >= 0:
                return _TextScan(lines, frozenset(quotes), offset - len(tail) + nul)
            tail = chunk[-len(NUL_RUN) + 1 :]
            quotes.update(q for q in _QUOTES if q in chunk)
            parts = (carry + chunk).splitlines()
            # A line cut by the chunk's end continues in the next chunk; only whether it holds
            # anything matters, so one byte of it is kept (a CR cut from its LF makes an empty
            # line, which is not counted).
            carry = parts.pop()[:1] if parts and chunk[-1:] not in (b"\n", b"\r") else b""
            lines += sum(1 for part in parts if part)
            offset += len(chunk)
    return _TextScan(lines + bool(carry), frozenset(quotes), None)


class _BinaryFile(Exception):
    """A text log (csv, json) holding a NUL byte."""


def _read_sql(fmt: LogFormat) -> str:
    """A DuckDB table function reading one file, every column as text. Parquet and JSON take the
    path (``?``); CSV takes the parameters of :func:`_sniffed_csv`."""
    if fmt.format == "csv":
        return (
            "read_csv(?, auto_detect=false, header=true, delim=?, quote=?, escape=?, comment=?,"
            " skip=?, columns=?, store_rejects=true, rejects_table='_rejects',"
            " rejects_scan='_rejects_scan', strict_mode=true)"
        )
    if fmt.format == "parquet":
        return "read_parquet(?)"
    return "read_json(?, format='newline_delimited', records=true)"


def _stage_file(
    con: duckdb.DuckDBPyConnection, fmt: LogFormat, path: str
) -> tuple[int, dict[str, str] | None]:
    """Load one file into ``_staged`` (mapped, all text). Returns (rows, missing settings)."""
    con.execute("DROP TABLE IF EXISTS _rejects")
    con.execute("DROP TABLE IF EXISTS _rejects_scan")
    if os.path.getsize(path) == 0:
        return 0, None  # no header, no rows: nothing to read or sniff
    scan = None if fmt.format == "parquet" else _scan_text_log(fmt, path)
    params = _read_params(con, fmt, path)
    columns = _load_file(con, fmt, params)
    missing = _missing_columns(fmt, columns)
    if missing:
        _stage_unmapped(con, path, missing)
    else:
        _stage_mapped(con, fmt, path, columns)
    n_rows = con.execute("SELECT count(*) FROM _file").fetchone()[0]
    if fmt.format == "csv":
        n_rows += _stage_rejected_lines(con, path)
    if scan is not None:
        _check_records(path, fmt, scan, n_rows, params)
    return n_rows, missing or None


def _scan_text_log(fmt: LogFormat, path: str) -> _TextScan:
    """The scan of a text log, for :func:`_check_records` once it is read. Raises
    :class:`_BinaryFile` at a run of NUL bytes, before the reader sees (and hangs on) it."""
    scan = _scan_text(path)
    if scan.nul_offset is not None:
        raise _BinaryFile(
            f"binary {fmt.format} file: NUL bytes from offset {scan.nul_offset}"
            f" (a {fmt.format} log is text)"
        )
    return scan


def _read_params(con: duckdb.DuckDBPyConnection, fmt: LogFormat, path: str) -> list:
    """The parameters of :func:`_read_sql` for ``path``: the path, and for CSV its sniffed
    dialect, header and columns."""
    # DuckDB's readers glob their path: escape it so a name with * ? [ is read as itself.
    params = [glob.escape(path)]
    if fmt.format == "csv":
        params = _sniffed_csv(con, params[0])
    return params


def _load_file(con: duckdb.DuckDBPyConnection, fmt: LogFormat, params: list) -> set[str]:
    """The file's column names, once ``_file`` holds its rows as the reader returns them: the
    mapping is checked against them and the rows inserted from there."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _file AS SELECT * FROM {_read_sql(fmt)}", params)
    return {row[0] for row in con.execute("DESCRIBE _file").fetchall()}


def _missing_columns(fmt: LogFormat, columns: set[str]) -> dict[str, str]:
    """Setting -> column of each required mapped column the file lacks (empty: none)."""
    return {
        setting: column
        for setting, column in fmt.required_columns().items()
        if column not in columns
    }


def _stage_unmapped(con: duckdb.DuckDBPyConnection, path: str, missing: Mapping[str, str]) -> None:
    """Quarantine every row of ``_file`` whole, naming the missing columns: a file that cannot
    be mapped still has each row end somewhere."""
    reason = "missing column " + ", ".join(
        f"{column!r} ({setting})" for setting, column in missing.items()
    )
    con.execute(
        "INSERT INTO _staged SELECT ?, CAST(to_json(f) AS VARCHAR), NULL, NULL, NULL, NULL,"
        " NULL, ? FROM _file f",
        [path, reason],
    )


def _stage_mapped(
    con: duckdb.DuckDBPyConnection, fmt: LogFormat, path: str, columns: set[str]
) -> None:
    """Insert every row of ``_file`` into ``_staged``, its mapped columns as text (NULL for an
    optional column the file lacks), for :func:`_validate` to parse."""

    def text(column: str | None) -> str:
        if column is None or column not in columns:
            return "NULL"
        return f"CAST(f.{quote_identifier(column)} AS VARCHAR)"

    if fmt.date_columns is not None:
        # year-month-day text, read as a date by _timestamp_sql (month 13: unparseable).
        timestamp = " || '-' || ".join(text(column) for column in fmt.date_columns)
    else:
        timestamp = text(fmt.timestamp_column)
    con.execute(
        f"""INSERT INTO _staged
        SELECT ?, CAST(to_json(f) AS VARCHAR), {text(fmt.user_column)},
               {text(fmt.item_column)}, {timestamp},
               {text(fmt.event_type_column)}, {text(fmt.weight_column)}, NULL
        FROM _file f""",
        [path],
    )


def _stage_rejected_lines(con: duckdb.DuckDBPyConnection, path: str) -> int:
    """The number of lines the CSV reader could not parse, once each is quarantined in
    ``_staged``: they are records of the file too, and the count checks the reader."""
    # Lines the CSV reader could not parse (wrong field count, broken quoting, over the
    # maximum line size): one record per line, its raw text and the reader's error (the
    # first one, in text order, of a line with several).
    con.execute(
        """INSERT INTO _staged
        SELECT ?, left(trim(min(csv_line), chr(13) || chr(10)), ?), NULL, NULL, NULL, NULL,
               NULL,
               'malformed CSV line ' || line || ': '
               || min(error_type || coalesce(' (' || error_message || ')', ''))
        FROM _rejects GROUP BY line""",
        [path, MAX_RECORD_CHARS],
    )
    return con.execute("SELECT count(DISTINCT line) FROM _rejects").fetchone()[0]


def _check_records(path: str, fmt: LogFormat, scan: _TextScan, records: int, params: list) -> None:
    """Raise :class:`LogReadError` when the reader's records (rows and rejected lines) cannot
    account for the file's lines. Every non-empty data line is one record unless quoted fields
    span lines, so: no record from data lines is always a fault, and without quoting, comment
    lines or skipped lines the two counts must agree."""
    data_lines = scan.lines
    exact = fmt.format == "json"
    if fmt.format == "csv":
        quote, comment, skip = params[2], params[4], params[5]
        data_lines -= 1 + skip  # the header, and lines before it
        exact = not comment and not skip and (not quote or ord(quote) not in scan.bytes_present)
    if (data_lines > 0 and records == 0) or (exact and records != data_lines):
        raise LogReadError(
            f"{path} has {data_lines} data lines, but the {fmt.format} reader returned"
            f" {records} rows (rejected lines included): a reader fault, not an empty or"
            " short file. Nothing was replaced. Re-export the file (LF line endings, UTF-8)"
            " and report the file's first lines with this message."
        )


def _timestamp_sql(fmt: LogFormat) -> str:
    """SQL turning the text column ``ts_raw`` into a UTC TIMESTAMP, NULL when unparseable."""
    unit = fmt.timestamp_unit
    if fmt.date_columns is not None:
        return "CAST(TRY_CAST(ts_raw AS DATE) AS TIMESTAMP)"
    if unit == "iso":
        return "timezone('UTC', TRY_CAST(ts_raw AS TIMESTAMPTZ))"
    factor = _EPOCH_FACTOR[unit]
    # Bounds keep make_timestamp inside its range (years 1677..2262) instead of raising.
    return (
        f"CASE WHEN abs(TRY_CAST(ts_raw AS DOUBLE)) * {factor} < 9.2e18"
        f" THEN make_timestamp(CAST(round(TRY_CAST(ts_raw AS DOUBLE) * {factor}) AS BIGINT)) END"
    )


def _stage_files(
    con: duckdb.DuckDBPyConnection, files: Sequence[str], fmt: LogFormat, what: str
) -> None:
    """Load ``files`` into ``_staged`` (mapped, all text); an unreadable file is one record.
    Raises :class:`LogConfigError` when a mapped column exists in none of them."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _staged (source_file VARCHAR, record VARCHAR,
        user_raw VARCHAR, item_raw VARCHAR, ts_raw VARCHAR, event_raw VARCHAR,
        weight_raw VARCHAR, reason VARCHAR)"""
    )
    missing_everywhere: dict[str, str] | None = None
    readable = 0
    for path in files:
        try:
            n_rows, missing = _stage_file(con, fmt, path)
        except (duckdb.Error, _BinaryFile) as error:
            message = str(error).splitlines()[0][:300]
            if isinstance(error, duckdb.Error):
                message = f"unreadable {fmt.format} file: {message}"
            con.execute(
                "INSERT INTO _staged VALUES (?, NULL, NULL, NULL, NULL, NULL, NULL, ?)",
                [path, message],
            )
            continue
        if n_rows == 0:
            continue
        readable += 1
        if missing is None:
            missing_everywhere = {}
        elif missing_everywhere is None:
            missing_everywhere = dict(missing)
        else:
            missing_everywhere = {k: v for k, v in missing_everywhere.items() if k in missing}
    if readable and missing_everywhere:
        setting, column = next(iter(missing_everywhere.items()))
        raise LogConfigError(
            f"{setting} maps to column {column!r}, which none of the {readable} {what} has"
        )


def _validate(con: duckdb.DuckDBPyConnection, fmt: LogFormat, day: dt.date | None) -> None:
    """``_staged`` -> ``_validated``: parsed ``ts``, ids, weight and ``final_reason`` (NULL for
    a clean row). With ``day``, a row of another day is rejected ("timestamp outside partition
    day"); without (a history export), the row's own day decides where it goes."""
    event_filter = "FALSE"
    params: list = [day, fmt.min_plausible_date]
    if fmt.event_types is not None:
        event_filter = "event_raw IS NULL OR NOT list_contains($3, event_raw)"
        params.append(list(fmt.event_types))
    # ISO text without an offset means UTC: parse under a UTC session time zone (DuckDB's
    # default is the machine's local zone), then restore the caller's setting.
    zone = con.execute("SELECT current_setting('TimeZone')").fetchone()[0]
    con.execute("SET TimeZone = 'UTC'")
    try:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _validated AS
            WITH parsed AS (
                SELECT *, {_timestamp_sql(fmt)} AS ts,
                       {normalized_id_sql("user_raw")} AS user_id,
                       {normalized_id_sql("item_raw")} AS item_id,
                       CASE WHEN weight_raw IS NULL THEN 1.0
                            ELSE TRY_CAST(weight_raw AS DOUBLE) END AS weight
                FROM _staged
            )
            SELECT *, coalesce(reason,
                CASE WHEN user_id IS NULL THEN 'null or empty user id'
                     WHEN item_id IS NULL THEN 'null or empty item id'
                     WHEN {control_character_sql("user_id")} THEN 'control character in user id'
                     WHEN {control_character_sql("item_id")} THEN 'control character in item id'
                     WHEN ts IS NULL THEN 'unparseable timestamp'
                     WHEN CAST(ts AS DATE) < CAST($2 AS DATE)
                          THEN 'implausible timestamp: before ' || CAST($2 AS VARCHAR)
                     WHEN CAST(ts AS DATE) <> CAST($1 AS DATE)
                          THEN 'timestamp outside partition day ' || CAST($1 AS VARCHAR)
                     WHEN {event_filter} THEN 'unknown event type'
                     WHEN weight IS NULL OR NOT isfinite(weight) OR weight < 0
                          THEN 'invalid weight'
                END) AS final_reason
            FROM parsed""",
            params,
        )
    finally:
        con.execute("SET TimeZone = '" + zone.replace("'", "''") + "'")


def ingest_day(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[str],
    fmt: LogFormat,
    day: dt.date,
    *,
    allow_empty: bool = False,
) -> IngestReport:
    """Validate ``files`` as the events of ``day`` and replace that day's partitions.

    Clean rows replace ``raw.interactions[event_date = day]``; rejected rows (with raw text and
    reason) replace ``raw.rejected_interactions[event_date = day]``, both in one transaction.
    Raises :class:`LogConfigError` when a mapped column exists in none of the files, and
    :class:`EmptyDaysError` when ``files`` is empty but the day has stored rows, unless
    ``allow_empty`` (then the day becomes an empty partition).
    """
    _stage_files(con, files, fmt, f"landing files of {day}")
    _validate(con, fmt, day)
    with transaction(con):
        if not files and not allow_empty and (stored := _stored_rows(con, day)):
            raise EmptyDaysError(_stored_message({day: stored}))
        accepted = replace_partition(
            con,
            "raw.interactions",
            day,
            """SELECT CAST(ts AS DATE), ts, user_id, item_id, event_raw, weight, source_file
               FROM _validated WHERE final_reason IS NULL""",
        )
        rejected = replace_partition(
            con,
            "raw.rejected_interactions",
            day,
            """SELECT CAST(? AS DATE), source_file, record, final_reason
               FROM _validated WHERE final_reason IS NOT NULL""",
            [day],
        )
    reasons = dict(
        con.execute(
            """SELECT regexp_replace(final_reason, ':.*$', ''), count(*) FROM _validated
               WHERE final_reason IS NOT NULL GROUP BY 1 ORDER BY 2 DESC"""
        ).fetchall()
    )
    for table in ("_staged", "_validated", "_file", "_rejects", "_rejects_scan"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return IngestReport(day, len(files), accepted, rejected, reasons)


def ingest_days(
    con: duckdb.DuckDBPyConnection,
    files_by_day: Mapping[dt.date, Sequence[str]],
    fmt: LogFormat,
    *,
    allow_empty_days: bool = False,
    on_day: Callable[[IngestReport], None] | None = None,
) -> list[IngestReport]:
    """Ingest several days (in date order) with :func:`ingest_day`, each in its own transaction.

    Checked first, before anything is replaced (both lifted by ``allow_empty_days``): a range
    of two or more days in which more than half the days (:data:`MOSTLY_EMPTY_FRACTION`) have
    no landing files is refused, and so is a day without files whose partition holds rows (a
    day moved away would otherwise delete its history). A day without files and without stored
    rows is ingested as an empty partition.

    A range is not one transaction: every day is a partition of its own, complete once
    committed, so a range that fails part-way leaves correct (if not all new) data; one
    transaction over a whole backfill would keep the write-ahead log and undo of every day at
    once, which is what runs out of disk first. A failure raises :class:`IngestInterrupted`
    naming the cause and the days committed before it. ``on_day`` sees each day's report.
    """
    days = sorted(files_by_day)
    empty = [day for day in days if not files_by_day[day]]
    if not allow_empty_days:
        if len(days) >= 2 and len(empty) > MOSTLY_EMPTY_FRACTION * len(days):
            raise EmptyDaysError(
                f"{len(empty)} of {len(days)} days of the range {days[0]}..{days[-1]} have no"
                f" landing files ({_day_list(empty)}): the landing files look unmounted or not"
                " exported yet. Nothing was replaced. Re-mount or complete the export and"
                " re-run, or set allow_empty_days to ingest these days as empty."
            )
        held = _stored_rows_between(con, min(empty), max(empty)) if empty else {}
        stored = {day: held[day] for day in empty if day in held}
        if stored:
            raise EmptyDaysError(_stored_message(stored))
    reports: list[IngestReport] = []
    for position, day in enumerate(days):
        try:
            report = ingest_day(con, files_by_day[day], fmt, day, allow_empty=allow_empty_days)
        except Exception as error:
            committed = [r.day for r in reports]
            raise IngestInterrupted(day, committed, days[position + 1 :], error) from error
        reports.append(report)
        if on_day is not None:
            on_day(report)
    return reports


def export_fingerprint(files: Sequence[str], fmt: LogFormat) -> str:
    """Landing files' identity as read with ``fmt``, without reading them (a history export's,
    or one day's): every file's path, size and modification time (what ``make`` and ``rsync``
    compare) and the column mapping. A re-export changes it, a file added or removed, and so
    does another mapping (a corrected ``user_column`` or ``timestamp_unit``)."""
    digest = hashlib.sha256(f"{fmt!r}\n".encode())
    for path in sorted(files):
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def ingest_history(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[str],
    fmt: LogFormat,
    days: Sequence[dt.date],
    *,
    allow_empty_days: bool = False,
    on_day: Callable[[IngestReport], None] | None = None,
) -> HistoryReport:
    """Read a history export (``files``, all of it) once and replace every day of ``days``.

    Each row goes to the partition of its event day. Rows whose day lies outside ``days`` are
    counted (before / after the range), never stored: another run's range stores them. Rows
    without a plausible timestamp (unparseable, before ``min_plausible_date``, unreadable
    lines) are quarantined in the export's first day (the earliest plausible event day of the
    files, else the range's first day), the same partition for every run. A one-day run is the
    same pass with one day in range.

    Checked before anything is replaced (both lifted by ``allow_empty_days``): an export with
    no rows at all is refused, and so is a day of the range without rows whose partition holds
    rows. Each day is then replaced in its own transaction, as :func:`ingest_days` does; a
    failure raises :class:`IngestInterrupted`.
    """
    days = sorted(days)
    _stage_files(con, files, fmt, "files of the export")
    _validate(con, fmt, None)
    undated_day = _place_rows(con, fmt, days[0])
    rows_in, before, after, undated = _placement_totals(con, days)
    placed = _placed_by_day(con, days)
    if not allow_empty_days:
        _refuse_empty_export(con, len(files), days, rows_in, placed)
    tallies = _tally_days(con, days, placed)
    reports = _replace_range(con, days, tallies, on_day)
    for table in ("_staged", "_validated", "_placed", "_file", "_rejects", "_rejects_scan"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return HistoryReport(len(files), rows_in, reports, before, after, undated, undated_day)


def _place_rows(con: duckdb.DuckDBPyConnection, fmt: LogFormat, first_of_range: dt.date) -> dt.date:
    """The day undated rows go to (the export's first plausible day, the same for every run),
    after creating ``_placed``: ``_validated`` with each row's ``event_day`` and ``dated``."""
    dated = "ts IS NOT NULL AND (CAST(? AS DATE) IS NULL OR CAST(ts AS DATE) >= ?)"
    bound = [fmt.min_plausible_date, fmt.min_plausible_date]
    first_day = con.execute(
        f"SELECT min(CAST(ts AS DATE)) FROM _validated WHERE {dated}", bound
    ).fetchone()[0]
    undated_day = first_day or first_of_range
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _placed AS
        SELECT *, coalesce({dated}, FALSE) AS dated,
               CASE WHEN {dated} THEN CAST(ts AS DATE) ELSE CAST(? AS DATE) END AS event_day
        FROM _validated""",
        [*bound, *bound, undated_day],
    )
    return undated_day


def _placement_totals(
    con: duckdb.DuckDBPyConnection, days: Sequence[dt.date]
) -> tuple[int, int, int, int]:
    """(rows read, before the range, after it, undated): the export-wide counts of the report."""
    return con.execute(
        """SELECT count(*), count(*) FILTER (event_day < $1), count(*) FILTER (event_day > $2),
                  count(*) FILTER (NOT dated) FROM _placed""",
        [days[0], days[-1]],
    ).fetchone()


def _placed_by_day(
    con: duckdb.DuckDBPyConnection, days: Sequence[dt.date]
) -> dict[dt.date, tuple[int, int]]:
    """Day -> (files, rows) of each day of the range with rows: what the empty check compares."""
    return {
        day: (n_files, n)
        for day, n_files, n in con.execute(
            """SELECT event_day, count(DISTINCT source_file), count(*) FROM _placed
               WHERE event_day BETWEEN $1 AND $2 GROUP BY 1""",
            [days[0], days[-1]],
        ).fetchall()
    }


def _refuse_empty_export(
    con: duckdb.DuckDBPyConnection,
    n_files: int,
    days: Sequence[dt.date],
    rows_in: int,
    placed: Mapping[dt.date, tuple[int, int]],
) -> None:
    """Raise :class:`EmptyDaysError` if the export has no rows or would empty a stored day."""
    if rows_in == 0:
        raise EmptyDaysError(
            f"the export ({n_files} files) holds no rows: the landing files look"
            " unmounted or not exported yet. Nothing was replaced. Check landing_root and"
            " path_pattern, or set allow_empty_days to ingest the range as empty."
        )
    stored = {
        day: n for day, n in _stored_rows_between(con, days[0], days[-1]).items()
        if day not in placed
    }  # fmt: skip
    if stored:
        raise EmptyDaysError(_stored_message(stored, "without rows in the export"))


@dataclasses.dataclass(frozen=True)
class _DayTallies:
    """What each day of a history ingest's range received, for its :class:`IngestReport`."""

    placed: Mapping[dt.date, tuple[int, int]]  # day -> (files, rows)
    accepted: dict[dt.date, int]
    rejected: dict[dt.date, int]
    reasons: dict[dt.date, dict[str, int]]

    def report(self, day: dt.date) -> IngestReport:
        """The report of ``day`` (zeros for a day without rows)."""
        return IngestReport(
            day,
            self.placed.get(day, (0, 0))[0],
            self.accepted.get(day, 0),
            self.rejected.get(day, 0),
            self.reasons.get(day, {}),
        )


def _tally_days(
    con: duckdb.DuckDBPyConnection,
    days: Sequence[dt.date],
    placed: Mapping[dt.date, tuple[int, int]],
) -> _DayTallies:
    """Per day of the range: rows accepted, quarantined and why, in one pass over ``_placed``."""
    accepted: dict[dt.date, int] = {}
    rejected: dict[dt.date, int] = {}
    reasons: dict[dt.date, dict[str, int]] = {}
    for day, reason, n in con.execute(
        """SELECT event_day, regexp_replace(final_reason, ':.*$', ''), count(*) FROM _placed
           WHERE event_day BETWEEN $1 AND $2 GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2""",
        [days[0], days[-1]],
    ).fetchall():
        if reason is None:
            accepted[day] = n
        else:
            rejected[day] = rejected.get(day, 0) + n
            reasons.setdefault(day, {})[reason] = n
    return _DayTallies(placed, accepted, rejected, reasons)


def _replace_range(
    con: duckdb.DuckDBPyConnection,
    days: Sequence[dt.date],
    tallies: _DayTallies,
    on_day: Callable[[IngestReport], None] | None,
) -> list[IngestReport]:
    """The reports of ``days``, once ``_placed`` has replaced their partitions chunk by chunk."""
    reports: list[IngestReport] = []
    # The range is written in chunks of consecutive days, each one transaction replacing all its
    # days at once: a many-year export with thousands of mostly empty days costs a few
    # statements, not four per day, and a failure still names the days committed before it.
    for chunk in _chunks(days, tallies.accepted, tallies.rejected):
        try:
            _replace_chunk(con, chunk)
        except Exception as error:
            committed = [r.day for r in reports]
            later = days[len(committed) + 1 :]
            raise IngestInterrupted(chunk[0], committed, later, error) from error
        for day in chunk:
            report = tallies.report(day)
            reports.append(report)
            if on_day is not None:
                on_day(report)
    return reports


def _replace_chunk(con: duckdb.DuckDBPyConnection, chunk: Sequence[dt.date]) -> None:
    """Replace the clean and quarantined partitions of ``chunk``'s days in one transaction."""
    with transaction(con):
        replace_partitions(
            con,
            "raw.interactions",
            chunk[0],
            chunk[-1],
            """SELECT event_day, ts, user_id, item_id, event_raw, weight, source_file
               FROM _placed WHERE final_reason IS NULL AND event_day BETWEEN ? AND ?""",
            [chunk[0], chunk[-1]],
        )
        replace_partitions(
            con,
            "raw.rejected_interactions",
            chunk[0],
            chunk[-1],
            """SELECT event_day, source_file, record, final_reason
               FROM _placed WHERE final_reason IS NOT NULL
               AND event_day BETWEEN ? AND ?""",
            [chunk[0], chunk[-1]],
        )


#: Rows a chunk of a history ingest's range holds at most before the next day starts another.
CHUNK_ROWS = 2_000_000


def _chunks(days: Sequence[dt.date], *row_counts: Mapping[dt.date, int]) -> Iterator[list[dt.date]]:
    """Consecutive runs of ``days`` holding up to :data:`CHUNK_ROWS` rows each (a day with
    more is a chunk of its own)."""
    chunk: list[dt.date] = []
    rows = 0
    for day in days:
        n = sum(counts.get(day, 0) for counts in row_counts)
        if chunk and rows + n > CHUNK_ROWS:
            yield chunk
            chunk, rows = [], 0
        chunk.append(day)
        rows += n
    if chunk:
        yield chunk


def _stored_rows_between(
    con: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date
) -> dict[dt.date, int]:
    """Rows stored per day from ``first`` to ``last`` in ``raw.interactions`` and
    ``raw.rejected_interactions`` (days without rows left out)."""
    return dict(
        con.execute(
            """SELECT event_date, count(*) FROM (
                   SELECT event_date FROM raw.interactions WHERE event_date BETWEEN $1 AND $2
                   UNION ALL
                   SELECT event_date FROM raw.rejected_interactions
                   WHERE event_date BETWEEN $1 AND $2)
               GROUP BY 1""",
            [first, last],
        ).fetchall()
    )


def _stored_rows(con: duckdb.DuckDBPyConnection, day: dt.date) -> int:
    """Rows stored for ``day`` in ``raw.interactions`` and ``raw.rejected_interactions``."""
    return con.execute(
        """SELECT (SELECT count(*) FROM raw.interactions WHERE event_date = $1)
                + (SELECT count(*) FROM raw.rejected_interactions WHERE event_date = $1)""",
        [day],
    ).fetchone()[0]


def _day_list(days: Sequence[dt.date], shown: int = 10) -> str:
    text = ", ".join(day.isoformat() for day in days[:shown])
    return text + (f" and {len(days) - shown} more" if len(days) > shown else "")


def _stored_message(stored: Mapping[dt.date, int], what: str = "without landing files") -> str:
    days = sorted(stored)
    detail = ", ".join(f"{day} ({stored[day]} rows)" for day in days[:10])
    if len(days) > 10:
        detail += f" and {len(days) - 10} more"
    return (
        f"{len(days)} day(s) {what} have stored rows that ingesting would"
        f" delete: {detail}. Nothing was replaced. Restore their landing files (re-mount the"
        " export, move the day's folder back) and re-run, or set allow_empty_days to replace"
        " them by empty partitions."
    )
