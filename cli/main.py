"""``recs``: the pipeline's one command (``recs --help``; each subcommand has its own ``--help``).

Every subcommand first settles the environment (``cli/environment.py``): the project config file
(``RECS_CONFIG``, else ``./recs.toml``, else the project's) and the Dagster instance's home
(``DAGSTER_HOME``, else ``dagster_home`` in that file, else ``dagster_home/`` in the project),
both exported to every process it starts, so that no shell needs exports and no run goes to an
ephemeral instance. Failures end with a plain ``error: ...`` line and a non-zero status: 1 for a
run or a day that failed (a quality gate block is such a reason), 2 for a setting or an
instance that is wrong, 3 when a command's ``--timeout`` ran out while runs were still going
(they go on).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import click

from cli.environment import WORKSPACE, Environment, configure

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Failure(click.ClickException):
    """A plain reason on stderr (``error: ...``) and an exit status, no stack trace."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _plain_errors() -> dict[type[BaseException], int]:
    """Errors whose message is the whole story, with the exit status each gives."""
    from assets.platform.instance import InstanceConfigError, InstanceCorrupted
    from cli.days import NotPublished
    from cli.launch import LaunchError
    from recs_pipeline.data.logs import LogConfigError
    from recs_pipeline.infra.project_config import DeploymentSettingError
    from recs_pipeline.infra.warehouse import WarehouseLockTimeout

    return {
        NotPublished: 1,
        WarehouseLockTimeout: 1,
        LaunchError: 2,
        LogConfigError: 2,
        DeploymentSettingError: 2,
        InstanceConfigError: 2,
        InstanceCorrupted: 2,
    }


def plain_errors(command: Callable) -> Callable:
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, KeyboardInterrupt):
            raise
        except Exception as error:
            for kind, code in _plain_errors().items():
                if isinstance(error, kind):
                    raise Failure(str(error), code) from None
            raise

    return wrapper


def setup(use_demo: bool = True, prepare: bool = True) -> Environment:
    """The environment (module docstring), its choices said on stderr; ``prepare``: the
    instance's storage created or checked (assets/platform/instance.py)."""
    environment = configure(use_demo=use_demo)
    for note in environment.notes:
        click.echo(note, err=True)
    if prepare:
        from cli.environment import prepare_instance

        prepare_instance(environment, log=lambda line: click.echo(line, err=True))
    return environment


class Day(click.ParamType):
    name = "YYYY-MM-DD"

    def convert(self, value, param, ctx):
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a day (YYYY-MM-DD)", param, ctx)


DAY = Day()

# The exit status of a command whose --timeout ran out while runs were still going.
TIMED_OUT = 3
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([hms]?)")
_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1, "": 1}


class Duration(click.ParamType):
    """``90m``, ``2h``, ``1h30m``, ``45s`` or plain seconds (``600``): seconds, a float."""

    name = "DURATION"

    def convert(self, value, param, ctx):
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            text = str(value).strip().lower()
            parts = _DURATION.findall(text)
            whole = "".join(number + unit for number, unit in parts)
            order = ["hms".index(unit or "s") for _, unit in parts]  # hours, minutes, seconds
            if not parts or whole != text or order != sorted(set(order)):
                self.fail(f"{value!r} is not a duration (90m, 2h, 1h30m, 45s or seconds)")
            seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
        if seconds <= 0:
            self.fail(f"{value!r}: a timeout must be more than 0 seconds", param, ctx)
        return seconds


DURATION = Duration()


def duration_text(seconds: float) -> str:
    """``5400`` -> ``1h30m``; ``1`` -> ``1s``; ``90.5`` -> ``1m30.5s``."""
    hours, rest = divmod(seconds, 3600)
    minutes, rest = divmod(rest, 60)
    text = (f"{hours:.0f}h" if hours else "") + (f"{minutes:.0f}m" if minutes else "")
    return text + (f"{rest:g}s" if rest or not text else "")


def timeout_option(command: Callable) -> Callable:
    return click.option(
        "--timeout",
        type=DURATION,
        help="Stop waiting after DURATION (90m, 2h, 1h30m, 45s or seconds), counted from the"
        " launch: the runs go on, the ones still going are named with how to follow them,"
        f" and the exit status is {TIMED_OUT}.",
    )(command)


