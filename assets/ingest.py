"""raw_interactions: one day of landing files, validated, into ``raw.interactions``."""

import datetime as dt
from collections import Counter

import dagster as dg

from assets.partitions import daily_partitions
from assets.settings import check_run_config
from recs_pipeline.logs import ingest_day
from resources import LogSource, Warehouse


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    group_name="ingest",
    kinds={"duckdb"},
)
def raw_interactions(
    context: dg.AssetExecutionContext, warehouse: Warehouse, log_source: LogSource
) -> dg.MaterializeResult:
    """One day of events read from the landing files through DuckDB, validated; bad rows go to
    ``raw.rejected_interactions`` with their raw text and a reason. Each day's partition is
    replaced atomically. A backfill ingests its whole range in one run."""
    check_run_config(context)
    window = context.partition_time_window
    day = window.start.date()
    fmt = log_source.log_format()
    accepted = rejected = files = 0
    reasons: Counter[str] = Counter()
    empty_days = []
    with warehouse.session() as con:
        while day < window.end.date():
            day_files = log_source.files_for(day)
            if not day_files:
                empty_days.append(day.isoformat())
                context.log.warning(f"no landing files for {day}: its partition is empty")
            report = ingest_day(con, day_files, fmt, day)
            context.log.info(
                f"{day}: {report.files} files, {report.accepted} rows ingested,"
                f" {report.rejected} quarantined {report.reasons or ''}"
            )
            files += report.files
            accepted += report.accepted
            rejected += report.rejected
            reasons.update(report.reasons)
            day += dt.timedelta(days=1)
    return dg.MaterializeResult(
        metadata={
            "files": files,
            "rows_ingested": accepted,
            "rows_quarantined": rejected,
            "quarantine_reasons": dict(reasons),
            "days_without_files": empty_days,
        }
    )
