"""The main job: ``python -m cli.demo`` (the demo) or ``python -m cli.demo --own-logs``.

The demo (``make run``):

1. Writes about 60 days of synthetic click logs, ending yesterday (UTC), into its own folder
   ``data/demo/landing`` (once; later runs reuse them). Everything it writes is under
   ``data/demo/`` (``{RECS_DATA_ROOT}/demo``): the landing files, the warehouse, the artifacts, and
   ``recs.toml`` to browse it (``RECS_CONFIG=data/demo/recs.toml make ui``). It ignores the
   ``RECS_*`` log settings and the project config file, and refuses to run when the configured
   landing root overlaps its folder: it never writes into a landing root.
2. Ingests every day in one run of ``raw_interactions`` over the partition range.
3. Materialises the rest of the chain for the newest day, with the built-in settings.
4. Prints the model's and the popularity baseline's metrics and a few published lists.

Both runs are runs of the code location's job ``daily_recommendations`` (the ingest of its
asset ``raw_interactions``, then the rest of the chain), created through the code location as
``recs run`` creates its runs (``cli/launch.py``: a code server loads ``workspace.yaml``, with
the demo's settings, ``data/demo/recs.toml``, for the demo): each carries the repository's
origin (location ``recs_pipeline``) and the job's snapshot, so the UI lists it under *Jobs →
daily_recommendations → Runs* and on the Overview timeline, and re-executes it without a version
warning. This process executes them (``assets.platform.code_location.execute_recorded_run``),
as it executed the runs it created itself before: launching them through the code server
instead costs a run worker and a fork server per run, over 30 s more for the demo.

The terminal shows one line per finished step, the steps' warnings and errors, and the
results (``cli/step_lines.py``); Dagster's DEBUG events stay in the run's event log.

``--own-logs``: the same chain on your logs, with this deployment's settings (``RECS_*``
variables, then the project config file; docs/own-logs.md): ingests the
window's days before ``--to`` (default: the log's last day) and runs the chain for ``--to``.
It only reads the landing root.

The training flags (``--model``, ``--epochs``, ``--distill``, ``--param``) override the run's
settings; unset, the model is the champion model selection chooses (for ``--own-logs``, the
deployment's pinned model). ``--distill`` weights the teacher's items by their rank
(``distill_ranked``).

Runs are recorded in the project's Dagster instance (``DAGSTER_HOME``, default
``dagster_home/``), so ``dagster dev`` afterwards shows the run history and materialisations.
"""

import argparse
import contextlib
import datetime as dt
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from recs_pipeline.infra.project_config import DeploymentSettingError
    from resources.deployment import all_defaults

    args = parse_args(argv)
    try:
        all_defaults()  # every setting checked before anything is written
        if args.own_logs:
            return _own_logs(args)
        return _demo(args)
    except DeploymentSettingError as error:
        # A RECS_* variable or recs.toml key out of its type or range, found as the code
        # location loads, before anything runs: the message names it and what is allowed.
        print(f"error: {error}", file=sys.stderr)
        return 2


# The trained_model settings the demo takes as flags (add_setting_flags); none by default: the
# run's own.
TRAIN_FLAGS = {"model": None, "epochs": None, "distill": None}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--days", type=int, default=60, help="days of synthetic log to generate")
    parser.add_argument("--users", type=int, default=4000, help="users of the synthetic log")
    parser.add_argument("--items", type=int, default=2000, help="items of the synthetic log")
    parser.add_argument(
        "--events-per-day", type=int, default=4000, help="events per day of the synthetic log"
    )
    from recs_pipeline.training.cli import add_param_flags, add_setting_flags

    add_setting_flags(parser, TRAIN_FLAGS)
    # Not TrainConfig's distill_listwise alone: the regime of LISTWISE_DISTILL and LISTWISE_SOFTMAX.
    parser.add_argument(
        "--distill-listwise",
        action="store_true",
        help="with --distill, the regime that met the Gowalla trained target: the teacher's order"
        " as a list-wise term, its items at weight 4, the softmax loss (τ 0.1, 2,048 shared"
        " negatives)",
    )
    add_param_flags(parser)
    parser.add_argument(
        "--small",
        action="store_true",
        help="a small synthetic log (500 users, 250 items, 900 events a day): a quick check",
    )
    parser.add_argument(
        "--selection-trials",
        type=int,
        default=None,
        help="the demo's model selection: at most this many trials (default"
        f" {DEMO_SELECTION['trials']} within {DEMO_SELECTION['budget_minutes']:g} minutes)",
    )
    parser.add_argument(
        "--own-logs",
        action="store_true",
        help="run the chain on your own logs (RECS_* / recs.toml) instead of the demo",
    )
    parser.add_argument("--to", type=dt.date.fromisoformat, help="--own-logs: the day D to run")
    parser.add_argument(
        "--from",
        dest="start",
        type=dt.date.fromisoformat,
        help="--own-logs: the first day to ingest (default: D - window_days + 1)",
    )
    return parser.parse_args(argv)