@click.group(context_settings=CONTEXT)
def recs() -> None:
    """recs-pipeline: the daily recommender, one command per step.

    Settings come from recs.toml (RECS_CONFIG, else ./recs.toml, else the project's; RECS_*
    variables override it). Runs are recorded in the Dagster instance in DAGSTER_HOME, else
    recs.toml's dagster_home, else dagster_home/ in the project: the UI shows them.
    """


# --- the demo and the log ---------------------------------------------------------------------


@recs.command(short_help="Run the demo: synthetic logs, the whole chain, metrics and lists.")
@click.option("--small", is_flag=True, help="A small log (500 users, 250 items): a quick check.")
@click.option("--days", type=click.IntRange(min=1), help="Days of synthetic log (default 60).")
@click.option("--model", help="Pin the day's model (default: model selection's champion).")
@click.option("--epochs", type=click.IntRange(min=1), help="Maximum training epochs.")
@click.option("--trials", type=click.IntRange(min=1), help="Model selection's trials (default 8).")
@plain_errors
def demo(small: bool, days: int | None, model: str | None, epochs: int | None, trials) -> None:
    """Run the demo, as `make run` does: write a synthetic click log under {data root}/demo,
    ingest it, run the chain for its newest day and print the metrics and a few published
    lists. It ignores the deployment's log settings and never writes into a landing root."""
    setup(use_demo=False, prepare=False)  # the demo prepares the instance itself
    from cli.demo import main

    argv = ["--small"] if small else []
    for flag, value in (
        ("--days", days),
        ("--model", model),
        ("--epochs", epochs),
        ("--selection-trials", trials),
    ):
        if value is not None:
            argv += [flag, str(value)]
    code = main(argv)
    if code:
        sys.exit(code)


@recs.command(short_help="Profile the log: days, users, items; suggest a window (--write).")
@click.option(
    "--write",
    is_flag=True,
    help="Write partition_start, window_days and test_days into recs.toml.",
)
@click.option("--no-scores", is_flag=True, help="Skip the baselines' scores of each window.")
@click.option("--min-train-events", type=int, default=5, show_default=True)
@click.option("--min-test-users", type=int, default=100, show_default=True)
@plain_errors
def profile(write: bool, no_scores: bool, min_train_events: int, min_test_users: int) -> None:
    """Profile the log the deployment's log_source settings match: events, users and items per
    day, empty days, a suggested window_days, test_days and partition start. --write stores
    them in recs.toml, read by every process (the schedule, backfills, the UI)."""
    setup(use_demo=False, prepare=False)
    from cli.profile import main

    argv = ["--min-train-events", str(min_train_events), "--min-test-users", str(min_test_users)]
    argv += ["--write"] if write else []
    argv += ["--no-scores"] if no_scores else []
    code = main(argv)
    if code:
        sys.exit(code)


# --- runs through the code location -----------------------------------------------------------


def _model_config(model: str | None) -> dict:
    return {"ops": {"trained_model": {"config": {"model": model}}}} if model else {}


def _default_day() -> tuple[dt.date, str]:
    """The newest day worth running: the log's last day, or the newest partition (yesterday,
    UTC) when the log goes on past it."""
    from assets.lib.partitions import daily_partitions
    from recs_pipeline.data.logs import LogConfigError
    from recs_pipeline.data.profile import all_files, profile_log
    from resources import LogSource
    from resources.deployment import deployment_defaults

    newest = dt.date.fromisoformat(daily_partitions.get_last_partition_key())
    source = LogSource(**deployment_defaults("log_source"))
    try:
        files = all_files(source.landing_root, source.path_pattern)
        last = profile_log(files, source.log_format(), scores=False).last_day
    except (LogConfigError, ValueError, OSError) as error:
        click.echo(f"the log's last day is unknown ({error}): the newest partition", err=True)
        return newest, "the newest partition"
    if last < newest:
        return last, "the log's last day"
    return newest, "the newest partition"


