"""The code location: assets, jobs, the daily schedule and resources (``defs``)."""

import os
import warnings

import dagster as dg
from pydantic import Field, create_model

from assets.features import hard_negatives, interaction_graph, interaction_split
from assets.ingest import raw_interactions
from assets.lib.partitions import DATA_ROOT
from assets.live import live_recommendations
from assets.model import model_evaluation, model_selection, trained_model
from assets.platform.kubernetes import deployment_executor
from assets.serving import recommendations
from recs_pipeline.data.logs import LogConfigError
from recs_pipeline.infra import project_config
from resources import ArtifactStore, ComputeEngine, LogSource, Warehouse

ALL_ASSETS = [
    raw_interactions,
    interaction_split,
    interaction_graph,
    hard_negatives,
    model_selection,
    trained_model,
    model_evaluation,
    recommendations,
]

DOWNSTREAM_ASSETS = [asset for asset in ALL_ASSETS if asset.key != raw_interactions.key]

# The scheduled job: one run per day, ingesting D and then retraining and publishing as of D.
# Its assets cannot share one backfill policy (raw_interactions ingests a range in one run; the
# others compute one day per run), and Dagster resolves the job's to the smaller one, one day per
# run, which is what a run or a backfill of this job does. Dagster warns about the mixture each
# time a process resolves the job (code server, daemon, run workers, the main job); that warning
# alone is filtered, for this job alone.
daily_job = dg.define_asset_job(
    "daily_recommendations",
    selection=dg.AssetSelection.assets(*ALL_ASSETS),
    description="Ingest day D and retrain, evaluate and publish recommendations as of D"
    " (the schedule's job; a backfill of it is one run per day, each ingesting its day).",
)
warnings.filterwarnings(
    "ignore",
    message=f"Asset job {daily_job.name} materializes assets with varying BackfillPolicies",
    category=UserWarning,
)

# "Retrain and republish these days": a backfill of this job over days X and Y is one run for
# X and one for Y, each rebuilding the split, graph, negatives, model, evaluation and published
# lists of its day from the days already ingested. (Selecting raw_interactions too in the asset
# graph would also retrain every later day whose 28-day window holds X or Y: Dagster's asset
# backfill follows the window lineage downstream.)
retrain_job = dg.define_asset_job(
    "retrain_days",
    selection=dg.AssetSelection.assets(*DOWNSTREAM_ASSETS),
    description="Retrain, evaluate and republish the chosen days from the ingested log, one"
    " run per day; nothing is re-ingested and no other day is touched.",
)

# Ingest a range of days in one run (raw_interactions' single-run backfill policy).
ingest_job = dg.define_asset_job(
    "ingest_days",
    selection=dg.AssetSelection.assets(raw_interactions),
    description="Ingest the chosen days from the landing files, a whole range in one run;"
    " nothing downstream runs.",
)

daily_schedule = dg.build_schedule_from_partitioned_job(
    daily_job, hour_of_day=2, minute_of_hour=0, description="Each night, the newest complete day."
)


# Resource fields settable from the environment (docs/configuration-reference.md).
RESOURCE_ENV: dict[str, dict[str, str]] = {
    "warehouse": {
        "database": "RECS_WAREHOUSE",
        "serving_root": "RECS_SERVING",
        "catalog": "RECS_WAREHOUSE_CATALOG",
        "data_path": "RECS_WAREHOUSE_DATA_PATH",
    },
    "artifacts": {"root": "RECS_ARTIFACTS"},
    "engine": {"kind": "RECS_ENGINE", "address": "RECS_RAY_ADDRESS", "workers": "RECS_WORKERS"},
    "log_source": {
        "landing_root": "RECS_LANDING_ROOT",
        "path_pattern": "RECS_PATH_PATTERN",
        "format": "RECS_FORMAT",
        "user_column": "RECS_USER_COLUMN",
        "item_column": "RECS_ITEM_COLUMN",
        "timestamp_column": "RECS_TIMESTAMP_COLUMN",
        "timestamp_unit": "RECS_TIMESTAMP_UNIT",
        "event_type_column": "RECS_EVENT_TYPE_COLUMN",
        "weight_column": "RECS_WEIGHT_COLUMN",
        "item_features_path": "RECS_ITEM_FEATURES",
        "date_columns": "RECS_DATE_COLUMNS",
        "min_plausible_date": "RECS_MIN_PLAUSIBLE_DATE",
    },
}
RESOURCE_CLASSES: dict[str, type[dg.ConfigurableResource]] = {
    "warehouse": Warehouse,
    "artifacts": ArtifactStore,
    "log_source": LogSource,
    "engine": ComputeEngine,
}


