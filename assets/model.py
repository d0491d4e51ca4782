"""trained_model and model_evaluation (with the blocking quality gate)."""

import dataclasses

import dagster as dg

from assets.catalog import OWNERS, tags
from assets.features import hard_negatives, interaction_graph
from assets.lineage import expected_writer
from assets.partitions import daily_partitions, partition_date
from assets.settings import EvaluationSettings, TrainSettings, check_run_config
from recs_pipeline.artifacts import HARD_NEGATIVES, MODEL, ArtifactProgress
from recs_pipeline.console import progress_bar
from recs_pipeline.daily import (  # noqa: F401  (load_scorer, sample_test_users: re-exported)
    GATE_BASELINE,
    NO_TEST_USERS,
    PASSED,
    config_hash,
    gate_verdict,
    item_features,
    load_graph,
    load_model,
    load_scorer,
    previous_model,
    record_gate,
    sample_test_users,
)
from recs_pipeline.graph import id_map_version
from recs_pipeline.metrics import evaluate_scorer
from recs_pipeline.models import TRAINING_FREE, checkpoint, fit_training_free
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
    owners=OWNERS,
    tags=tags("model"),
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
    graph_run = expected_writer(context, "interaction_graph")
    graph = load_graph(store, key, graph_run)
    id_map = {"as_of": key, "version": id_map_version(graph.user_ids, graph.item_ids)}
    if config.model in TRAINING_FREE:
        model = fit_training_free(
            config.model, graph.train_users, graph.train_items, graph.n_users, graph.n_items
        )
        stamp = store.put(MODEL, key, {**checkpoint(model), "id_map": id_map})
        return dg.MaterializeResult(
            metadata={"model": config.model, "training_free": True, "model_sha256": stamp.sha256}
        )
    train_config = config.to_core()
    progress = ArtifactProgress(store, key, log=context.log.warning)
    bar = progress_bar(train_config.epochs, f"train {train_config.model}", "epoch")

    def on_epoch(record: dict) -> None:
        bar.update(1)
        bar.set_postfix_str(f"loss {record['loss']:.4f}")

    result = train_model(
        graph.n_users,
        graph.n_items,
        graph.train_users,
        graph.train_items,
        graph.train_last_ts,
        train_config,
        hard_pools=store.get(HARD_NEGATIVES, key, expected_writer(context, "hard_negatives")),
        log=context.log.info,
        progress=progress if config.resume else None,
        item_features=item_features(store, key, train_config.model, context.log.info, graph_run),
        weights=graph.train_weight,
        warm_start=previous_model(store, key, graph, context.log.warning)
        if config.warm_start
        else None,
        on_epoch=on_epoch,
    )
    bar.close()
    # The checksum of model.pt is the model's fingerprint: the gate records the one it
    # evaluated and publication refuses any other.
    stamp = store.put(
        MODEL,
        key,
        {
            **checkpoint(result.model),
            "train_config": dataclasses.asdict(train_config),
            "id_map": id_map,
            "history": result.history,
            "best_epoch": result.best_epoch,
            "val_recall": result.best_val_recall,
            "warm_start": result.warm_start,
        },
    )
    progress.clear()
    return dg.MaterializeResult(
        metadata={
            "model": train_config.model,
            "model_sha256": stamp.sha256,
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
            " baseline's; when it does not, nothing is published for the day. A day without"
            " test users cannot be evaluated: the check warns and the popularity fallback is"
            " published. The verdict is recorded with the fingerprint of the evaluated model.pt;"
            " recommendations publishes only that model.",
        )
    ],
    owners=OWNERS,
    tags=tags("model"),
)
def model_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationSettings,
    warehouse: Warehouse,
    artifacts: ArtifactStore,
) -> dg.MaterializeResult:
    """Full-ranking evaluation on the test fold, training items excluded: Recall, NDCG,
    Precision and HitRate at K ∈ {10, 20, 50} for the model and every baseline, side by side,
    into ``ml.metrics`` and as numeric metadata (plotted over partitions in the UI). The rows
    replace only this model and configuration's earlier evaluation of the day: other models'
    and configurations' rows stay beside them."""
    check_run_config(context)
    key = context.partition_key
    store = artifacts.store()
    model = load_model(store, key, expected_writer(context, "trained_model"))
    scorer = load_scorer(
        store,
        key,
        model=model,
        expect_graph_run=expected_writer(context, "interaction_graph"),
    )
    graph, model_name = scorer.graph, scorer.model
    scorers = {model_name: scorer.score_fn}
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
    evaluation = {"evaluated_model": model_name, "config_hash": config_hash(model[0])}
    with warehouse.session() as con:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _metrics (model VARCHAR, k INTEGER, metric VARCHAR, value DOUBLE)"
        )
        con.executemany("INSERT INTO _metrics VALUES (?, ?, ?, ?)", rows)
        replace_partition(
            con,
            "ml.metrics",
            as_of,
            """SELECT CAST(? AS DATE), model, k, metric, value, ?, ?, ?, ?,
                      now()::TIMESTAMP
               FROM _metrics WHERE NOT isnan(value)""",
            [as_of, *evaluation.values(), scorer.fingerprint, context.run_id],
            within=evaluation,
        )
    evaluated_users = int(test_users.unique().numel())
    gate = gate_verdict(
        model_name,
        scorer.fingerprint,
        float(results[model_name][GATE_METRIC]),
        float(results[GATE_BASELINE][GATE_METRIC]),
        evaluated_users,
    )
    # Publication reads this record, not the check event: a run that selects recommendations
    # alone, or after a retrain, is refused unless this verdict names the current model.pt.
    record_gate(store, key, gate)
    metadata = {
        f"{'model' if name == model_name else name}_{metric}@{k}": float(value)
        for name, metrics in results.items()
        for (metric, k), value in metrics.items()
    }
    return dg.MaterializeResult(
        metadata={
            "model": model_name,
            "test_users": int(graph.test_users.unique().numel()),
            "evaluated_users": evaluated_users,
            "gate": gate.verdict,
            "model_sha256": scorer.fingerprint,
            "config_hash": evaluation["config_hash"],
            **metadata,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="beats_popularity",
                passed=gate.verdict == PASSED,
                # No test users is no verdict on the model: a warning, which does not block
                # recommendations (it publishes the popularity fallback, see publishable()).
                severity=dg.AssetCheckSeverity.WARN
                if gate.verdict == NO_TEST_USERS
                else dg.AssetCheckSeverity.ERROR,
                metadata={
                    "model_recall@20": gate.model_score,
                    "popularity_recall@20": gate.baseline_score,
                    "evaluated_users": evaluated_users,
                    "model_sha256": scorer.fingerprint,
                },
                description=gate.description,
            )
        ],
    )
