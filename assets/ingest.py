"""raw_interactions: landing files (one day's, or a whole history export), validated, into
``raw.interactions``; per-day counts and the ``rows_accepted`` check on every partition."""

import datetime as dt
import warnings
from collections.abc import Iterator

import dagster as dg

from assets.lib.catalog import daily_asset
from assets.lib.partitions import daily_partitions
from assets.lib.settings import IngestSettings, check_run_config
from assets.lib.tables import row_count
from assets.platform.event_log import log_events
from assets.platform.executor import IN_RUN_WORKER_TAG
from assets.platform.instance import check_targets
from recs_pipeline.data.logs import IngestInterrupted, IngestReport, export_fingerprint
from recs_pipeline.infra.console import progress_bar
from recs_pipeline.steps.ingest import ingest_range
from resources import LogSource, Warehouse

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # a partitioned check spec is a preview feature
    ROWS_ACCEPTED = dg.AssetCheckSpec(
        "rows_accepted",
        asset="raw_interactions",
        partitions_def=daily_partitions,
        description="Fails on a day that had rows and accepted none (all quarantined),"
        " naming the top reasons: a wrong column mapping or timestamp unit.",
    )
    QUARANTINE_RATE = dg.AssetCheckSpec(
        "quarantine_rate",
        asset="raw_interactions",
        partitions_def=daily_partitions,
        blocking=False,
        description="Warns (does not block) on a day whose share of quarantined rows is above"
        " the run config's max_quarantine_rate (default 5%), naming the top reasons: a source"
        " that changed its format, or a partly broken export, shows here before it shows in"
        " the model.",
    )

# A day that accepted nothing fails (ERROR); an abnormal quarantine rate warns.
#: The metadata key holding the fingerprint of the landing files a day was read from (the
#: history export, or the day's own files).
FINGERPRINT = "export_fingerprint"
#: Ranges up to this many days log a line per day; longer ones one summary line.
PER_DAY_LINES = 7

SEVERITY = {
    ROWS_ACCEPTED.name: dg.AssetCheckSeverity.ERROR,
    QUARANTINE_RATE.name: dg.AssetCheckSeverity.WARN,
}


def day_metadata(report: IngestReport) -> dict:
    """One day's own counts: rows_in = rows_ingested + rows_quarantined."""
    return {
        "files": report.files,
        "rows_in": report.rows_in,
        "rows_ingested": report.accepted,
        "rows_quarantined": report.rejected,
        "quarantine_rate": round(report.rejected / report.rows_in, 4) if report.rows_in else 0.0,
        "quarantine_reasons": report.reasons,
    }


def rows_accepted(report: IngestReport) -> tuple[bool, str, dict]:
    passed = not (report.rows_in and not report.accepted)
    top = ", ".join(f"{reason} ({n})" for reason, n in list(report.reasons.items())[:3])
    description = (
        f"{report.day}: {report.accepted} of {report.rows_in} rows accepted"
        if passed
        else f"{report.day}: all {report.rows_in} rows quarantined; top reasons: {top}."
        " Check the column mapping and timestamp_unit, then re-ingest the day."
    )
    return passed, description, day_metadata(report)


def quarantine_rate(report: IngestReport, max_rate: float) -> tuple[bool, str, dict]:
    rate = report.rejected / report.rows_in if report.rows_in else 0.0
    passed = rate <= max_rate
    share = f"{report.day}: quarantine rate {rate:.2%} ({report.rejected} of {report.rows_in} rows)"
    if passed:
        description = f"{share}, within max_quarantine_rate {max_rate:.2%}"
    else:
        top = ", ".join(f"{reason} ({n})" for reason, n in list(report.reasons.items())[:3])
        description = (
            f"{share} is above max_quarantine_rate {max_rate:.2%}; top reasons: {top}. The"
            " accepted rows were ingested; see raw.rejected_interactions for the rows."
        )
    metadata = {
        "quarantine_rate": round(rate, 4),
        "max_quarantine_rate": max_rate,
        "rows_quarantined": report.rejected,
        "quarantine_reasons": report.reasons,
    }
    return passed, description, metadata