def _launch(
    build: Callable,
    wait: bool,
    on_end: Callable,
    what: str,
    sequential: bool = False,
    timeout: float | None = None,
) -> tuple[list, bool]:
    """Create the runs (``build(location)`` -> planned runs), start them and, with ``wait``,
    follow them to their end (``sequential``: one after the other, stopping at a failure), or
    until ``timeout`` seconds after this call (then :func:`_stopped_waiting`). Without
    ``wait`` they are submitted to the run queue. Returns the planned runs and whether this
    process followed them."""
    import time

    import dagster as dg

    from cli.launch import (
        Follower,
        StoppedWaiting,
        code_location,
        queue_served,
        run_limit,
        submit,
    )

    deadline = None if timeout is None else time.monotonic() + timeout
    instance = dg.DagsterInstance.get()
    click.echo(f"loading the code location to launch {what} ...", err=True)
    with code_location(instance) as location:
        planned = build(location)
        if not wait:
            submit(location, planned)
            return planned, False
        served = queue_served(instance)
        runs = "the run" if len(planned) == 1 else "the runs"
        if served:
            click.echo(f"the run queue's daemon starts {runs}")
        elif len(planned) == 1:
            click.echo("no daemon serves the run queue: recs starts the run itself")
        else:
            at_once = "one at a time" if sequential else f"at most {run_limit(instance)} at once"
            click.echo(f"no daemon serves the run queue: recs starts the runs itself ({at_once})")
        follower = Follower(
            location,
            planned,
            launch=not served,
            on_end=on_end,
            sequential=sequential,
            deadline=deadline,
        )
        try:
            follower.run()
        except StoppedWaiting as stopped:
            _stopped_waiting(instance, stopped, timeout)
    return planned, True


def _stopped_waiting(instance, stopped, timeout: float) -> None:
    """After ``--timeout``: which runs go on and how to follow them; exit status 3."""
    from cli.launch import queue_served

    after = duration_text(timeout)
    click.echo(f"stopped waiting after {after} (--timeout); the runs go on:", err=True)
    served = queue_served(instance)
    for item in stopped.going:
        run = instance.get_run_by_id(item.run.run_id) or item.run
        line = f"  {item.label} run {run.run_id[:8]} {run.status.value}"
        if run.status.value in ("QUEUED", "NOT_STARTED") and not served:
            line += ": queued; no daemon serves the run queue: recs ui, or recs daemon, starts it"
        click.echo(line, err=True)
    for item in stopped.cancelled:
        click.echo(
            f"  {item.label} run {item.run.run_id[:8]} not started (it was to follow the one"
            " before it): run it again once that one ends",
            err=True,
        )
    click.echo(
        "follow them: recs status (each day's verdict once its run ends), or the UI (recs ui):"
        " Runs, or a run's page /runs/<run id>",
        err=True,
    )
    going = len(stopped.going)
    raise Failure(
        f"stopped waiting for {going} run{'s' * (going != 1)} after {after} (--timeout):"
        " they go on; recs status, or the UI",
        TIMED_OUT,
    )


def _missing_window(day: dt.date) -> tuple[list[tuple[dt.date, dt.date]], str] | None:
    """The days of ``day``'s training window (the deployment's window_days) before it that
    raw_interactions must (re)ingest, as runs of consecutive days, and why (None: none)."""
    from assets.lib.partitions import DEFAULT_WINDOW_DAYS, PARTITION_START

    first = max(
        day - dt.timedelta(days=DEFAULT_WINDOW_DAYS - 1), dt.date.fromisoformat(PARTITION_START)
    )
    if first >= day:
        return None
    pending, why = _pending_days(_log_source(), first, day - dt.timedelta(days=1))
    return (_pending_ranges(pending), why) if pending else None


def _log_source():
    """The deployment's LogSource resource."""
    from assets.definitions import default_resources

    return default_resources()["log_source"]


def _pending_days(source, first: dt.date, last: dt.date) -> tuple[list[dt.date], str]:
    """:func:`assets.ingest.pending_days` of ``source`` on this deployment's instance."""
    import dagster as dg

    from assets.ingest import pending_days

    return pending_days(dg.DagsterInstance.get(), source, first, last)


