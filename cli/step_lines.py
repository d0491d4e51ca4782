"""The main job's terminal: one line per finished step, warnings and errors; no DEBUG events.

:func:`materialize` runs a job of the code location in process, like ``dg.materialize`` but
under the job's own name (or a run already created through the code location, which carries
the repository's origin), with the default colored console logger (every Dagster event, DEBUG
included) replaced by :data:`step_lines`, a logger that prints a compact line when a step
succeeds or fails and the steps' own warnings and errors. Everything else
(the per-day ingest lines, the training epochs, Dagster's events) is still recorded in the
instance's event log, where the UI shows it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from cli.days import step_failure_text


class _StepLineHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        step = meta.get("step_key") or "run"
        event = meta.get("dagster_event")
        if event is not None:
            kind = event.event_type_value
            if kind == "STEP_SUCCESS":
                seconds = event.event_specific_data.duration_ms / 1000
                print(f"  {step:<20} done in {seconds:.1f}s", flush=True)
            elif kind == "STEP_FAILURE":
                message = step_failure_text(event.event_specific_data) or "failed"
                print(f"  {step:<20} FAILED: {message}", file=sys.stderr, flush=True)
            elif kind == "RUN_FAILURE" and record.levelno >= logging.ERROR:
                print(f"  run failed: {meta.get('orig_message', '')}", file=sys.stderr, flush=True)
            return
        if record.levelno >= logging.WARNING:
            message = meta.get("orig_message", record.getMessage())
            level = record.levelname.lower()
            print(f"  {step:<20} {level}: {message}", file=sys.stderr, flush=True)


@dg.logger(description="One line per finished step, plus the steps' warnings and errors.")
def step_lines(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger("recs_pipeline.steps", level=logging.DEBUG)
    logger.addHandler(_StepLineHandler())
    return logger


def materialize(
    job: dg.UnresolvedAssetJobDefinition,
    assets: Sequence[Any],
    *,
    instance: dg.DagsterInstance,
    resources: Mapping[str, Any],
    asset_selection: Sequence[Any] | None = None,
    partition_key: str | None = None,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    raise_on_error: bool = True,
    run: dg.DagsterRun | None = None,
) -> dg.ExecuteInProcessResult:
    """Run ``job`` (an asset job of the code location, over ``assets``) in this process with
    ``resources``, materialising ``asset_selection`` (assets or keys; default: the whole job),
    printing :data:`step_lines` instead of Dagster's console log.

    The run carries the job's name (``dg.materialize`` would record it as
    ``__ephemeral_asset_job__``, a job the UI does not show). ``run``: a run of ``job``
    created through the code location (``assets.platform.code_location.Location.create_run``),
    executed here instead of a new one: it carries the repository's origin, so the UI lists it
    under the job's Runs and on the timeline, and re-executes it as its own; its tags, asset
    selection and run config are the run's (``run_config`` is then its run config)."""
    defs = dg.Definitions(assets=assets, resources=resources, jobs=[job])
    job_def = defs.resolve_job_def(job.name).with_logger_defs({"step_lines": step_lines})
    keys = (
        None
        if asset_selection is None
        else [getattr(asset, "key", asset) for asset in asset_selection]
    )
    # A job's loggers are used only when the run config names them; else Dagster's console.
    run_config = {**(run_config or {}), "loggers": {"step_lines": {}}}
    if run is not None:
        from assets.platform.code_location import execute_recorded_run

        return execute_recorded_run(job_def, run, instance, run_config, raise_on_error)
    return job_def.execute_in_process(
        run_config=run_config,
        instance=instance,
        partition_key=partition_key,
        tags=tags,
        raise_on_error=raise_on_error,
        asset_selection=keys,
    )
