"""interaction_split, interaction_graph and hard_negatives: the training data of day D."""

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING

import dagster as dg

from assets.ingest import raw_interactions
from assets.lib.catalog import daily_asset
from assets.lib.lineage import step_day
from assets.lib.partitions import DEFAULT_WINDOW_DAYS, partition_date
from assets.lib.settings import HardNegativeSettings, SplitSettings, check_run_config
from assets.lib.shard_log import ShardLog
from assets.lib.tables import row_count
from recs_pipeline.data.item_features import read_item_features
from recs_pipeline.data.split import explain_empty_train, temporal_split
from recs_pipeline.infra.artifacts import (
    ADJACENCY,
    GRAPH,
    HARD_NEGATIVES,
    ITEM_FEATURES,
    SPLIT,
    UrlArtifactStore,
)
from resources import ArtifactStore, ComputeEngine, LogSource, Warehouse

if TYPE_CHECKING:
    from recs_pipeline.graph.bipartite import InteractionGraph

_WINDOW = dg.TimeWindowPartitionMapping(
    start_offset=-(DEFAULT_WINDOW_DAYS - 1), allow_nonexistent_upstream_partitions=True
)


@daily_asset(
    "features",
    writes=["features.train_interactions", "features.test_interactions"],
    deps=[dg.AssetDep(raw_interactions, partition_mapping=_WINDOW)],
)
def interaction_split(
    context: dg.AssetExecutionContext,
    config: SplitSettings,
    warehouse: Warehouse,
    artifacts: ArtifactStore,
) -> dg.MaterializeResult:
    """Temporal split in DuckDB SQL: train = [D-W+1, D-H], test = (D-H, D]; repeated events
    collapse to one edge; test keeps users and items seen in train."""
    check_run_config(context)
    as_of = partition_date(context)
    split_config = config.to_core()
    with warehouse.session() as con:
        report = temporal_split(con, as_of, split_config)
        if report.train_edges == 0:
            ingested = context.instance.get_materialized_partitions(raw_interactions.key)
            raise dg.Failure(
                explain_empty_train(
                    con, as_of, split_config, {dt.date.fromisoformat(d) for d in ingested}
                )
            )
    context.log.info(f"split of {as_of}: {report}")
    # Written in the same step (and pool slot) as the warehouse split: its run id tells
    # interaction_graph whose split the tables hold.
    artifacts.store().put(
        SPLIT,
        context.partition_key,
        {"config": dataclasses.asdict(split_config), "report": dataclasses.asdict(report)},
    )
    # One row per train edge in features.train_interactions.
    return dg.MaterializeResult(
        metadata={**row_count(report.train_edges), **dataclasses.asdict(report)}
    )


@daily_asset(
    "features",
    writes=["features.user_index", "features.item_index"],
    kinds=["torch"],
    deps=[interaction_split],
)
def interaction_graph(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    artifacts: ArtifactStore,
    log_source: LogSource,
) -> dg.MaterializeResult:
    """Id maps (`features.user_index` / `item_index`) and the bipartite graph with its
    symmetric normalised adjacency, stored in the artifact store; with a catalogue file
    (`log_source.item_features_path`), the items' features aligned to the id map too."""
    check_run_config(context)
    from recs_pipeline.graph.bipartite import index_split, normalized_adjacency

    store = artifacts.store()
    with warehouse.session() as con:
        # The warehouse split tables carry no run id; split.json, written by the same
        # interaction_split step, does. Checked while holding the duckdb pool slot, so no
        # other split can land between the check and the read.
        step_day(context, store).get(SPLIT)
        graph = index_split(con, partition_date(context))
    adjacency = normalized_adjacency(
        graph.train_users, graph.train_items, graph.n_users, graph.n_items
    )
    store.put(GRAPH, context.partition_key, graph.to_dict())
    store.put(ADJACENCY, context.partition_key, adjacency)
    feature_metadata = save_item_features(store, context.partition_key, log_source, graph)
    n_train = graph.train_users.numel()
    return dg.MaterializeResult(
        metadata={
            **row_count(graph.n_users),  # one row per user in features.user_index
            "users": graph.n_users,
            "items": graph.n_items,
            "train_edges": n_train,
            "test_edges": graph.test_users.numel(),
            "density": n_train / max(1, graph.n_users * graph.n_items),
            **feature_metadata,
        }
    )


def save_item_features(
    store: UrlArtifactStore, key: str, log_source: LogSource, graph: "InteractionGraph"
) -> dict:
    """Store the catalogue features of the graph's items as ``item_features.pt`` (or remove a
    stale one when there is no catalogue file); returns metadata describing them."""
    path = log_source.item_features_file()
    if path is None:
        store.remove(ITEM_FEATURES, key)
        return {"item_features": "none"}
    features = read_item_features(
        path,
        log_source.item_column,
        graph.item_ids,
        separator=log_source.item_feature_separator,
        max_categories=log_source.item_feature_max_categories,
    )
    store.put(ITEM_FEATURES, key, dataclasses.asdict(features))
    return {
        "item_features": ", ".join(features.columns) or "none (no usable column)",
        "items_with_features": features.matched_items,
        # Every catalogue column not used, with the reason (a dict shown as JSON in the UI).
        "ignored_feature_columns": dg.MetadataValue.json(features.ignored)
        if features.ignored
        else "none",
    }


@daily_asset(
    "features",
    kinds=["torch"],
    deps=[interaction_graph],
)
def hard_negatives(
    context: dg.AssetExecutionContext,
    config: HardNegativeSettings,
    artifacts: ArtifactStore,
    engine: ComputeEngine,
) -> dg.MaterializeResult:
    """Per-user hard-negative pools from random walk with restart (personalised PageRank):
    items ranked inside a band — high, but not the top — never interacted with. The walks run
    in the engine's shards of users (blocks of users seeded each on its own: the same pools
    however many shards); `shard_runs` in the metadata shows them."""
    check_run_config(context)
    from recs_pipeline.graph.negatives import sharded_hard_negative_pools

    store = artifacts.store()
    graph = step_day(context, store).get(GRAPH)
    hard_config = config.to_core()
    compute = engine.engine()
    shard_log = ShardLog(context, compute, "hard negatives")
    with compute.session():
        pools, _ = sharded_hard_negative_pools(
            graph["train_users"],
            graph["train_items"],
            len(graph["user_ids"]),
            len(graph["item_ids"]),
            hard_config,
            engine=compute,
            on_shard=shard_log,
        )
    store.put(HARD_NEGATIVES, context.partition_key, pools)
    lo, hi = hard_config.band(len(graph["item_ids"]))
    return dg.MaterializeResult(
        metadata={
            "users": pools.shape[0],
            "pool_size": pools.shape[1],
            "rank_band": f"[{lo}, {hi})",
            **shard_log.metadata(),
        }
    )