def _pending_ranges(days: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """:func:`assets.ingest.pending_ranges`: one ingest run per run of consecutive days."""
    from assets.ingest import pending_ranges

    return pending_ranges(days)


def _span(first: dt.date, last: dt.date) -> str:
    return str(first) if first == last else f"{first}..{last}"


def _spans(ranges: list[tuple[dt.date, dt.date]]) -> str:
    """Ingest runs' days in words: ``2024-03-02, 2024-03-04..2024-03-05 (2 runs)``."""
    text = ", ".join(_span(first, last) for first, last in ranges)
    return text if len(ranges) == 1 else f"{text} ({len(ranges)} runs)"


def _ingest_runs(location, ranges: list[tuple[dt.date, dt.date]]) -> list:
    """One run of the ingest job per range (a planned run each), labelled with its days."""
    from assets.lib.partitions import range_tags
    from cli.launch import INGEST_JOB, Planned

    return [
        Planned(_span(first, last), location.create_run(INGEST_JOB, range_tags(first, last)))
        for first, last in ranges
    ]


def _day_verdicts(results: dict, print_failures: bool = True):
    """An ``on_end`` printing each day's verdict (``print_failures``: a failed one too, on
    stderr); records in ``results`` whether the day is served after its run."""
    deployments = []  # made at the first verdict: its imports overlap nothing then

    def on_end(item, run) -> None:
        if not deployments:
            from cli.days import Deployment

            deployments.append(Deployment())
        state = deployments[0].state(item.day)
        ok = run.status.value == "SUCCESS" and state.published
        results[item.day] = (ok, state)
        if ok:
            click.echo(f"ok {state.verdict()}")
        elif print_failures:
            click.echo(f"FAILED {state.verdict()}", err=True)
        note = state.note()
        if note and (ok or print_failures):
            click.echo(f"  note: {note}", err=not ok)

    return on_end


def _failure(state) -> str:
    """Why a day whose run failed is not (newly) published: its verdict, or the failure."""
    if state is None:
        return "no verdict: the run did not end"
    if state.published:
        return f"{state.day}: {state.note()}"
    return state.verdict()


@recs.command(short_help="Ingest a range of days of raw_interactions in one run.")
@click.option("--from", "start", type=DAY, help="First day (default: the partitions' first).")
@click.option("--to", "end", type=DAY, help="Last day (default: the log's last day).")
@click.option(
    "--force",
    is_flag=True,
    help="Read every day of the range again, even days already ingested from their landing"
    " files as they are now.",
)
@timeout_option
@plain_errors
def ingest(start: dt.date | None, end: dt.date | None, force: bool, timeout: float | None) -> None:
    """Ingest the days FROM..TO of the deployment's log into raw_interactions: runs of the job
    ingest_days through the code location (every row to the partition of its day), followed to
    their end (or --timeout: exit status 3, the runs go on). The days already ingested from
    their landing files as they are now (each file's path, size and modification time: of the
    history export, or of the day's own files) are not read again; the others are read by one
    run per stretch of consecutive days. --force reads the whole range in one run. Nothing
    downstream runs: recs run / recs backfill do."""
    setup()
    from assets.lib.partitions import PARTITION_START

    if end is None:
        end, why = _default_day()
        click.echo(f"to {end} ({why})")
    start = start or dt.date.fromisoformat(PARTITION_START)
    if start > end:
        raise Failure(f"--from {start} is after --to {end}", 2)
    if start < dt.date.fromisoformat(PARTITION_START):
        raise Failure(
            f"--from {start} is before the first partition, {PARTITION_START}: partition_start"
            " in recs.toml (recs profile --write sets it to the log's first day)",
            2,
        )
    source = _log_source()
    ranges = [(start, end)] if force else _days_to_read(source, start, end)
    if not ranges:
        return
    what = f"the ingest of {_spans(ranges)}"
    outcomes: list = []

    def on_end(item, run) -> None:
        outcomes.append(_ingest_outcome(item, run))

    _launch(lambda location: _ingest_runs(location, ranges), True, on_end, what, timeout=timeout)
    failed = [outcome for outcome in outcomes if outcome is not True]
    if failed or len(outcomes) < len(ranges):
        raise Failure("; ".join(failed) or f"{what} did not end")


def _days_to_read(source, start: dt.date, end: dt.date) -> list[tuple[dt.date, dt.date]]:
    """The days of ``start..end`` that ``recs ingest`` reads, as runs of consecutive days:
    those not ingested yet or read from other landing files than today's, said on the
    terminal (none: why nothing is done)."""
    pending, why = _pending_days(source, start, end)
    if not pending:
        held = _held(start, end)
        if held is not None:
            files = (
                "the export as it is now"
                if source.is_history_export()
                else "their landing files as they are now"
            )
            click.echo(
                f"{start}..{end}: every day is ingested, from {files}; nothing to do ({held};"
                " --force ingests them again)"
            )
            return []
        # Recorded as ingested, but the warehouse holds none of it.
        click.echo(f"{start}..{end}: the warehouse holds no ingested day; reading them all")
        return [(start, end)]
    total = (end - start).days + 1
    if len(pending) == total:
        if why != "not ingested yet":
            click.echo(f"{start}..{end}: {why}")
        return [(start, end)]
    ranges = _pending_ranges(pending)
    click.echo(
        f"{len(pending)} of the {total} days of {start}..{end}: {why}; reading {_spans(ranges)}"
    )
    return ranges


def _ingested(start: dt.date, end: dt.date) -> str:
    """What raw.interactions holds of ``start..end``, in words."""
    return _held(start, end) or "no warehouse"


def _held(start: dt.date, end: dt.date) -> str | None:
    """What raw.interactions holds of ``start..end``, in words; None when there is no
    warehouse or no raw.interactions in it."""
    import duckdb

    from cli.days import Deployment

    with Deployment().read() as con:
        if con is None:
            return None
        try:
            events, days = con.execute(
                """SELECT count(*), count(DISTINCT event_date) FROM raw.interactions
                   WHERE event_date BETWEEN ? AND ?""",
                [start, end],
            ).fetchone()
        except duckdb.CatalogException:
            return None
    return f"{events:,} events on {days} of {(end - start).days + 1} days"


@recs.command(short_help="Run the daily chain for one day; print each step and the verdict.")
@click.option("--day", type=DAY, help="The day D (default: the log's last day, else yesterday).")
@click.option("--model", help="Pin the day's model (default: model selection's champion).")
@click.option(
    "--retrain-only",
    is_flag=True,
    help="Run retrain_days: ingest nothing, retrain and republish D from the log ingested.",
)
@timeout_option
@plain_errors
def run(day: dt.date | None, model: str | None, retrain_only: bool, timeout: float | None):
    """Run the daily chain for day D through the code location: the days of D's window not
    ingested yet, or whose landing files or mapping changed since, first (an ingest_days run
    per stretch of consecutive days), then daily_recommendations for D (ingest D, split,
    graph, model selection, training, evaluation and the quality gate, publication).
    Each step is printed as it ends and, at the end, the day's verdict: scorer, gate verdict,
    published or why not. Exits 1 when the day is not published, 3 when --timeout ran out
    first (a started run goes on; D's run, when still waiting for the ingest, is cancelled)."""
    setup()
    from cli.launch import DAILY_JOB, RETRAIN_JOB, Planned

    if day is None:
        day, why = _default_day()
        click.echo(f"day {day} ({why})")
    job = RETRAIN_JOB if retrain_only else DAILY_JOB
    missing = None if retrain_only else _missing_window(day)
    results: dict = {}
    ingest: dict = {}

    def build(location):
        planned = []
        if missing is not None:
            ranges, why = missing
            click.echo(f"the window's days {_spans(ranges)}: {why}; ingesting them first")
            planned += _ingest_runs(location, ranges)
        run = location.day_run(job, day, _model_config(model))
        return planned + [Planned(day.isoformat(), run, day)]

    verdict = _day_verdicts(results, print_failures=False)

    def on_end(item, run) -> None:
        if item.day is None:
            # One at a time: after a failed ingest, nothing else starts.
            ingest["outcome"] = _ingest_outcome(item, run)
        else:
            verdict(item, run)

    _launch(build, True, on_end, f"{job} for {day}", sequential=True, timeout=timeout)
    if ingest.get("outcome", True) is not True:
        raise Failure(f"{ingest['outcome']}; {day} was not run")
    ok, state = results.get(day, (False, None))
    if not ok:
        raise Failure(_failure(state))


def _ingest_outcome(item, run) -> str | bool:
    """True after a successful ingest (its summary printed), else why it failed."""
    if run.status.value == "SUCCESS":
        start, _, end = item.label.partition("..")
        first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end or start)
        click.echo(f"ingested {item.label}: {_ingested(first, last)} (run {run.run_id[:8]})")
        return True
    import dagster as dg

    from cli.days import run_info

    return f"the ingest of {item.label}: {run_info(dg.DagsterInstance.get(), run).failure_text()}"


