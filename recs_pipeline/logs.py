"""Read one day of landing files through DuckDB: map columns, validate, quarantine bad rows.

A landing file is CSV, Parquet or newline-delimited JSON. Its columns are mapped onto the
contract of ``raw.interactions`` by :class:`LogFormat`. Every input row ends in exactly one of
two places: ``raw.interactions`` (clean) or ``raw.rejected_interactions`` (its raw text and the
reason). A file that cannot be read at all is quarantined as one record naming the error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import glob
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import duckdb

from recs_pipeline.warehouse import quote_identifier, replace_partition, transaction

TimestampUnit = Literal["s", "ms", "us", "iso"]
FileFormat = Literal["csv", "parquet", "json"]

# Microseconds per unit of an epoch timestamp.
# The landing layout the project writes and reads by default: one folder per day.
DEFAULT_PATTERN = "{date:%Y-%m-%d}/*.csv"
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


@dataclasses.dataclass(frozen=True)
class LogFormat:
    """How landing files map onto ``raw.interactions``.

    ``*_column`` name columns of the landing files. ``timestamp_unit`` says how the timestamp
    column is written: epoch seconds / milliseconds / microseconds, or ``iso`` (ISO-8601 text, an
    offset converted to UTC). ``event_types``, when given, is the set of accepted event types;
    other types are quarantined. ``weight_column`` is optional (weight 1.0 without it).
    """

    format: FileFormat = "csv"
    user_column: str = "user_id"
    item_column: str = "item_id"
    timestamp_column: str = "timestamp"
    timestamp_unit: TimestampUnit = "ms"
    event_type_column: str | None = "event_type"
    weight_column: str | None = None
    event_types: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.format not in ("csv", "parquet", "json"):
            raise LogConfigError(f"format must be csv, parquet or json, not {self.format!r}")
        if self.timestamp_unit not in ("s", "ms", "us", "iso"):
            raise LogConfigError(
                f"timestamp_unit must be s, ms, us or iso, not {self.timestamp_unit!r}"
            )
        for setting in ("user_column", "item_column", "timestamp_column"):
            if not getattr(self, setting):
                raise LogConfigError(f"{setting} must name a column of the landing files")

    def required_columns(self) -> dict[str, str]:
        """Setting name -> landing column, for the columns every file must have."""
        return {
            "user_column": self.user_column,
            "item_column": self.item_column,
            "timestamp_column": self.timestamp_column,
        }

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


def day_files(landing_root: str | os.PathLike, pattern: str, day: dt.date) -> list[str]:
    """The landing files of ``day``: ``pattern`` formatted with ``date=day``, globbed.

    ``pattern`` is relative to ``landing_root`` and may use strftime codes, for example
    ``"{date:%Y-%m-%d}/*.csv"`` or ``"dt={date:%Y%m%d}/part-*.parquet"``. Every match must lie
    inside ``landing_root`` (no ``..`` or symlink escapes).
    """
    root = Path(landing_root).resolve()
    if not root.is_dir():
        raise LogConfigError(f"landing_root {str(landing_root)!r} is not an existing directory")
    try:
        relative = pattern.format(date=day)
    except (KeyError, IndexError, ValueError) as error:
        raise LogConfigError(f"path_pattern {pattern!r} is not a valid pattern: {error}") from None
    if os.path.isabs(relative):
        raise LogConfigError(f"path_pattern {pattern!r} must be relative to landing_root")
    files = []
    for match in sorted(glob.glob(os.path.join(glob.escape(str(root)), relative))):
        path = Path(match).resolve()
        if not path.is_relative_to(root):
            raise LogConfigError(f"path_pattern {pattern!r} reaches outside landing_root: {match}")
        if path.is_file():
            files.append(str(path))
    return files


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
    reader's maximum size a rejected line like any other malformed line."""
    delim, quote, escape, new_line, comment, skip, columns = con.execute(
        """SELECT Delimiter, Quote, Escape, NewLineDelimiter, Comment, SkipRows, Columns
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
        new_line,
        option(comment),
        skip,
        names,
    ]


def _read_sql(fmt: LogFormat) -> str:
    """A DuckDB table function reading one file, every column as text. Parquet and JSON take the
    path (``?``); CSV takes the parameters of :func:`_sniffed_csv`."""
    if fmt.format == "csv":
        return (
            "read_csv(?, auto_detect=false, header=true, delim=?, quote=?, escape=?, new_line=?,"
            " comment=?, skip=?, columns=?, store_rejects=true, rejects_table='_rejects',"
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
    # DuckDB's readers glob their path: escape it so a name with * ? [ is read as itself.
    params = [glob.escape(path)]
    if fmt.format == "csv":
        params = _sniffed_csv(con, params[0])
    con.execute(f"CREATE OR REPLACE TEMP TABLE _file AS SELECT * FROM {_read_sql(fmt)}", params)
    columns = {row[0] for row in con.execute("DESCRIBE _file").fetchall()}
    missing = {
        setting: column
        for setting, column in fmt.required_columns().items()
        if column not in columns
    }

    def text(column: str | None) -> str:
        if column is None or column not in columns:
            return "NULL"
        return f"CAST(f.{quote_identifier(column)} AS VARCHAR)"

    if missing:
        reason = "missing column " + ", ".join(
            f"{column!r} ({setting})" for setting, column in missing.items()
        )
        con.execute(
            "INSERT INTO _staged SELECT ?, CAST(to_json(f) AS VARCHAR), NULL, NULL, NULL, NULL,"
            " NULL, ? FROM _file f",
            [path, reason],
        )
    else:
        con.execute(
            f"""INSERT INTO _staged
            SELECT ?, CAST(to_json(f) AS VARCHAR), {text(fmt.user_column)},
                   {text(fmt.item_column)}, {text(fmt.timestamp_column)},
                   {text(fmt.event_type_column)}, {text(fmt.weight_column)}, NULL
            FROM _file f""",
            [path],
        )
    n_rows = con.execute("SELECT count(*) FROM _file").fetchone()[0]
    if fmt.format == "csv":
        # Lines the CSV reader could not parse (wrong field count, broken quoting, over the
        # maximum line size): one record per line, its raw text and the reader's error (the
        # first one, in text order, of a line with several).
        con.execute(
            """INSERT INTO _staged
            SELECT ?, left(min(csv_line), ?), NULL, NULL, NULL, NULL, NULL,
                   'malformed CSV line ' || line || ': '
                   || min(error_type || coalesce(' (' || error_message || ')', ''))
            FROM _rejects GROUP BY line""",
            [path, MAX_RECORD_CHARS],
        )
        n_rows += con.execute("SELECT count(DISTINCT line) FROM _rejects").fetchone()[0]
    return n_rows, missing or None


def _timestamp_sql(unit: TimestampUnit) -> str:
    """SQL turning the text column ``ts_raw`` into a UTC TIMESTAMP, NULL when unparseable."""
    if unit == "iso":
        return "timezone('UTC', TRY_CAST(ts_raw AS TIMESTAMPTZ))"
    factor = _EPOCH_FACTOR[unit]
    # Bounds keep make_timestamp inside its range (years 1677..2262) instead of raising.
    return (
        f"CASE WHEN abs(TRY_CAST(ts_raw AS DOUBLE)) * {factor} < 9.2e18"
        f" THEN make_timestamp(CAST(round(TRY_CAST(ts_raw AS DOUBLE) * {factor}) AS BIGINT)) END"
    )


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
        except duckdb.Error as error:
            message = str(error).splitlines()[0][:300]
            con.execute(
                "INSERT INTO _staged VALUES (?, NULL, NULL, NULL, NULL, NULL, NULL, ?)",
                [path, f"unreadable {fmt.format} file: {message}"],
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
            f"{setting} maps to column {column!r}, which none of the {readable} landing files"
            f" of {day} has"
        )

    event_filter = "FALSE"
    params: list = [day]
    if fmt.event_types is not None:
        event_filter = "event_raw IS NULL OR NOT list_contains($2, event_raw)"
        params.append(list(fmt.event_types))
    # ISO text without an offset means UTC: parse under a UTC session time zone (DuckDB's
    # default is the machine's local zone), then restore the caller's setting.
    zone = con.execute("SELECT current_setting('TimeZone')").fetchone()[0]
    con.execute("SET TimeZone = 'UTC'")
    try:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _validated AS
            WITH parsed AS (
                SELECT *, {_timestamp_sql(fmt.timestamp_unit)} AS ts,
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
        stored = {day: n for day in empty if (n := _stored_rows(con, day))}
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


def _stored_message(stored: Mapping[dt.date, int]) -> str:
    days = sorted(stored)
    detail = ", ".join(f"{day} ({stored[day]} rows)" for day in days[:10])
    if len(days) > 10:
        detail += f" and {len(days) - 10} more"
    return (
        f"{len(days)} day(s) without landing files have stored rows that ingesting would"
        f" delete: {detail}. Nothing was replaced. Restore their landing files (re-mount the"
        " export, move the day's folder back) and re-run, or set allow_empty_days to replace"
        " them by empty partitions."
    )
