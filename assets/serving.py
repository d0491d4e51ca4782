"""recommendations: the published top-K table."""

import datetime as dt

import dagster as dg

from assets.catalog import OWNERS, PUBLICATION_FRESHNESS, tags
from assets.lineage import expected_writer
from assets.model import model_evaluation
from assets.partitions import daily_partitions, partition_date
from assets.settings import PublishSettings, check_run_config
from recs_pipeline.artifacts import PUBLISHED_MODEL, SPLIT
from recs_pipeline.daily import (
    GATE_BASELINE,
    NO_TEST_USERS,
    load_model_payload,
    load_scorer,
    pin_published_model,
    popularity_scorer,
    publishable,
)
from recs_pipeline.recommend import publish_recommendations
from recs_pipeline.serving import export_published
from resources import ArtifactStore, Warehouse


@dg.asset(
    partitions_def=daily_partitions,
    deps=[model_evaluation],
    pool="duckdb",
    group_name="serving",
    kinds={"duckdb"},
    owners=OWNERS,
    tags=tags("serving"),
    freshness_policy=PUBLICATION_FRESHNESS,
)
def recommendations(
    context: dg.AssetExecutionContext,
    config: PublishSettings,
    warehouse: Warehouse,
    artifacts: ArtifactStore,
) -> dg.MaterializeResult:
    """Top-K per user into ``serving.recommendations`` (one atomic partition replace), excluding
    everything the user interacted with up to D and scored from everything known up to D (the
    test period's interactions included); users the model does not know get the popularity
    fallback. The view ``serving.latest_recommendations`` shows the newest published day.

    Publishes only a model.pt whose fingerprint passed the quality gate (the record
    model_evaluation wrote for this partition), whatever the run selects: a model retrained
    since its evaluation, or one that failed, is refused. On a day without test users the gate
    has no verdict and every user gets the popularity fallback, recorded in the metadata.

    Once published, the model.pt read here is kept byte for byte as
    ``recommendations/D/published_model.pt`` (its sha256 is the metadata's model_sha256):
    re-materialising trained_model with another model replaces model.pt, not that copy."""
    check_run_config(context)
    key = context.partition_key
    store = artifacts.store()
    # One read of model.pt: the fingerprint checked against the gate is that of the weights
    # published, even if trained_model is re-materialised meanwhile.
    model, payload = load_model_payload(store, key, expected_writer(context, "trained_model"))
    gate = publishable(store, key, model[1], expected_writer(context, "model_evaluation"))
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
    with warehouse.session() as con:
        counts = publish_recommendations(
            con,
            as_of,
            as_of - dt.timedelta(days=window_days - 1),
            graph,
            score_fn,
            model_name,
            config.k,
            config.publish_index(),
        )
        counts |= export_published(con, warehouse.serving_path(), as_of)
        # After the lists are committed: a publication that fails leaves the earlier pin.
        pin_published_model(store, key, payload)
        preview = con.execute(
            """SELECT user_id, string_agg(item_id, ', ' ORDER BY rank) AS items, any_value(model)
               FROM serving.recommendations WHERE as_of_date = ?
               GROUP BY user_id ORDER BY user_id LIMIT 5""",
            [as_of],
        ).fetchall()
    table = "| user | model | items |\n|---|---|---|\n" + "\n".join(
        f"| {u} | {m} | {items} |" for u, items, m in preview
    )
    return dg.MaterializeResult(
        metadata={
            **counts,
            **fallback,
            "k": config.k,
            "model_sha256": scorer.fingerprint,
            "published_model": PUBLISHED_MODEL.at(key),
            "gate": gate.verdict,
            "preview": dg.MetadataValue.md(table),
        }
    )
