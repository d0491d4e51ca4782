"""``raw_interactions``' days: a range of days read from the landing files into the warehouse,
from one file set per day or from one history export holding every day."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Protocol

import duckdb

from recs_pipeline.config import check_declared, setting
from recs_pipeline.data.logs import (
    IngestReport,
    LogFormat,
    export_fingerprint,
    ingest_days,
    ingest_history,
)
from recs_pipeline.infra.console import days_summary

Session = Callable[[], contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]]
Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    """Settings of one ingest run (run config only: they are meant for the run that needs
    them, so the project config file takes none)."""

    allow_empty_days: bool = setting(
        False,
        "Let days without landing files be ingested as empty: a stored day whose files are gone"
        " is emptied (its rows deleted), and a range whose days mostly (more than half, of two"
        " or more days) have no files runs. Off (the default), such a run fails before"
        " replacing anything: an unmounted or unfinished export must not delete history. Set"
        " it for the one run that should empty days.",
    )
    max_quarantine_rate: float = setting(
        0.05,
        "The quarantine_rate check warns on a day whose quarantined share of rows is above"
        " this. A fixed bound, not one relative to the run's other days, so a day gets the same"
        " verdict whichever range ingests it. Warns only: the accepted rows are ingested and"
        " published.",
        ge=0,
        le=1,
    )

    def __post_init__(self) -> None:
        check_declared(self)


class LandingFiles(Protocol):
    """Where a log's files are and how to read them (the ``log_source`` resource)."""

    def log_format(self) -> LogFormat: ...
    def is_history_export(self) -> bool: ...
    def export_files(self, progress: Log | None = None) -> list[str]: ...
    def files_for(self, day: dt.date, progress: Log | None = None) -> list[str]: ...


@dataclasses.dataclass(frozen=True)
class IngestedRange:
    reports: list[IngestReport]  # one per day of the range, in order
    empty_days: list[str]  # days without landing files (a per-day log)
    # Each day's landing files' fingerprint, taken before they were read (a later run skips the
    # days whose files are unchanged): the export's for every day of a history export.
    fingerprints: dict[dt.date, str]
    # A history export: its rows outside the range (before, after).
    outside: dict[str, int] | None = None


def ingest_range(
    session: Session,
    landing: LandingFiles,
    days: Sequence[dt.date],
    *,
    allow_empty_days: bool = False,
    log: Log = print,
    warn: Log = print,
    on_day: Callable[[IngestReport], None] | None = None,
) -> IngestedRange:
    """Replace every day of ``days`` in ``raw.interactions`` from ``landing``'s files: a
    history export is read once for all of them, a per-day log day by day. Each day commits
    on its own; a failure raises :class:`~recs_pipeline.data.logs.IngestInterrupted` naming
    the days committed before it. One line about days without files, however many."""
    fmt = landing.log_format()
    if landing.is_history_export():
        export = landing.export_files(progress=log)
        fingerprint = export_fingerprint(export, fmt)
        with session() as con:
            result = ingest_history(
                con, export, fmt, days, allow_empty_days=allow_empty_days, on_day=on_day
            )
        reports = result.days
        log(
            f"export: {result.files} files, {result.rows_in} rows; {days[0]}..{days[-1]}:"
            f" {sum(r.accepted for r in reports)} ingested,"
            f" {sum(r.rejected for r in reports)} quarantined; outside the range:"
            f" {result.outside_before} before, {result.outside_after} after"
        )
        outside = {"before": result.outside_before, "after": result.outside_after}
        return IngestedRange(reports, [], {day: fingerprint for day in days}, outside)
    files_by_day = {day: landing.files_for(day, log) for day in days}
    fingerprints = {day: export_fingerprint(files, fmt) for day, files in files_by_day.items()}
    empty_days = [day.isoformat() for day, files in files_by_day.items() if not files]
    if empty_days:  # one line for the range: a sparse log has thousands of empty days
        warn(days_summary("no landing files", empty_days, len(days)))
    with session() as con:
        reports = ingest_days(
            con, files_by_day, fmt, allow_empty_days=allow_empty_days, on_day=on_day
        )
    return IngestedRange(reports, empty_days, fingerprints)
