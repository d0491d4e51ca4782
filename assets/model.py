"""trained_model and model_evaluation (with the blocking quality gate)."""

import dataclasses

import dagster as dg

from assets.features import hard_negatives, interaction_graph
from assets.partitions import daily_partitions, partition_date
from assets.settings import TrainSettings
from recs_pipeline.graph import InteractionGraph, id_map_version
from recs_pipeline.metrics import evaluate_embeddings, popularity_embeddings
from recs_pipeline.models import checkpoint, restore
from recs_pipeline.train import train_model
from recs_pipeline.warehouse import replace_partition
from resources import ArtifactStore, Warehouse

KS = (10, 20, 50)
GATE_METRIC = ("recall", 20)


@dg.asset(
    partitions_def=daily_partitions,
    deps=[interaction_graph, hard_negatives],
    group_name="model",
    kinds={"torch"},
)
def trained_model(
    context: dg.AssetExecutionContext, config: TrainSettings, artifacts: ArtifactStore
) -> dg.MaterializeResult:
    """The recommender trained on day D's train split (BPR or binary loss, uniform plus
    curriculum hard negatives, early stopping on a validation slice carved from train). The
    checkpoint, its config and its id-map version are stored under the partition key."""
    store = artifacts.store()
    key = context.partition_key
    graph = InteractionGraph.from_dict(store.load_torch("interaction_graph", key, "graph.pt"))
    pools = store.load_torch("hard_negatives", key, "pools.pt")
    train_config = config.to_core()
    result = train_model(
        graph.n_users,
        graph.n_items,
        graph.train_users,
        graph.train_items,
        graph.train_last_ts,
        train_config,
        hard_pools=pools,
        log=context.log.info,
    )
    store.save_torch(
        {
            **checkpoint(result.model),
            "train_config": dataclasses.asdict(train_config),
            "id_map": {"as_of": key, "version": id_map_version(graph.user_ids, graph.item_ids)},
            "history": result.history,
            "best_epoch": result.best_epoch,
            "val_recall": result.best_val_recall,
        },
        "trained_model",
        key,
        "model.pt",
    )
    return dg.MaterializeResult(
        metadata={
            "model": train_config.model,
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            f"val_recall@{train_config.val_k}": result.best_val_recall,
            "train_seconds": round(result.seconds, 2),
        }
    )


def load_embeddings(store, key: str):
    """(graph, model checkpoint, user embeddings, item embeddings) of partition ``key``,
    propagated over the full train graph of that day."""
    graph = InteractionGraph.from_dict(store.load_torch("interaction_graph", key, "graph.pt"))
    adjacency = store.load_torch("interaction_graph", key, "adjacency.pt")
    state = store.load_torch("trained_model", key, "model.pt")
    if state["id_map"]["version"] != id_map_version(graph.user_ids, graph.item_ids):
        raise dg.Failure(
            f"trained_model({key}) was trained on another id map than interaction_graph({key}):"
            " re-materialise trained_model"
        )
    model = restore(state)
    user_emb, item_emb = model.embed(adjacency)
    return graph, state, user_emb.detach(), item_emb.detach()


@dg.asset(
    partitions_def=daily_partitions,
    deps=[trained_model],
    pool="duckdb",
    group_name="model",
    kinds={"duckdb", "torch"},
    check_specs=[
        dg.AssetCheckSpec(
            "beats_popularity",
            asset="model_evaluation",
            blocking=True,
            description="Quality gate: the model's Recall@20 must exceed the popularity"
            " baseline's; when it does not, nothing is published for the day.",
        )
    ],
)
def model_evaluation(
    context: dg.AssetExecutionContext, warehouse: Warehouse, artifacts: ArtifactStore
) -> dg.MaterializeResult:
    """Full-ranking evaluation on the test fold, training items excluded: Recall, NDCG,
    Precision and HitRate at K ∈ {10, 20, 50} for the model and the popularity baseline, into
    ``ml.metrics`` and as numeric metadata (plotted over partitions in the UI)."""
    key = context.partition_key
    graph, state, user_emb, item_emb = load_embeddings(artifacts.store(), key)
    exclude = graph.train_csr()
    results = {
        state["model"]: evaluate_embeddings(
            user_emb, item_emb, exclude, graph.test_users, graph.test_items, KS
        ),
        "popularity": evaluate_embeddings(
            *popularity_embeddings(graph.item_degree(), graph.n_users),
            exclude,
            graph.test_users,
            graph.test_items,
            KS,
        ),
    }
    rows = [
        (model, k, metric, value)
        for model, metrics in results.items()
        for (metric, k), value in metrics.items()
    ]
    with warehouse.session() as con:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _metrics (model VARCHAR, k INTEGER, metric VARCHAR, value DOUBLE)"
        )
        con.executemany("INSERT INTO _metrics VALUES (?, ?, ?, ?)", rows)
        replace_partition(
            con,
            "ml.metrics",
            partition_date(context),
            "SELECT CAST(? AS DATE), model, k, metric, value FROM _metrics WHERE NOT isnan(value)",
            [partition_date(context)],
        )
    model_score = results[state["model"]][GATE_METRIC]
    baseline = results["popularity"][GATE_METRIC]
    passed = model_score == model_score and model_score > baseline  # NaN (no test users) fails
    metadata = {
        f"{'model' if model != 'popularity' else 'popularity'}_{metric}@{k}": float(value)
        for model, metrics in results.items()
        for (metric, k), value in metrics.items()
    }
    return dg.MaterializeResult(
        metadata={
            "model": state["model"],
            "test_users": int(graph.test_users.unique().numel()),
            **metadata,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="beats_popularity",
                passed=bool(passed),
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "model_recall@20": float(model_score),
                    "popularity_recall@20": float(baseline),
                },
                description=None if passed else "the model does not beat popularity on Recall@20",
            )
        ],
    )