@recs.command(short_help="Backfill days FROM..TO, one run per day (--wait: follow them).")
@click.option("--from", "start", type=DAY, required=True, help="First day.")
@click.option("--to", "end", type=DAY, required=True, help="Last day.")
@click.option("--wait", is_flag=True, help="Follow the runs: each verdict, then a summary.")
@click.option("--model", help="Pin the days' model (default: model selection's champion).")
@click.option(
    "--ingest",
    "with_ingest",
    is_flag=True,
    help="Backfill daily_recommendations: each run ingests its own day first.",
)
@timeout_option
@plain_errors
def backfill(
    start: dt.date,
    end: dt.date,
    wait: bool,
    model: str | None,
    with_ingest: bool,
    timeout: float | None,
):
    """Retrain, evaluate and republish the days FROM..TO from the log already ingested (the
    job retrain_days; --ingest: daily_recommendations, each run ingesting its day) through the
    code location: one run per day, recorded as a backfill the UI lists. With --wait, each
    run's steps and verdict are printed as it finishes, then a summary; the exit status is 1
    when any day failed or was not published. --timeout (with --wait) bounds the waiting:
    past it the runs go on (those not started yet are queued for the daemon), the ones still
    going are listed, and the exit status is 3. Without --wait the runs are queued for the
    daemon."""
    setup()
    from cli.launch import DAILY_JOB, RETRAIN_JOB, Planned, queue_served

    if start > end:
        raise Failure(f"--from {start} is after --to {end}", 2)
    if timeout is not None and not wait:
        raise Failure("--timeout bounds --wait: add --wait (without it nothing waits)", 2)
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    job = DAILY_JOB if with_ingest else RETRAIN_JOB
    results: dict = {}
    ids = {}

    def build(location):
        ids["backfill"], runs = location.backfill_runs(job, days, _model_config(model))
        click.echo(f"backfill {ids['backfill']}: {job}, {len(runs)} runs ({start} .. {end})")
        return [Planned(day.isoformat(), run, day) for day, run in zip(days, runs, strict=True)]

    planned, followed = _launch(
        build, wait, _day_verdicts(results), f"{job} for {start}..{end}", timeout=timeout
    )
    if not followed:
        import dagster as dg

        served = queue_served(dg.DagsterInstance.get())
        click.echo(f"queued {len(planned)} runs; their verdicts: recs status")
        if not served:
            click.echo(
                "no daemon serves the run queue: the runs start when one does (recs ui, or"
                " recs daemon), or run this with --wait",
                err=True,
            )
        return
    failed = [(day, state) for day, (ok, state) in sorted(results.items()) if not ok]
    click.echo(
        f"backfill {ids['backfill']}: {len(days) - len(failed)} of {len(days)} days published"
    )
    if failed:
        days_failed = ", ".join(str(day) for day, _ in failed)
        raise Failure(f"{len(failed)} of {len(days)} days failed ({days_failed}): see above")


