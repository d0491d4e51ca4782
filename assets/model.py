"""trained_model and model_evaluation (with the blocking quality gate)."""

import dataclasses
import datetime as dt
import inspect

import dagster as dg
import torch

from assets.features import hard_negatives, interaction_graph
from assets.partitions import daily_partitions, partition_date
from assets.settings import EvaluationSettings, TrainSettings, check_run_config
from recs_pipeline.artifacts import ArtifactProgress, LocalArtifactStore
from recs_pipeline.graph import InteractionGraph, id_map_version, normalized_adjacency
from recs_pipeline.metrics import ScoreFn, evaluate_scorer
from recs_pipeline.models import MODELS, TRAINING_FREE, checkpoint, fit_training_free
from recs_pipeline.scoring import score_function
from recs_pipeline.train import train_model
from recs_pipeline.warehouse import replace_partition
from recs_pipeline.warmstart import WarmStart, id_mapping
from resources import ArtifactStore, Warehouse

KS = (10, 20, 50)
GATE_METRIC = ("recall", 20)
GATE_BASELINE = "popularity"


def load_graph(store: LocalArtifactStore, key: str) -> InteractionGraph:
    return InteractionGraph.from_dict(store.load_torch("interaction_graph", key, "graph.pt"))


def item_features(store: LocalArtifactStore, key: str, model: str, log) -> torch.Tensor | None:
    """The day's item features for a model that takes them (PinSAGE), else None."""
    if "item_features" not in inspect.signature(MODELS[model]).parameters:
        return None
    if not store.exists("interaction_graph", key, "item_features.pt"):
        log(f"{model}: no item features for {key}; ids only")
        return None
    features = store.load_torch("interaction_graph", key, "item_features.pt")
    log(f"{model}: item features {features['columns']}")
    return features["values"] if features["columns"] else None


def previous_model(
    store: LocalArtifactStore, key: str, graph: InteractionGraph, log
) -> WarmStart | None:
    """trained_model(D-1) with its ids mapped onto D's graph, or None when there is none
    (first day, training-free model) or its graph no longer matches it."""
    prev_key = (dt.date.fromisoformat(key) - dt.timedelta(days=1)).isoformat()
    if not (
        store.exists("trained_model", prev_key, "model.pt")
        and store.exists("interaction_graph", prev_key, "graph.pt")
    ):
        return None
    state = store.load_torch("trained_model", prev_key, "model.pt")
    prev_graph = load_graph(store, prev_key)
    if "state_dict" not in state:
        return None
    if state["id_map"]["version"] != id_map_version(prev_graph.user_ids, prev_graph.item_ids):
        log(f"no warm start: trained_model({prev_key}) was fitted on another id map")
        return None
    return WarmStart(
        state,
        id_mapping(prev_graph.user_ids, graph.user_ids),
        id_mapping(prev_graph.item_ids, graph.item_ids),
        source=f"trained_model({prev_key})",
    )


@dg.asset(
    partitions_def=daily_partitions,
    deps=[interaction_graph, hard_negatives],
    group_name="model",
    kinds={"torch"},
)
def trained_model(
    context: dg.AssetExecutionContext, config: TrainSettings, artifacts: ArtifactStore
) -> dg.MaterializeResult:
    """The recommender of day D. Trained models (LightGCN, MF) learn on D's train split with
    BPR or binary loss, uniform plus curriculum hard negatives and early stopping on a
    validation slice carved from train; training-free models (popularity, GF-CF) are fitted.
    The checkpoint, its config and its id-map version are stored under the partition key."""
    check_run_config(context)
    store = artifacts.store()
    key = context.partition_key
    graph = load_graph(store, key)
    id_map = {"as_of": key, "version": id_map_version(graph.user_ids, graph.item_ids)}
    if config.model in TRAINING_FREE:
        model = fit_training_free(
            config.model, graph.train_users, graph.train_items, graph.n_users, graph.n_items
        )
        store.save_torch({**checkpoint(model), "id_map": id_map}, "trained_model", key, "model.pt")
        return dg.MaterializeResult(metadata={"model": config.model, "training_free": True})
    train_config = config.to_core()
    progress = ArtifactProgress(store, "trained_model", key)
    result = train_model(
        graph.n_users,
        graph.n_items,
        graph.train_users,
        graph.train_items,
        graph.train_last_ts,
        train_config,
        hard_pools=store.load_torch("hard_negatives", key, "pools.pt"),
        log=context.log.info,
        progress=progress if config.resume else None,
        item_features=item_features(store, key, train_config.model, context.log.info),
        warm_start=previous_model(store, key, graph, context.log.info)
        if config.warm_start
        else None,
    )
    store.save_torch(
        {
            **checkpoint(result.model),
            "train_config": dataclasses.asdict(train_config),
            "id_map": id_map,
            "history": result.history,
            "best_epoch": result.best_epoch,
            "val_recall": result.best_val_recall,
            "warm_start": result.warm_start,
        },
        "trained_model",
        key,
        "model.pt",
    )
    progress.clear()
    return dg.MaterializeResult(
        metadata={
            "model": train_config.model,
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            f"val_recall@{train_config.val_k}": result.best_val_recall,
            "train_seconds": round(result.seconds, 2),
            # Where the time went (the scaling benchmark reads these).
            "setup_seconds": round(result.setup_seconds, 2),
            "step_seconds": round(sum(r.get("step_seconds", 0.0) for r in result.history), 2),
            "validation_seconds": round(sum(r.get("val_seconds", 0.0) for r in result.history), 2),
            "resumed_from_epoch": result.resumed_from_epoch,
            **(result.warm_start or {"warm_users": 0, "warm_items": 0}),
        }
    )