def _demo(args: argparse.Namespace) -> int:
    from recs_pipeline.data.synthetic import SyntheticLogSpec, recorded_spec, write_landing_files
    from recs_pipeline.infra import project_config

    root = (project_config.data_root() / "demo").resolve()
    landing = root / "landing"
    spec = recorded_spec(landing)
    if args.small:
        args.users, args.items, args.events_per_day = 500, 250, 900
    size = (args.days, args.users, args.items, args.events_per_day)
    if spec is None or (spec.days, spec.n_users, spec.n_items, spec.events_per_day) != size:
        yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        spec = SyntheticLogSpec(
            start=yesterday - dt.timedelta(days=args.days - 1),
            days=args.days,
            n_users=args.users,
            n_items=args.items,
            events_per_day=args.events_per_day,
            dirty_fraction=0.001,
        )
    # The demo's days must be partitions, whatever the deployment's start (set before the code
    # location is imported).
    configured_start = project_config.setting("partition_start", builtin=False)
    if configured_start and dt.date.fromisoformat(configured_start) > spec.start:
        os.environ[project_config.TOP_LEVEL["partition_start"][0]] = spec.start.isoformat()
    configured = _configured_landing_root()
    if configured.is_relative_to(root) or root.is_relative_to(configured):
        print(
            f"error: the demo writes under {root}, which overlaps the configured landing root"
            f" {configured} (RECS_LANDING_ROOT / recs.toml): it never writes into a landing"
            " root. Set RECS_DATA_ROOT to another folder, or run your logs with --own-logs.",
            file=sys.stderr,
        )
        return 2
    if recorded_spec(landing) != spec:
        print(
            f"writing {spec.days} days of synthetic logs ({spec.start} .. {spec.end}) to {landing}"
        )
        write_landing_files(spec, landing)
    else:
        print(f"reusing the synthetic logs in {landing} ({spec.start} .. {spec.end})")
    _write_demo_config(root, spec.start)
    from resources import ArtifactStore, ComputeEngine, LogSource, Warehouse

    resources = {
        "warehouse": Warehouse(database=str(root / "warehouse.duckdb")),
        "artifacts": ArtifactStore(root=str(root / "artifacts")),
        "log_source": LogSource(landing_root=str(landing)),
        "engine": ComputeEngine(),
    }
    from assets.lib.settings import builtin_run_config

    run_config = builtin_run_config()
    run_config["ops"]["trained_model"]["config"].update(_train_overrides(args))
    run_config["ops"]["model_selection"]["config"].update(DEMO_SELECTION)
    if args.selection_trials:
        run_config["ops"]["model_selection"]["config"]["trials"] = args.selection_trials
    return _run(resources, spec.start, spec.end, run_config, code_location_env=_demo_settings(root))


def _configured_landing_root() -> Path:
    from resources.deployment import deployment_defaults

    return Path(deployment_defaults("log_source")["landing_root"]).resolve()


def _write_demo_config(root: Path, start: dt.date) -> None:
    """``data/demo/recs.toml``: the demo as a deployment, for ``RECS_CONFIG=... make ui``."""
    (root / "recs.toml").write_text(
        "# Written by the demo (`recs demo`, `make run`). With no deployment of your own\n"
        "# configured, `recs status`, `recs show` and `recs ui` read this; otherwise point\n"
        "# RECS_CONFIG at it: RECS_CONFIG=data/demo/recs.toml recs ui\n"
        f'partition_start = "{start.isoformat()}"\n\n'
        '[resources.log_source]\nlanding_root = "landing"\n\n'
        '[resources.warehouse]\ndatabase = "warehouse.duckdb"\n\n'
        '[resources.artifacts]\nroot = "artifacts"\n'
    )


def _demo_settings(root: Path) -> dict[str, str | None]:
    """The environment in which the code location's resources are the demo's (its recs.toml):
    no RECS_* resource setting or executor of the deployment (the demo ignores them)."""
    from assets.platform.kubernetes import EXECUTOR_ENV
    from recs_pipeline.infra.project_config import CONFIG_ENV
    from resources.deployment import RESOURCE_ENV

    env: dict[str, str | None] = {CONFIG_ENV: str(root / "recs.toml"), EXECUTOR_ENV: None}
    for variables in RESOURCE_ENV.values():
        env |= dict.fromkeys(variables.values())
    return env