def deployment_defaults(key: str) -> dict:
    """The resource ``key``'s defaults for this deployment: the environment (RECS_*) over the
    project config file's [resources.<key>] over the data root's locations."""
    builtin = {
        "warehouse": {"database": str(DATA_ROOT / "warehouse.duckdb")},
        "artifacts": {"root": str(DATA_ROOT / "artifacts")},
        "log_source": {"landing_root": str(DATA_ROOT / "landing")},
        "engine": {},
    }[key]
    from_file = project_config.section("resources", key)
    unknown = set(from_file) - set(RESOURCE_CLASSES[key].model_fields)
    if unknown:
        raise project_config.ProjectConfigError(
            f"project config {project_config.config_path()}: [resources.{key}] has no field(s)"
            f" {sorted(unknown)}; its fields: {', '.join(RESOURCE_CLASSES[key].model_fields)}"
        )
    # Every value is checked against its field (type and range) here, at load, naming the key or
    # variable: they become the config schema's defaults, which Dagster checks for type only,
    # with an error naming neither. The environment holds strings: each becomes its field's
    # type (RECS_WORKERS=4 an int).
    fields = RESOURCE_CLASSES[key].model_fields
    from_file = {
        field: project_config.check_value(
            value,
            fields[field].annotation,
            key=f"[resources.{key}] {field}",
            constraints=fields[field].metadata,
        )
        for field, value in from_file.items()
    }
    env = {
        field: project_config.check_value(
            os.environ[var],
            fields[field].annotation,
            env=var,
            constraints=fields[field].metadata,
        )
        for field, var in RESOURCE_ENV[key].items()
        if var in os.environ
    }
    if key == "log_source":
        _check_log_settings(builtin | from_file | env, from_file, env)
    return builtin | from_file | env


def _check_log_settings(defaults: dict, from_file: dict, env: dict) -> None:
    """The log source's own rules (format, timestamp unit, date columns, ...), which ingest
    checks when it reads the log, checked at load too, naming the variable or key at fault
    (a LogConfigError's message starts with the setting's name)."""
    try:
        LogSource(**defaults).log_format()
    except LogConfigError as error:
        field = str(error).split()[0]
        if field in env:
            var = RESOURCE_ENV["log_source"][field]
            raise project_config.EnvironmentSettingError(
                f"{var}={os.environ[var]!r} is not allowed: {error}"
            ) from None
        if field in from_file:
            raise project_config.ProjectConfigError(
                f"project config {project_config.config_path()}: [resources.log_source]"
                f" {field} = {from_file[field]!r} is not allowed: {error}"
            ) from None
        raise


def with_defaults(cls: type[dg.ConfigurableResource], defaults: dict) -> type:
    """A subclass of the resource class ``cls`` whose fields default to ``defaults``. The
    values are the config schema's per-field defaults, so a run config setting one field of the
    resource keeps the others (values passed to the constructor would be one default for the
    whole resource config, dropped as soon as a run sets any field)."""
    fields = {
        name: (
            cls.model_fields[name].annotation,
            Field(default=value, description=cls.model_fields[name].description),
        )
        for name, value in defaults.items()
    }
    return create_model(cls.__name__, __base__=cls, __module__=cls.__module__, **fields)


def default_resources() -> dict:
    """Resources with this deployment's defaults: environment, project config file, built-in
    (:func:`deployment_defaults`)."""
    for key in set(project_config.project_config().get("resources") or {}) - set(RESOURCE_ENV):
        raise project_config.ProjectConfigError(
            f"project config {project_config.config_path()}: no resource {key!r};"
            f" [resources.<key>] takes one of {', '.join(RESOURCE_CLASSES)}"
        )
    return {
        key: with_defaults(cls, deployment_defaults(key))() for key, cls in RESOURCE_CLASSES.items()
    }


defs = dg.Definitions(
    # live_recommendations is reported by recommendations' step, not computed by one of its
    # own (assets/live.py), so it is in no job.
    assets=[*ALL_ASSETS, live_recommendations],
    jobs=[daily_job, retrain_job, ingest_job],
    schedules=[daily_schedule],
    resources=default_resources(),
    # The primed forkserver executor; one Kubernetes Job per step with RECS_EXECUTOR=k8s.
    executor=deployment_executor(),
)