def load_scorer(
    store: LocalArtifactStore, key: str, up_to_date: bool = False
) -> tuple[InteractionGraph, str, ScoreFn]:
    """(graph, model name, score function) of partition ``key``. Evaluation scores from the
    train graph (the test fold stays unseen); publication (``up_to_date``) from train ∪ test,
    everything known up to D, so a graph model's lists reflect the user's newest interactions
    (a trained model propagates over that graph, a training-free one is refitted on it)."""
    graph = load_graph(store, key)
    state = store.load_torch("trained_model", key, "model.pt")
    if state["id_map"]["version"] != id_map_version(graph.user_ids, graph.item_ids):
        raise dg.Failure(
            f"trained_model({key}) was fitted on another id map than interaction_graph({key}):"
            " re-materialise trained_model"
        )
    if up_to_date:
        graph = graph.up_to_date()
        adjacency = normalized_adjacency(
            graph.train_users, graph.train_items, graph.n_users, graph.n_items
        )
    else:
        adjacency = store.load_torch("interaction_graph", key, "adjacency.pt")
    return graph, state["model"], score_function(state, graph, adjacency)


def sample_test_users(
    graph: InteractionGraph, max_users: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The test edges of a seeded random sample of at most ``max_users`` test users (all of
    them when there are no more): the metrics are then unbiased estimates of the full ones."""
    users = torch.unique(graph.test_users)
    if max_users is None or users.numel() <= max_users:
        return graph.test_users, graph.test_items
    order = torch.randperm(users.numel(), generator=torch.Generator().manual_seed(seed))
    keep = torch.isin(graph.test_users, users[order[:max_users]])
    return graph.test_users[keep], graph.test_items[keep]


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
    context: dg.AssetExecutionContext,
    config: EvaluationSettings,
    warehouse: Warehouse,
    artifacts: ArtifactStore,
) -> dg.MaterializeResult:
    """Full-ranking evaluation on the test fold, training items excluded: Recall, NDCG,
    Precision and HitRate at K ∈ {10, 20, 50} for the model and every baseline, side by side,
    into ``ml.metrics`` and as numeric metadata (plotted over partitions in the UI)."""
    check_run_config(context)
    key = context.partition_key
    graph, model_name, score_fn = load_scorer(artifacts.store(), key)
    scorers = {model_name: score_fn}
    for baseline in dict.fromkeys([GATE_BASELINE, *config.baselines]):
        if baseline not in scorers:
            scorers[baseline] = fit_training_free(
                baseline, graph.train_users, graph.train_items, graph.n_users, graph.n_items
            ).scores
    exclude = graph.train_csr()
    test_users, test_items = sample_test_users(graph, config.max_users, config.seed)
    results = {
        name: evaluate_scorer(scorer, graph.n_items, exclude, test_users, test_items, KS)
        for name, scorer in scorers.items()
    }
    rows = [
        (model, k, metric, value)
        for model, metrics in results.items()
        for (metric, k), value in metrics.items()
    ]
    as_of = partition_date(context)
    with warehouse.session() as con:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _metrics (model VARCHAR, k INTEGER, metric VARCHAR, value DOUBLE)"
        )
        con.executemany("INSERT INTO _metrics VALUES (?, ?, ?, ?)", rows)
        replace_partition(
            con,
            "ml.metrics",
            as_of,
            "SELECT CAST(? AS DATE), model, k, metric, value FROM _metrics WHERE NOT isnan(value)",
            [as_of],
        )
    model_score = results[model_name][GATE_METRIC]
    baseline = results[GATE_BASELINE][GATE_METRIC]
    # NaN (no test users) fails; popularity cannot beat itself.
    passed = model_name != GATE_BASELINE and model_score > baseline
    metadata = {
        f"{'model' if name == model_name else name}_{metric}@{k}": float(value)
        for name, metrics in results.items()
        for (metric, k), value in metrics.items()
    }
    return dg.MaterializeResult(
        metadata={
            "model": model_name,
            "test_users": int(graph.test_users.unique().numel()),
            "evaluated_users": int(test_users.unique().numel()),
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