@contextlib.contextmanager
def _environment(changes: dict[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``changes`` (None: unset) while the block runs, then as it was:
    what a process started meanwhile inherits."""
    saved = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _own_logs(args: argparse.Namespace) -> int:
    from assets.definitions import default_resources
    from assets.lib.partitions import DEFAULT_WINDOW_DAYS, PARTITION_START

    resources = default_resources()
    end = args.to
    if end is None:
        from recs_pipeline.data.profile import all_files, profile_log

        source = resources["log_source"]
        end = profile_log(
            all_files(source.landing_root, source.path_pattern), source.log_format()
        ).last_day
        print(f"the log's last day: {end}")
    first = dt.date.fromisoformat(PARTITION_START)
    start = args.start or max(first, end - dt.timedelta(days=DEFAULT_WINDOW_DAYS - 1))
    train = _train_overrides(args)
    run_config = {"ops": {"trained_model": {"config": train}}} if train else {}
    return _run(resources, start, end, run_config, skip_ingested=True)


# The demo's model selection: eight trials within two minutes (the filters' three defaults,
# then their best, the trained models' defaults and one proposal), so that `make run` stays
# short and shows a choice made on the day's own log. A trained trial gets a quarter of the
# budget at most, so a slower machine may stop one sooner and choose otherwise.
DEMO_SELECTION = {"budget_minutes": 2.0, "trials": 8}


def _train_overrides(args: argparse.Namespace) -> dict:
    """The ``trained_model`` settings the command line sets (none: the run's own)."""
    from recs_pipeline.training.cli import params_from_args, settings_from_args
    from recs_pipeline.training.config import LISTWISE_DISTILL, LISTWISE_SOFTMAX

    overrides = settings_from_args(args, TRAIN_FLAGS)
    overrides |= params_from_args(args, args.model, args.distill)
    if args.distill:
        overrides |= {"distill_ranked": True}
    if args.distill_listwise:
        overrides |= LISTWISE_DISTILL | LISTWISE_SOFTMAX
    return {key: value for key, value in overrides.items() if value is not None}


def _selection_line(resources: dict, day: str) -> str:
    """Which scorer model selection chose for ``day`` and why (or that it did not run)."""
    from recs_pipeline.evaluation.selection_record import Selection, champion_line
    from recs_pipeline.infra.artifacts import SELECTION, ArtifactError

    store = resources["artifacts"].store()
    try:
        record = store.get(SELECTION, day)
    except (ArtifactError, FileNotFoundError, OSError):
        return "model selection: none stored for this day (the chain stopped before it)"
    return champion_line(Selection.from_dict(record["selection"]), record.get("reused_from"))


def _create_runs(location, ingest_ranges, end: dt.date, run_config: dict, created: list) -> None:
    """Through the code location, a run ingesting each of ``ingest_ranges`` (first and last
    days) and the chain's run for ``end``, appended to ``created`` as each is made (so that a
    failure between them still finds the first)."""
    from assets.definitions import DOWNSTREAM_ASSETS, daily_job
    from assets.ingest import raw_interactions
    from assets.lib.partitions import range_tags

    for ingest_range in ingest_ranges:
        created.append(
            location.create_run(
                daily_job.name, range_tags(*ingest_range), asset_selection=[raw_interactions.key]
            )
        )
    created.append(
        location.create_run(
            daily_job.name,
            location.partition_tags(daily_job.name, end),
            run_config,
            asset_selection=[asset.key for asset in DOWNSTREAM_ASSETS],
        )
    )


def _run(
    resources: dict,
    start: dt.date,
    end: dt.date,
    run_config: dict,
    skip_ingested: bool = False,
    code_location_env: dict[str, str | None] | None = None,
) -> int:
    """Ingest ``start..end``, then the chain for ``end``: runs of the code
    location's daily_recommendations, executed in this process with ``resources``.
    ``skip_ingested`` (your own logs): only the days :func:`assets.ingest.pending_days` names
    are ingested, a run per stretch of consecutive days, so a re-run over unchanged landing
    files reads nothing again.
    ``code_location_env``: the environment the code location loads with, beside this
    process's (None: unset), so that its resources are ``resources``."""
    from recs_pipeline.infra import project_config

    os.environ.setdefault("DAGSTER_HOME", project_config.setting("dagster_home"))
    import dagster as dg

    from assets.platform.instance import InstanceConfigError, InstanceCorrupted, prepare_instance

    try:
        prepare_instance(os.environ["DAGSTER_HOME"])
    except (InstanceCorrupted, InstanceConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    from assets.definitions import ALL_ASSETS, daily_job
    from assets.ingest import pending_days, pending_ranges
    from cli.launch import LaunchError, code_location
    from cli.step_lines import materialize

    newest = end.isoformat()
    instance = dg.DagsterInstance.get()

    ranges, why = [(start, end)], ""
    if skip_ingested:
        pending, why = pending_days(instance, resources["log_source"], start, end)
        if not pending:
            print(f"{start}..{end}: every day is ingested from its files as they are; nothing read")
        # A run per stretch of consecutive days: the days between are not read again.
        ranges = pending_ranges(pending)
    created: list[dg.DagsterRun] = []
    try:
        with contextlib.ExitStack() as stack:
            # The code location, loaded in a code server with the runs' settings, creates the
            # runs: each has the repository's origin and the job's snapshot, as a run the UI
            # launches. This process executes them (module docstring).
            with _environment(code_location_env or {}):
                location = stack.enter_context(code_location(instance))
            _create_runs(location, ranges, end, run_config, created)
        *ingest_runs, chain_run = created
        for (first, last), ingest_run in zip(ranges, ingest_runs, strict=True):
            started = time.perf_counter()
            ingest = materialize(
                daily_job, ALL_ASSETS, instance=instance, resources=resources, run=ingest_run
            )
            days = (last - first).days + 1
            of = f" of {first}..{last}" if len(ranges) > 1 else ""
            print(
                f"ingested {days} days{of}{f' ({why})' if why else ''} in"
                f" {time.perf_counter() - started:.1f}s (run {ingest.run_id})"
            )

        started = time.perf_counter()
        chain = materialize(
            daily_job,
            ALL_ASSETS,
            instance=instance,
            resources=resources,
            run_config=run_config,
            raise_on_error=False,
            run=chain_run,
        )
    except LaunchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        # A run created and never started (the code location failed to create the next, the
        # ingest failed, ^C): recorded as canceled, not left waiting in the UI forever.
        for run in created:
            stored = instance.get_run_by_id(run.run_id)
            if stored is not None and stored.status == dg.DagsterRunStatus.NOT_STARTED:
                instance.report_run_canceled(stored, "not started: the demo stopped before it")
    print(f"chain for {newest} in {time.perf_counter() - started:.1f}s (run {chain.run_id})")
    return _print_results(resources, end, chain)


def _print_results(resources: dict, end: dt.date, chain) -> int:
    """What the chain for ``end`` chose and scored, and the first published lists; 1 when the
    chain did not finish."""
    newest = end.isoformat()
    print(_selection_line(resources, newest))

    with resources["warehouse"].session() as con:
        metrics = con.execute(
            # This run's evaluation: ml.metrics keeps every evaluation of the day.
            """SELECT model, k, metric, value FROM ml.metrics WHERE as_of_date = ? AND run_id = ?
               ORDER BY model = 'popularity', model, metric, k""",
            [end, chain.run_id],
        ).fetchall()
        print(f"\nfull-ranking test metrics as of {newest} (training items excluded):")
        print(f"{'model':<12}{'metric':<11}{'@10':>8}{'@20':>8}{'@50':>8}")
        table: dict[tuple[str, str], dict[int, float]] = {}
        for model, k, metric, value in metrics:
            table.setdefault((model, metric), {})[k] = value
        for (model, metric), values in table.items():
            print(
                f"{model:<12}{metric:<11}"
                + "".join(f"{values.get(k, float('nan')):>8.4f}" for k in (10, 20, 50))
            )
        published = con.execute(
            """SELECT user_id, model, string_agg(item_id, ' ' ORDER BY rank)
               FROM serving.latest_recommendations
               WHERE user_id IN (SELECT user_id FROM serving.latest_recommendations
                                 GROUP BY user_id ORDER BY user_id LIMIT 3)
               GROUP BY user_id, model ORDER BY user_id"""
        ).fetchall()
        latest = con.execute(
            "SELECT max(as_of_date), count(DISTINCT user_id) FROM serving.latest_recommendations"
        ).fetchone()
    if not chain.success:
        print(
            "\nthe chain did not finish (quality gate or error): recs status says why, the run's"
            " page in the UI (recs ui) shows it"
        )
        return 1
    print(f"\npublished lists as of {latest[0]} for {latest[1]} users; the first three:")
    for user, model, items in published:
        print(f"  {user} [{model}]: {items}")
    print("\nthe days' verdicts: recs status; the UI on this state: recs ui (or make ui)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
