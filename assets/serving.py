"""recommendations: the published top-K table."""

import datetime as dt

import dagster as dg

from assets.model import load_scorer, model_evaluation
from assets.partitions import daily_partitions, partition_date
from assets.settings import PublishSettings
from recs_pipeline.recommend import publish_recommendations
from recs_pipeline.serving import export_published
from resources import ArtifactStore, Warehouse


@dg.asset(
    partitions_def=daily_partitions,
    deps=[model_evaluation],
    pool="duckdb",
    group_name="serving",
    kinds={"duckdb"},
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
    fallback. Runs only when the quality gate passed; the view
    ``serving.latest_recommendations`` shows the newest published day."""
    key = context.partition_key
    store = artifacts.store()
    graph, model_name, score_fn = load_scorer(store, key, up_to_date=True)
    window_days = store.load_json("interaction_split", key, "split.json")["config"]["window_days"]
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
        metadata={**counts, "k": config.k, "preview": dg.MetadataValue.md(table)}
    )
