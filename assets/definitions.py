"""The code location: assets, jobs, the daily schedule and resources (``defs``)."""

import os

import dagster as dg

from assets.executor import forkserver_executor
from assets.features import hard_negatives, interaction_graph, interaction_split
from assets.ingest import raw_interactions
from assets.model import model_evaluation, trained_model
from assets.partitions import DATA_ROOT, daily_partitions
from assets.serving import recommendations
from resources import ArtifactStore, LogSource, Warehouse

ALL_ASSETS = [
    raw_interactions,
    interaction_split,
    interaction_graph,
    hard_negatives,
    trained_model,
    model_evaluation,
    recommendations,
]

daily_job = dg.define_asset_job(
    "daily_recommendations",
    selection=dg.AssetSelection.assets(*ALL_ASSETS),
    partitions_def=daily_partitions,
    description="Ingest day D and retrain, evaluate and publish recommendations as of D.",
)

daily_schedule = dg.build_schedule_from_partitioned_job(
    daily_job, hour_of_day=2, minute_of_hour=0, description="Each night, the newest complete day."
)


def default_resources() -> dict:
    """Resources with every location settable from an environment variable."""
    return {
        "warehouse": Warehouse(
            database=os.environ.get("RECS_WAREHOUSE", str(DATA_ROOT / "warehouse.duckdb")),
            # Unset: a `serving` folder beside the database file (data/serving by default).
            serving_root=os.environ.get("RECS_SERVING"),
        ),
        "artifacts": ArtifactStore(
            root=os.environ.get("RECS_ARTIFACTS", str(DATA_ROOT / "artifacts"))
        ),
        "log_source": LogSource(
            landing_root=os.environ.get("RECS_LANDING_ROOT", str(DATA_ROOT / "landing")),
            **{
                field: os.environ[env]
                for field, env in (
                    ("path_pattern", "RECS_PATH_PATTERN"),
                    ("format", "RECS_FORMAT"),
                    ("user_column", "RECS_USER_COLUMN"),
                    ("item_column", "RECS_ITEM_COLUMN"),
                    ("timestamp_column", "RECS_TIMESTAMP_COLUMN"),
                    ("timestamp_unit", "RECS_TIMESTAMP_UNIT"),
                    ("event_type_column", "RECS_EVENT_TYPE_COLUMN"),
                    ("item_features_path", "RECS_ITEM_FEATURES"),
                    ("date_columns", "RECS_DATE_COLUMNS"),
                    ("min_plausible_date", "RECS_MIN_PLAUSIBLE_DATE"),
                )
                if env in os.environ
            },
        ),
    }


defs = dg.Definitions(
    assets=ALL_ASSETS,
    jobs=[daily_job],
    schedules=[daily_schedule],
    resources=default_resources(),
    executor=forkserver_executor,
)