@daily_asset(
    "ingest",
    writes=["raw.interactions", "raw.rejected_interactions"],
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[ROWS_ACCEPTED, QUARANTINE_RATE],
    # DuckDB only (no torch, no BLAS): a run of this step alone runs it in the run worker.
    op_tags={IN_RUN_WORKER_TAG: "true"},
)
def raw_interactions(
    context: dg.AssetExecutionContext,
    config: IngestSettings,
    warehouse: Warehouse,
    log_source: LogSource,
) -> Iterator[dg.MaterializeResult]:
    """Events read from the landing files through DuckDB, validated; bad rows go to
    `raw.rejected_interactions` with their raw text and a reason. Each day's partition is
    replaced atomically. With a path_pattern without {date} (a history export) all files are
    read once and each row goes to its event day; rows outside the run's range are counted.
    A day without files (or rows) never deletes a stored partition, and a range mostly without
    files fails, unless `allow_empty_days` is set. A backfill ingests its whole range in one
    run, day by day: a failure names its cause and the days committed before it (failure
    metadata `committed_days`). Each partition's metadata holds that day's own counts and the
    fingerprint of the files it was read from (`export_fingerprint`: a later run skips the day
    while they and the column mapping are unchanged)."""
    check_run_config(context)
    settings = config.to_core()
    window = context.partition_time_window
    first, last = window.start.date(), window.end.date()
    days = [first + dt.timedelta(days=n) for n in range((last - first).days)]
    bar = progress_bar(len(days), "ingest", "day")
    # A range longer than a week gets one summary line (below), not a line per day: a history
    # export spans thousands of days.
    each_day = len(days) <= PER_DAY_LINES

    def log_day(report: IngestReport) -> None:
        bar.update(1)
        if report.files and each_day:  # days without files are in one summary line
            context.log.info(
                f"{report.day}: {report.files} files, {report.accepted} rows ingested,"
                f" {report.rejected} quarantined {report.reasons or ''}"
            )

    try:
        ingested = ingest_range(
            warehouse.session, log_source, days, allow_empty_days=settings.allow_empty_days,
            log=context.log.info, warn=context.log.warning, on_day=log_day,
        )  # fmt: skip
    except IngestInterrupted as error:
        raise interrupted(error) from error
    finally:
        bar.close()
    reports = ingested.reports
    if not each_day:
        context.log.info(range_summary(reports))
    checks = {
        ROWS_ACCEPTED.name: [rows_accepted(report) for report in reports],
        QUARANTINE_RATE.name: [
            quarantine_rate(report, settings.max_quarantine_rate) for report in reports
        ],
    }
    for report in reports:
        # Which files the day came from: a later run skips it while they are unchanged
        # (pending_days).
        fingerprint = {FINGERPRINT: ingested.fingerprints[report.day]}
        context.add_asset_metadata(
            {**row_count(report.accepted), **day_metadata(report), **fingerprint},
            partition_key=report.day.isoformat(),
        )
    run_metadata: dict = {"days_without_files": ingested.empty_days}
    if ingested.outside is not None:
        run_metadata["run_rows_outside_range"] = ingested.outside
    yield dg.MaterializeResult(
        metadata=run_metadata, check_results=run_check_results(context, checks, days)
    )
    if not context.has_partition_key:
        log_day_evaluations(context, reports, checks)


def interrupted(error: IngestInterrupted) -> dg.Failure:
    """The failure of a range stopped mid-way: its cause and the days committed before it."""
    return dg.Failure(
        description=str(error),
        metadata={
            "failed_day": error.day.isoformat(),
            "committed_days": [d.isoformat() for d in error.committed],
            "not_ingested_days": [error.day.isoformat()]
            + [d.isoformat() for d in error.not_ingested],
            "error": f"{type(error.cause).__name__}: {error.cause}",
        },
    )


Checks = dict[str, list[tuple[bool, str, dict]]]


def run_check_results(
    context: dg.AssetExecutionContext, checks: Checks, days: list[dt.date]
) -> list[dg.AssetCheckResult]:
    """The checks' results on the step's own materialization: a one-day run's verdicts (which
    Dagster attaches to the run's partition), or a range's summary (each day has its own
    evaluation, :func:`log_day_evaluations`)."""
    results = []
    for name, verdicts in checks.items():
        if context.has_partition_key:
            [(passed, description, metadata)] = verdicts
        else:
            failed = [d for (ok, d, _) in verdicts if not ok]
            passed, metadata = not failed, {"failed_days": len(failed)}
            description = " ".join(failed) or f"every day of {days[0]}..{days[-1]} passed"
        results.append(
            dg.AssetCheckResult(
                check_name=name,
                passed=passed,
                description=description,
                metadata=metadata,
                severity=SEVERITY[name],
            )
        )
    return results


