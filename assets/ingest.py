"""raw_interactions: one day of landing files, validated, into ``raw.interactions``."""

import datetime as dt
from collections import Counter

import dagster as dg
from pydantic import Field

from assets.partitions import daily_partitions
from assets.settings import check_run_config
from recs_pipeline.console import days_summary, progress_bar
from recs_pipeline.logs import IngestInterrupted, IngestReport, ingest_days
from resources import LogSource, Warehouse


class IngestSettings(dg.Config):
    allow_empty_days: bool = Field(
        default=False,
        description="Let days without landing files be ingested as empty: a stored day whose"
        " files are gone is emptied (its rows deleted), and a range whose days mostly (more"
        " than half, of two or more days) have no files runs. Off (the default), such a run"
        " fails before replacing anything: an unmounted or unfinished export must not delete"
        " history. Set it for the one run that should empty days.",
    )


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    group_name="ingest",
    kinds={"duckdb"},
)
def raw_interactions(
    context: dg.AssetExecutionContext,
    config: IngestSettings,
    warehouse: Warehouse,
    log_source: LogSource,
) -> dg.MaterializeResult:
    """One day of events read from the landing files through DuckDB, validated; bad rows go to
    ``raw.rejected_interactions`` with their raw text and a reason. Each day's partition is
    replaced atomically. A day without files never deletes a stored partition, and a range
    mostly without files fails, unless ``allow_empty_days`` is set. A backfill ingests its
    whole range in one run, day by day: a failure names its cause and the days committed
    before it (failure metadata ``committed_days``)."""
    check_run_config(context)
    window = context.partition_time_window
    fmt = log_source.log_format()
    files_by_day = {}
    day = window.start.date()
    while day < window.end.date():
        files_by_day[day] = log_source.files_for(day)
        day += dt.timedelta(days=1)
    empty_days = [day.isoformat() for day, files in files_by_day.items() if not files]
    if empty_days:  # one line for the range: a sparse log has thousands of empty days
        context.log.warning(days_summary("no landing files", empty_days, len(files_by_day)))
    bar = progress_bar(len(files_by_day), "ingest", "day")

    def log_day(report: IngestReport) -> None:
        bar.update(1)
        if report.files:  # days without files are in the summary line above
            context.log.info(
                f"{report.day}: {report.files} files, {report.accepted} rows ingested,"
                f" {report.rejected} quarantined {report.reasons or ''}"
            )

    with warehouse.session() as con:
        try:
            reports = ingest_days(
                con, files_by_day, fmt, allow_empty_days=config.allow_empty_days, on_day=log_day
            )
        except IngestInterrupted as error:
            raise dg.Failure(
                description=str(error),
                metadata={
                    "failed_day": error.day.isoformat(),
                    "committed_days": [d.isoformat() for d in error.committed],
                    "not_ingested_days": [error.day.isoformat()]
                    + [d.isoformat() for d in error.not_ingested],
                    "error": f"{type(error.cause).__name__}: {error.cause}",
                },
            ) from error
        finally:
            bar.close()
    reasons: Counter[str] = Counter()
    for report in reports:
        reasons.update(report.reasons)
    return dg.MaterializeResult(
        metadata={
            "files": sum(r.files for r in reports),
            "rows_ingested": sum(r.accepted for r in reports),
            "rows_quarantined": sum(r.rejected for r in reports),
            "quarantine_reasons": dict(reasons),
            "days_without_files": empty_days,
        }
    )
