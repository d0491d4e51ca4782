"""The code location: assets, jobs, the daily schedule and resources (``defs``)."""

import warnings

import dagster as dg
from pydantic import Field, create_model

from assets.features import hard_negatives, interaction_graph, interaction_split
from assets.ingest import raw_interactions
from assets.live import live_recommendations
from assets.model import model_evaluation, model_selection, trained_model
from assets.platform.kubernetes import deployment_executor
from assets.serving import recommendations
from resources.deployment import RESOURCE_CLASSES, all_defaults

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
    """Resources with this deployment's defaults (:func:`resources.deployment.all_defaults`)."""
    return {
        key: with_defaults(RESOURCE_CLASSES[key], defaults)()
        for key, defaults in all_defaults().items()
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
