"""recommendations: the published top-K table."""

import datetime as dt

import dagster as dg

from assets.lib.catalog import daily_asset
from assets.lib.lineage import expected_writer
from assets.lib.partitions import partition_date
from assets.lib.settings import PublishSettings, check_run_config
from assets.lib.shard_log import ShardLog
from assets.lib.tables import row_count
from assets.live import live_event
from assets.model import gate_stop, model_evaluation
from recs_pipeline.evaluation.gate import GATE_BASELINE, NO_TEST_USERS, GateError, publishable
from recs_pipeline.infra.artifacts import PUBLISHED_MODEL, SPLIT
from recs_pipeline.serving.files import export_published
from recs_pipeline.serving.published_model import converge_published_models, pin_published_model
from recs_pipeline.serving.recommend import publish_recommendations
from recs_pipeline.steps.day import load_model_payload, load_scorer, popularity_scorer
from resources import ArtifactStore, ComputeEngine, Warehouse

PREVIEW_RANKS = 10
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
    key = context.partition_key
    store = artifacts.store()
    # One read of model.pt: the fingerprint checked against the gate is that of the weights
    # published, even if trained_model is re-materialised meanwhile.
    model, payload = load_model_payload(store, key, expected_writer(context, "trained_model"))
    try:
        gate = publishable(store, key, model[1], expected_writer(context, "model_evaluation"))
    except GateError as error:
        # The run page shows the verdict's sentence, not a stack trace.
        raise gate_stop(key, error) from None
    scorer = load_scorer(
        store,
        key,
        up_to_date=True,
        model=model,
        expect_graph_run=expected_writer(context, "interaction_graph"),
    )
    graph, model_name, score_fn = scorer.graph, scorer.model, scorer.score_fn
    fallback = {}
    if gate.verdict == NO_TEST_USERS:
        model_name, score_fn = GATE_BASELINE, popularity_scorer(graph)
        fallback = {"fallback": "popularity: no test users on this day"}
        context.log.warning(
            f"{key}: no test users, the model was not evaluated: {gate.description}"
        )
    split = store.get(SPLIT, key, expected_writer(context, "interaction_split"))
    window_days = split["config"]["window_days"]
    as_of = partition_date(context)
    compute = engine.engine()
    shard_log = ShardLog(context, compute, "publication")
    # The cluster first: starting one must not hold the warehouse.
    with compute.session(), warehouse.session() as con:
        counts = publish_recommendations(
            con,
            as_of,
            as_of - dt.timedelta(days=window_days - 1),
            graph,
            score_fn,
            model_name,
            config.k,
            config.publish_index(),
            engine=compute,
            on_shard=shard_log,
            model_sha256=model[1].sha256,
        )
        # Every day's copies are checked against the warehouse's publication records, so a
        # publication killed between its commit and here is caught up now or by the next one.
        counts |= export_published(con, warehouse.serving_path(), as_of)
        if "serving_repaired" in counts:
            context.log.warning(f"serving files rewritten: {counts['serving_repaired']}")
        # After the lists are committed: a publication that fails leaves the earlier pin.
        pin_published_model(store, key, payload)
        unpinned = converge_published_models(con, store, context.log.warning)
        for day, problem in unpinned.items():
            context.log.warning(f"{day}: {problem}")
        if unpinned:
            counts["published_models_disagreeing"] = ", ".join(sorted(unpinned))
        live, live_line = live_event(
            context,
            con,
            store,
            day=as_of,
            publication=counts["publication"],
            served=model_name,
            state=model[0],
            gate=gate,
            counts=counts,
        )
        preview = con.execute(
            """WITH users AS (
                   SELECT user_id, any_value(model) AS model FROM serving.recommendations
                   WHERE as_of_date = $day GROUP BY user_id),
               picked AS (
                   (SELECT user_id FROM users WHERE model <> $fallback ORDER BY user_id LIMIT 3)
                   UNION ALL
                   (SELECT user_id FROM users WHERE model = $fallback ORDER BY user_id LIMIT 1))
               SELECT r.user_id, r.rank, r.item_id, r.score, r.model
               FROM serving.recommendations r JOIN picked USING (user_id)
               WHERE r.as_of_date = $day AND r.rank <= $ranks
               ORDER BY r.model = $fallback, r.user_id, r.rank""",
            {"day": as_of, "fallback": GATE_BASELINE, "ranks": PREVIEW_RANKS},
        ).fetchall()
    # What is live moves only when this publication made a newer day live (assets/live.py).
    context.log.info(live_line)
    if live is not None:
        context.log_event(live)
    return dg.MaterializeResult(
        metadata={
            **row_count(counts["rows"]),
            **counts,
            **fallback,
            "k": config.k,
            "model_sha256": scorer.fingerprint,
            "published_model": PUBLISHED_MODEL.at(key),
            "gate": gate.verdict,
            "live": "yes: this day is live" if live is not None else live_line,
            "preview": preview_table(preview),
            **shard_log.metadata(),
        }
    )
