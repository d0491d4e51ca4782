"""Each resource's defaults in this deployment, resolved in one place: a field's ``RECS_*``
environment variable, else its value in ``recs.toml``'s ``[resources.<name>]``, else a place under
the data root (:func:`recs_pipeline.infra.project_config.data_root`).

The code location makes them the config schema's defaults (``assets/definitions.py``); the
commands read the same (``recs status``, ``recs show``, the demo), and so does the instance's
set-up (the warehouse pool's limit follows the warehouse's catalog).
"""

import os

import dagster as dg

from recs_pipeline.data.logs import LogConfigError
from recs_pipeline.infra import project_config
from resources.artifacts import ArtifactStore
from resources.engine import ComputeEngine
from resources.log_source import LogSource
from resources.warehouse import Warehouse

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
    data_root = project_config.data_root()
    builtin = {
        "warehouse": {"database": str(data_root / "warehouse.duckdb")},
        "artifacts": {"root": str(data_root / "artifacts")},
        "log_source": {"landing_root": str(data_root / "landing")},
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


def all_defaults() -> dict[str, dict]:
    """Every resource's defaults (:func:`deployment_defaults`), each value checked: a wrong one
    anywhere, or a ``[resources.<name>]`` table of no resource, raises the
    :class:`~recs_pipeline.infra.project_config.DeploymentSettingError` naming it, before
    anything runs."""
    for key in set(project_config.project_config().get("resources") or {}) - set(RESOURCE_ENV):
        raise project_config.ProjectConfigError(
            f"project config {project_config.config_path()}: no resource {key!r};"
            f" [resources.<key>] takes one of {', '.join(RESOURCE_CLASSES)}"
        )
    return {key: deployment_defaults(key) for key in RESOURCE_CLASSES}
