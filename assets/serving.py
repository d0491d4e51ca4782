"""recommendations: the published top-K table."""

import dagster as dg

from assets.lib.catalog import daily_asset
from assets.lib.lineage import step_day
from assets.lib.partitions import partition_date
from assets.lib.settings import PublishSettings, check_run_config
from assets.lib.shard_log import ShardLog
from assets.lib.tables import row_count
from assets.live import live_event
from assets.model import gate_stop, model_evaluation
from recs_pipeline.evaluation.gate import GateError
from recs_pipeline.infra.artifacts import PUBLISHED_MODEL
from resources import ArtifactStore, ComputeEngine, Warehouse

PREVIEW_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("user_id", "string"),
        dg.TableColumn("rank", "int", description="1 = best"),
        dg.TableColumn("item_id", "string"),
        dg.TableColumn("score", "float", description="the scorer's score, 4 decimals"),
        dg.TableColumn("model", "string", description="popularity: the fallback"),
    ]
)


def preview_table(rows: list[tuple]) -> dg.TableMetadataValue:
    """A few users' published lists (top ranks): three the model served and, when there is
    one, a user who got the popularity fallback."""
    return dg.MetadataValue.table(
        [
            dg.TableRecord(
                {"user_id": u, "rank": rank, "item_id": item, "score": round(score, 4), "model": m}
            )
            for u, rank, item, score, m in rows
        ],
        schema=PREVIEW_SCHEMA,
    )


@daily_asset(
    "serving",
    writes=["serving.recommendations"],
    deps=[model_evaluation],
)
def recommendations(
    context: dg.AssetExecutionContext,
    config: PublishSettings,
    warehouse: Warehouse,
    artifacts: ArtifactStore,
    engine: ComputeEngine,
) -> dg.MaterializeResult:
    """Top-K per user into `serving.recommendations` (one atomic partition replace), excluding
    everything the user interacted with up to D and scored from everything known up to D (the
    test period's interactions included); users the model does not know get the popularity
    fallback. The view `serving.latest_recommendations` shows the newest published day.

    Publishes only a model.pt whose fingerprint passed the quality gate (the record
    model_evaluation wrote for this partition), whatever the run selects: a model retrained
    since its evaluation, or one that failed, is refused, the step failing with the gate's
    sentence (its scores in the failure's metadata). On a day without test users the gate
    has no verdict and every user gets the popularity fallback, recorded in the metadata.

    Once published, the model.pt read here is kept byte for byte as
    `recommendations/D/published_model.pt` (its sha256 is the metadata's model_sha256):
    re-materialising trained_model with another model replaces model.pt, not that copy.
    The lists commit with a record in `serving.publications` (the model's sha256 among it); the
    serving files and the published_model.pt of every day are then checked against those
    records and rewritten where they disagree (a publication killed after its commit, a file
    edited on disk), each logged; `python -m cli.doctor` reports the same checks.

    When this publication makes a newer day live (the day applications are served), the step
    reports it as a materialization of `live_recommendations`, which carries the freshness
    policy; publishing an older day (a backfill, a re-run) leaves that asset as it is, and the
    metadata's `live` says which day stays live.

    The lists are ranked in the engine's shards of users (`shard_runs`); this step reads the
    warehouse and writes the lists."""
    check_run_config(context)
    from recs_pipeline.steps.publish import PublishedDay, publish_day

    key, store = context.partition_key, artifacts.store()
    compute = engine.engine()
    shard_log = ShardLog(context, compute, "publication")

    def report_live(con, day: PublishedDay):
        return live_event(
            context, con, store, day=partition_date(context), publication=day.counts["publication"],
            served=day.served, state=day.state, gate=day.gate, counts=day.counts,
        )  # fmt: skip

    try:
        day = publish_day(
            step_day(context, store), config.k, config.publish_index(), compute,
            warehouse.session, warehouse.serving_path(), warn=context.log.warning,
            on_shard=shard_log, report=report_live,
        )  # fmt: skip
    except GateError as error:
        # The run page shows the verdict's sentence, not a stack trace.
        raise gate_stop(key, error) from None
    live, live_line = day.reported
    # What is live moves only when this publication made a newer day live (assets/live.py).
    context.log.info(live_line)
    if live is not None:
        context.log_event(live)
    return dg.MaterializeResult(
        metadata={
            **row_count(day.counts["rows"]),
            **day.counts,
            **({"fallback": day.fallback} if day.fallback else {}),
            "k": config.k,
            "model_sha256": day.fingerprint,
            "published_model": PUBLISHED_MODEL.at(key),
            "gate": day.gate.verdict,
            "live": "yes: this day is live" if live is not None else live_line,
            "preview": preview_table(day.preview),
            **shard_log.metadata(),
        }
    )