def log_day_evaluations(
    context: dg.AssetExecutionContext, reports: list[IngestReport], checks: Checks
) -> None:
    """A range's checks, one evaluation per day with rows, logged once the days'
    materializations are recorded so that each attaches to its own day's. A day without rows
    has nothing to check; its materialization's metadata says so."""
    targets = check_targets(context.instance, context.run.run_id, context.asset_key)
    evaluations = [
        dg.AssetCheckEvaluation(
            asset_key=context.asset_key,
            check_name=name,
            passed=passed,
            partition=report.day.isoformat(),
            description=description,
            metadata=metadata,
            severity=SEVERITY[name],
            target_materialization_data=targets.get(report.day.isoformat()),
        )
        for name, verdicts in checks.items()
        for report, (passed, description, metadata) in zip(reports, verdicts, strict=True)
        if report.rows_in
    ]
    log_events(context, evaluations)


def range_summary(reports: list[IngestReport]) -> str:
    """One line for a ranged ingest: days, rows, and the days whose rows were quarantined."""
    active = [r for r in reports if r.rows_in]
    quarantined = [r for r in reports if r.rejected]
    line = (
        f"{reports[0].day}..{reports[-1].day}: {len(reports):,} days, {len(active):,} with rows;"
        f" {sum(r.accepted for r in reports):,} rows ingested,"
        f" {sum(r.rejected for r in reports):,} quarantined"
    )
    if quarantined:
        shown = ", ".join(f"{r.day} ({r.rejected})" for r in quarantined[:10])
        more = f" and {len(quarantined) - 10} more" if len(quarantined) > 10 else ""
        line += f" (on {shown}{more}; the days' checks say why)"
    return line


def pending_days(
    instance: dg.DagsterInstance, log_source: LogSource, first: dt.date, last: dt.date
) -> tuple[list[dt.date], str]:
    """The days of ``first..last`` an ingest must (re)write, and why: the days never ingested,
    and each day last read otherwise than the landing files and mapping would read it now (the
    fingerprint its materialization records: each file's path, size and modification time, of
    the history export or of the day's own files, and the column mapping). Unchanged files
    whose days are all ingested give none, so a re-run costs nothing. A day ingested before
    fingerprints were recorded is read again; a day whose files are all gone is not (its
    stored rows stay: reading nothing would refuse to empty it)."""
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    recorded = ingested_fingerprints(instance, [day.isoformat() for day in days])
    fmt = log_source.log_format()
    gone: set[dt.date] = set()
    if log_source.is_history_export():
        current = dict.fromkeys(days, export_fingerprint(log_source.export_files(), fmt))
        what = "the export"
    else:
        files = {day: log_source.files_for(day) for day in days}
        current = {day: export_fingerprint(day_files, fmt) for day, day_files in files.items()}
        gone = {day for day in days if not files[day] and day.isoformat() in recorded}
        what = "their landing files"
    # Each reason in full, and as it reads after a count when several are found.
    new = ("not ingested yet", "not ingested yet")
    changed = (
        f"{what} or the log's mapping changed since they were ingested",
        "whose files or mapping changed",
    )
    unknown = ("ingested before their files' fingerprints were recorded",) * 2
    found: dict[tuple[str, str], list[dt.date]] = {new: [], changed: [], unknown: []}
    for day in days:
        held = recorded.get(day.isoformat())
        if held is None:
            found[new].append(day)
        elif day not in gone and held != current[day]:
            found[unknown if held == "" else changed].append(day)
    found = {reason: found_days for reason, found_days in found.items() if found_days}
    if len(found) > 1:
        why = ", ".join(f"{len(found_days)} {short}" for (_, short), found_days in found.items())
    else:
        why = next(iter(found), new)[0]
    return sorted(day for found_days in found.values() for day in found_days), why


def pending_ranges(days: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Sorted ``days`` (:func:`pending_days`') as runs of consecutive days, first and last: one
    ingest run each. A single run from the first to the last would read the days between again,
    and refuse when one of them has lost its files (archived) but keeps its rows."""
    ranges: list[tuple[dt.date, dt.date]] = []
    for day in days:
        if ranges and day == ranges[-1][1] + dt.timedelta(days=1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def ingested_fingerprints(instance: dg.DagsterInstance, partitions: list[str]) -> dict[str, str]:
    """Each ingested day of ``partitions``, with the fingerprint of the landing files its
    latest materialization was read from ("" where it records none)."""
    latest = instance.event_log_storage.get_latest_storage_id_by_partition(
        raw_interactions.key, dg.DagsterEventType.ASSET_MATERIALIZATION, set(partitions)
    )
    ids = sorted(latest.values())
    fingerprints = {}
    for start in range(0, len(ids), 1000):  # a bounded IN list per query
        chunk = ids[start : start + 1000]
        for record in instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=raw_interactions.key, storage_ids=chunk),
            limit=len(chunk),
        ).records:
            value = record.asset_materialization.metadata.get(FINGERPRINT)
            fingerprints[record.partition_key] = value.value if value is not None else ""
    return fingerprints