# --- reading --------------------------------------------------------------------------------


@recs.command(short_help="The latest days: scorer, gate verdict, published or why not.")
@click.option("--days", "count", type=click.IntRange(min=1), default=7, show_default=True)
@plain_errors
def status(count: int) -> None:
    """The latest days anything happened to (published, evaluated or run), newest first: the
    scorer, the quality gate's verdict, and whether the day is published or why not (the gate
    blocked it, its run failed at a step, a run is in progress, never run)."""
    setup()
    from cli.days import Deployment

    deployment = Deployment()
    days = deployment.known_days()[-count:]
    if not days:
        click.echo("no day has run yet: recs demo, or recs ingest and recs run")
        return
    states = list(reversed(deployment.states(days)))
    rows = [("day", "scorer", "gate", "published")] + [
        (str(s.day), s.scorer, s.gate_text(), s.published_text()) for s in states
    ]
    lines = aligned(rows)
    click.echo(lines[0])
    for state, line in zip(states, lines[1:], strict=True):
        click.echo(line)
        note = state.note()
        if note:
            click.echo(f"{'':<12}note: {note}")


def aligned(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as lines of left-aligned columns, each as wide as its longest cell plus two spaces
    (the last column unpadded): a long verdict never runs into the next column."""
    widths = [max(len(row[i]) for row in rows) + 2 for i in range(len(rows[0]) - 1)]
    return [
        "".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + row[-1]
        for row in rows
    ]


@recs.command(short_help="A user's published list (ids as published: strings).")
@click.argument("user")
@click.option("--day", type=DAY, help="The day (default: the newest published day).")
@plain_errors
def show(user: str, day: dt.date | None) -> None:
    """USER's published list, read as applications read it (published.duckdb; the lake for a
    DuckLake warehouse): rank, item id (a string, as in the log) and score, and whether the
    list is the popularity fallback. A day without a publication says why."""
    setup()
    from cli.days import Deployment
    from recs_pipeline.evaluation.gate import GATE_BASELINE

    deployment = Deployment()
    day, rows = deployment.published_list(user, day)
    model = rows[0][3]
    if model == GATE_BASELINE:
        state = deployment.state(day)
        headline = f"the popularity fallback: {deployment.fallback_reason(state)}"
    else:
        headline = f"scored by {model}"
    click.echo(f"{user} on {day}, {headline}")
    click.echo(f"{'rank':>4}  {'item_id':<16}score")
    for rank, item, score, _ in rows:
        click.echo(f"{rank:>4}  {item:<16}{score:.4f}")


# --- the UI, the daemon, the doctor -----------------------------------------------------------


def free_port(host: str, wanted: int) -> int:
    """``wanted`` when nothing listens there, else a free port the system picks."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, wanted))
            return wanted
        except OSError:
            pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _exec(program: str, *args: str) -> None:
    """Replace this process with the venv's ``program`` (the environment exported)."""
    executable = str(Path(sys.executable).parent / program)
    os.chdir(WORKSPACE.parent)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(executable, [executable, *args])


@recs.command(short_help="The Dagster UI (dagster dev: webserver and daemon) on this deployment.")
@click.option("--port", type=click.IntRange(1, 65535), default=3000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback only by default.")
@plain_errors
def ui(port: int, host: str) -> None:
    """Start `dagster dev` on the project's workspace with this deployment's settings (the
    demo's when none is configured) and DAGSTER_HOME as chosen above, the caller's own
    DAGSTER_HOME and RECS_DATA_ROOT honoured. When PORT is taken (another dagster dev), a free
    port is used instead, and said."""
    environment = setup()
    chosen = free_port(host, port)
    if chosen != port:
        click.echo(f"port {port} is busy (another dagster dev?): using port {chosen}")
    click.echo(
        f"Dagster UI on http://{host}:{chosen} (DAGSTER_HOME={environment.home};"
        f" settings: {environment.config or 'built-in defaults'})"
    )
    _exec("dagster", "dev", "-w", str(WORKSPACE), "-h", host, "-p", str(chosen))


@recs.command(short_help="The Dagster daemon alone: the run queue, the schedule, backfills.")
@plain_errors
def daemon() -> None:
    """Start `dagster-daemon run` on the project's workspace with this deployment's settings
    and DAGSTER_HOME: it starts queued runs (recs backfill without --wait), the daily schedule
    when it is on, and the UI's backfills. `recs ui` starts one with the webserver."""
    environment = setup()
    click.echo(f"Dagster daemon on {environment.home}")
    _exec("dagster-daemon", "run", "-w", str(WORKSPACE))


@recs.command(short_help="Check the instance and the warehouse's copies; --repair fixes them.")
@click.option("--repair", is_flag=True, help="Repair what disagrees, then check again.")
@plain_errors
def doctor(repair: bool) -> None:
    """Check the Dagster instance (one schema version; dead runs reaped) and that the copies
    kept outside the warehouse agree with it: the serving files applications read and each
    day's pinned published_model.pt. --repair stamps a corrupted instance and re-exports or
    re-pins what disagrees. Exit status 1 while anything still disagrees."""
    environment = setup(prepare=False)
    from assets.platform.instance import InstanceCorrupted, prepare_instance, repair_instance

    problems = 0
    try:
        if repair:
            repaired = repair_instance(environment.home)
            if repaired:
                click.echo(f"instance: repaired {', '.join(repaired)}")
        prepare_instance(environment.home, log=lambda line: click.echo(line, err=True))
        click.echo(f"instance: ok ({environment.home})")
    except InstanceCorrupted as error:
        click.echo(f"instance: {error}", err=True)
        problems += 1
    from resources.deployment import deployment_defaults

    database = deployment_defaults("warehouse")["database"]
    shared = bool(str(deployment_defaults("warehouse").get("catalog") or "").strip())
    if not shared and database != ":memory:" and not Path(database).exists():
        click.echo(f"warehouse: none yet at {database} (nothing ingested)")
    else:
        from cli.doctor import main

        problems += main(["--repair"] if repair else [])
    if problems:
        sys.exit(1)


def main() -> None:
    recs()


if __name__ == "__main__":
    main()
