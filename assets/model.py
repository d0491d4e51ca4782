"""trained_model and model_evaluation (with the blocking quality gate)."""

import dataclasses
import math
import warnings
from collections.abc import Iterator

import dagster as dg

from assets.features import hard_negatives, interaction_graph
from assets.lib.catalog import OWNERS, tags
from assets.lib.curves import curve_markdown, loss_line, recall_line
from assets.lib.lineage import expected_writer
from assets.lib.partitions import daily_partitions, partition_date
from assets.lib.settings import (
    EvaluationSettings,
    SelectionSettings,
    TrainSettings,
    check_run_config,
)
from assets.lib.shard_log import ShardLog
from assets.lib.tables import row_count, table_metadata
from assets.platform.instance import shared_database_url
from assets.platform.kubernetes import gpu_op_tags
from recs_pipeline.evaluation.gate import (
    FAILED,
    GATE_BASELINE,
    GATE_CHECK,
    GATE_KEY,
    GATE_LABEL,
    GATE_METRIC,
    INSUFFICIENT,
    KS,
    NO_TEST_USERS,
    PASSED,
    POPULARITY_CHOSEN,
    GateError,
    gate_verdict,
    record_gate,
)
from recs_pipeline.evaluation.metrics import METRICS, evaluate_scorers
from recs_pipeline.evaluation.selection import Selection, daily_selection
from recs_pipeline.graph.bipartite import id_map_version
from recs_pipeline.infra.artifacts import HARD_NEGATIVES, MODEL, SELECTION, SPLIT, ArtifactProgress
from recs_pipeline.infra.console import progress_bar
from recs_pipeline.infra.warehouse import replace_partition
from recs_pipeline.models import TRAINING_FREE, checkpoint, fit_training_free
from recs_pipeline.steps.day import (
    config_hash,
    item_features,
    load_graph,
    load_model,
    load_scorer,
    previous_model,
    sample_test_users,
)
from recs_pipeline.training import train_model
from recs_pipeline.training.data_parallel import rank_log, train_data_parallel
from resources import ArtifactStore, ComputeEngine, Warehouse

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # a partitioned check spec is a preview feature
    BEATS_POPULARITY = dg.AssetCheckSpec(
        GATE_CHECK,
        asset="model_evaluation",
        partitions_def=daily_partitions,
        blocking=True,
        description="Quality gate: the model's Recall@20 must exceed the popularity"
        " baseline's; when it does not, nothing is published for the day. Each result is the"
        " day's (its partition) and names both scores and the lift. A day without test users"
        " cannot be evaluated: the check warns and the popularity fallback is published. The"
        " verdict is recorded with the fingerprint of the evaluated model.pt; recommendations"
        " publishes only that model. With fewer test users than min_test_users the verdict is"
        " insufficient evidence: a warning, and the model chosen on validation is published.",
    )
    BEATS_EVERY_BASELINE = dg.AssetCheckSpec(
        "beats_every_baseline",
        asset="model_evaluation",
        partitions_def=daily_partitions,
        blocking=False,
        description="The model's test Recall@20 against every baseline's (popularity, GF-CF,"
        " ...), with its lift over each: a warning when any baseline scores as high. Not a"
        " gate: the model was chosen on validation; this reports how that choice did on the"
        " test period.",
    )


# The hyperparameters trained_model shows (run-config names; the checkpoint keeps them all).
KEY_HYPERPARAMETERS = (
    "model", "dim", "layers", "loss", "learning_rate", "l2", "batch_size", "epochs", "patience",
    "eval_every", "uniform_negatives", "shared_negatives", "max_hard_negatives", "init",
    "temperature", "distill", "weighted", "warm_start", "seed",
)  # fmt: skip


def training_history(history: list[dict], best_epoch: int, k: int) -> dg.TableMetadataValue:
    """The per-epoch curve, the best epoch (the weights kept) marked. What a reader needs first
    leads (``best`` beside ``epoch``, where no wide column pushes it off the screen), the
    timing last."""
    columns = [
        dg.TableColumn("epoch", "int"),
        dg.TableColumn("best", "bool", description="the epoch whose weights are kept"),
        dg.TableColumn("loss", "float", description="mean training loss of the epoch"),
        dg.TableColumn(f"val_recall@{k}", "float", description="validation (empty: not run)"),
        dg.TableColumn(f"val_ndcg@{k}", "float", description="validation (empty: not run)"),
        dg.TableColumn(
            "lr", "float", description="learning rate of the epoch (lower after a plateau decay)"
        ),
        dg.TableColumn("hard_negatives", "int", description="hard negatives per positive"),
        dg.TableColumn("seconds", "float", description="training steps and validation"),
    ]
    rows = [
        dg.TableRecord(
            {
                "epoch": record["epoch"],
                "best": record["epoch"] == best_epoch,
                "loss": rounded(record["loss"]),
                f"val_recall@{k}": optional(record.get("val_recall")),
                f"val_ndcg@{k}": optional(record.get("val_ndcg")),
                "lr": optional_rate(record.get("lr")),
                "hard_negatives": record.get("hard_negatives"),
                "seconds": round(
                    record.get("step_seconds", 0.0) + record.get("val_seconds", 0.0), 2
                ),
            }
        )
        for record in history
    ]
    return dg.MetadataValue.table(rows, schema=dg.TableSchema(columns=columns))


def optional_rate(value: float | None) -> float | None:
    """A learning rate in four significant digits (1e-05 would round to 0 at four decimals)."""
    return None if value is None else float(f"{float(value):.4g}")


def optional(value: float | None) -> float | None:
    return None if value is None else rounded(value)


def rounded(value: float) -> float:
    """Four decimals: what the UI shows of a metric."""
    return round(float(value), 4)


# The metrics a reader looks for first: named as the papers do, they lead the metadata table
# (insertion order) and the Plots (which the UI sorts by label: capitals before lowercase).
HEADLINE = (("recall", 20), ("ndcg", 20))
METRIC_NAMES = {"recall": "Recall", "ndcg": "NDCG", "precision": "Precision", "hitrate": "HitRate"}


def headline_label(metric: str, k: int) -> str:
    return f"{METRIC_NAMES[metric]}@{k}"


def lift_percent(model: float, baseline: float) -> float | None:
    """The model's lift over a baseline in percent (12.5: the model scores 12.5% more), two
    decimals; None where the baseline scores 0 or either score is undefined."""
    if math.isnan(model) or not baseline > 0:
        return None
    return round((model / baseline - 1) * 100, 2)


def baselines_of(results: dict, model_name: str) -> list[str]:
    return [name for name in results if name != model_name]


def _score(results: dict, name: str, metric: str, k: int) -> float:
    return float(results[name].get((metric, k), math.nan))


def headline_metrics(results: dict, model_name: str) -> dict:
    """The model's Recall@20 and NDCG@20, then each baseline's score (``gfcf_recall@20``)
    beside the model's lift over it in percent (``lift_vs_gfcf_recall@20_%``). ``results``:
    {scorer: {(metric, k): value}}, the model's and the baselines' on the test fold."""
    entries = {
        headline_label(metric, k): rounded(_score(results, model_name, metric, k))
        for metric, k in HEADLINE
    }
    for baseline in baselines_of(results, model_name):
        for metric, k in HEADLINE:
            score = _score(results, baseline, metric, k)
            entries[f"{baseline}_{metric}@{k}"] = rounded(score)
            entries[f"lift_vs_{baseline}_{metric}@{k}_%"] = lift_percent(
                _score(results, model_name, metric, k), score
            )
    return entries


def other_metrics(results: dict, model_name: str) -> dict:
    """Every other metric@K: the model's (``model_precision@10``, ...) first, then each
    baseline's under its name (``popularity_precision@10``, ...)."""
    return {
        f"{'model' if name == model_name else name}_{metric}@{k}": rounded(
            _score(results, name, metric, k)
        )
        for name in results
        for metric in METRICS
        for k in KS
        if (metric, k) not in HEADLINE
    }


def comparison_table(results: dict, model_name: str) -> dg.TableMetadataValue:
    """One row per metric@K: the model's value, then each baseline's beside the model's lift
    over it in percent (empty where the baseline scores 0)."""
    baselines = baselines_of(results, model_name)
    columns = [dg.TableColumn("metric", "string", description="metric@K on the test fold")]
    columns.append(dg.TableColumn("model", "float", description=f"the model ({model_name})"))
    for b in baselines:
        columns.append(dg.TableColumn(b, "float", description=f"baseline {b}"))
        columns.append(
            dg.TableColumn(
                f"lift_vs_{b}_%",
                "float",
                description=f"the model's lift over {b} in percent (model / {b} - 1, x 100)",
            )
        )
    rows = []
    for metric in METRICS:
        for k in KS:
            model = _score(results, model_name, metric, k)
            row = {"metric": f"{metric}@{k}", "model": rounded(model)}
            for b in baselines:
                row[b] = rounded(_score(results, b, metric, k))
                row[f"lift_vs_{b}_%"] = lift_percent(model, _score(results, b, metric, k))
            rows.append(dg.TableRecord(row))
    return dg.MetadataValue.table(rows, schema=dg.TableSchema(columns=columns))


def leaderboard(selection: Selection) -> dg.TableMetadataValue:
    """The best trial of each candidate, best first: what the choice was made from."""
    k = selection.k
    columns = [
        dg.TableColumn("model", "string"),
        dg.TableColumn(f"val_recall@{k}", "float", description="validation slice of train"),
        dg.TableColumn(f"val_ndcg@{k}", "float", description="validation slice of train"),
        dg.TableColumn("settings", "string", description="the trial's searched settings"),
        dg.TableColumn("champion", "bool"),
    ]
    rows = [
        dg.TableRecord(
            {
                "model": trial.model,
                f"val_recall@{k}": optional(trial.recall),
                f"val_ndcg@{k}": optional(trial.ndcg),
                "settings": ", ".join(f"{n}={v:.4g}" if isinstance(v, float) else f"{n}={v}"
                                      for n, v in trial.params.items()) or "-",
                "champion": trial.model == selection.model and trial.params == selection.params,
            }
        )
        for trial in selection.leaderboard()
    ]  # fmt: skip
    return dg.MetadataValue.table(rows, schema=dg.TableSchema(columns=columns))


@dg.asset(
    partitions_def=daily_partitions,
    deps=[interaction_graph],
    group_name="model",
    kinds={"optuna"},
    owners=OWNERS,
    tags=tags("model"),
)
def model_selection(
    context: dg.AssetExecutionContext,
    config: SelectionSettings,
    artifacts: ArtifactStore,
    engine: ComputeEngine,
) -> dg.MaterializeResult:
    """Which scorer serves day D, with which settings, chosen on the team's own log: every
    candidate (popularity, GF-CF, dnfilter and the trained models, each with the search
    space its model declares) is scored on a validation slice carved from D's train window —
    each chosen user's latest train edges — never on the test period. Optuna's TPE sampler
    searches the candidates' settings within `budget_minutes`; a full search runs every
    `every_days` days, the days between reuse the latest choice made as of that day or
    earlier. The champion feeds trained_model unless its run config pins a model. The
    metadata's `leaderboard` shows each candidate's best trial. The study lives in the shared
    instance's PostgreSQL where there is one (else a journal beside the artifact); there, with
    the engine's kind `ray` and `workers` > 1, that many Ray workers run its trials in parallel."""
    check_run_config(context)
    store = artifacts.store()
    key = context.partition_key
    graph_run = expected_writer(context, "interaction_graph")
    graph = load_graph(store, key, graph_run)
    train = TrainSettings(**_op_config(context, "trained_model")).to_core()
    features = None
    if "pinsage" in config.candidates:
        features = item_features(store, key, "pinsage", context.log.info, graph_run)
    selection, reused_from = daily_selection(
        store,
        key,
        graph,
        config.to_core(),
        train,
        features,
        log=context.log.info,
        shared_database=shared_database_url(),
        engine=engine.engine(),
    )
    context.log.info(champion_line(selection, reused_from))
    return dg.MaterializeResult(
        metadata={
            "champion": selection.model,
            "champion_settings": dg.MetadataValue.json(selection.params),
            f"val_recall@{selection.k}": optional(selection.recall),
            f"val_ndcg@{selection.k}": optional(selection.ndcg),
            "leaderboard": leaderboard(selection),
            "trials": len(selection.trials),
            "validation_users": selection.validation_users,
            "search_seconds": round(selection.seconds, 2),
            "reused_from": reused_from or "-",
            **({"fallback": selection.fallback} if selection.fallback else {}),
        }
    )


def champion_line(selection: Selection, reused_from: str | None = None) -> str:
    """One sentence: which scorer was chosen and why."""
    if selection.fallback:
        return f"model selection: {selection.fallback}"
    board = selection.leaderboard()
    runner = next((t for t in board if t.model != selection.model), None)
    why = (
        f"validation Recall@{selection.k} {selection.recall:.4f}"
        + (f" vs {runner.model}'s {runner.recall:.4f}" if runner else "")
        + f", best of {len(selection.trials)} trials on {selection.validation_users} users"
    )
    source = f" (the choice of {reused_from})" if reused_from else ""
    return f"model selection: {selection.model} chosen{source}: {why}"


def _op_config(context: dg.AssetExecutionContext, op: str) -> dict:
    return ((context.run.run_config.get("ops") or {}).get(op) or {}).get("config") or {}


@dg.asset(
    partitions_def=daily_partitions,
    deps=[interaction_graph, hard_negatives, model_selection],
    group_name="model",
    kinds={"torch"},
    owners=OWNERS,
    tags=tags("model"),
    # On Kubernetes with RECS_K8S_GPU=1: the step's pod on a GPU node
    # (assets/platform/kubernetes.py).
    op_tags=gpu_op_tags(),
)
def trained_model(
    context: dg.AssetExecutionContext,
    config: TrainSettings,
    artifacts: ArtifactStore,
    engine: ComputeEngine,
) -> dg.MaterializeResult:
    """The recommender of day D. A trained model (LightGCN, NGCF, PinSAGE, MF) learns on D's
    train split with BPR, binary or softmax loss, uniform or shared negatives plus curriculum
    hard negatives, and early stopping on a validation slice carved from train, warm-started
    from D-1's model and resumable; a training-free model (popularity, GF-CF and the others of
    `recs_pipeline.models.TRAINING_FREE`) is fitted. The checkpoint (`checkpoint` in the
    metadata: the path of model.pt), its config and its id-map version are stored under the
    partition key. The metadata shows the training history (one row per epoch, the best epoch,
    whose weights are kept, marked), the loss and validation curves over the epochs (as
    sparklines, and as a chart under `training_curve`), the key hyperparameters, the parameter
    count and the best validation Recall and NDCG. With the engine's `workers` > 1 (or kind `ray`) training is
    data parallel on that many workers (`recs_pipeline.training.data_parallel`): the same
    result as one process, the per-epoch log lines arriving when training ends."""
    check_run_config(context)
    store = artifacts.store()
    key = context.partition_key
    graph_run = expected_writer(context, "interaction_graph")
    graph = load_graph(store, key, graph_run)
    id_map = {"as_of": key, "version": id_map_version(graph.user_ids, graph.item_ids)}
    base = config.to_core()
    # How the model was chosen: the gate judges a champion of a search on too few test users
    # as insufficient evidence, but holds a pinned or default model to popularity.
    chosen_by = "run config" if config.pinned() else "default"
    if config.pinned():
        context.log.info(f"model pinned by the run config: {base.model}")
    elif store.has(SELECTION, key):
        selection = Selection.from_dict(
            store.get(SELECTION, key, expected_writer(context, "model_selection"))["selection"]
        )
        chosen_by = "default" if selection.fallback else "model_selection"
        context.log.info(champion_line(selection))
        # The champion's settings: a training-free model's own (model_params, checked against
        # its declaration), a trained model's TrainConfig fields.
        if selection.model in TRAINING_FREE:
            base = dataclasses.replace(
                base, model=selection.model, model_params=dict(selection.params) or None
            )
        else:
            base = dataclasses.replace(base, model=selection.model, **selection.params)
    else:
        context.log.warning(
            f"no model_selection for {key}: {base.model} (the default) is trained; materialise"
            " model_selection first to train the day's champion"
        )
    if base.model in TRAINING_FREE:
        model = fit_training_free(
            base.model,
            graph.train_users,
            graph.train_items,
            graph.n_users,
            graph.n_items,
            **(base.model_params or {}),
        )
        stamp = store.put(
            MODEL, key, {**checkpoint(model), "id_map": id_map, "chosen_by": chosen_by}
        )
        return dg.MaterializeResult(
            metadata={
                "model": base.model,
                "chosen_by": chosen_by,
                "training_free": True,
                "settings": dg.MetadataValue.json(model.params()),
                "model_sha256": stamp.sha256,
                "checkpoint": dg.MetadataValue.path(store.location(MODEL, key)),
            }
        )
    train_config = base
    progress = ArtifactProgress(store, key, log=context.log.warning)
    bar = progress_bar(train_config.epochs, f"train {train_config.model}", "epoch")

    def on_epoch(record: dict) -> None:
        bar.update(1)
        bar.set_postfix_str(f"loss {record['loss']:.4f}")

    inputs = {
        "hard_pools": store.get(HARD_NEGATIVES, key, expected_writer(context, "hard_negatives")),
        "item_features": item_features(store, key, train_config.model, context.log.info, graph_run),
        "warm_start": previous_model(store, key, graph, context.log.warning)
        if config.warm_start
        else None,
    }
    compute = engine.engine()
    if compute.kind == "local" and compute.workers == 1:
        result = train_model(
            graph, train_config, log=context.log.info,
            progress=progress if config.resume else None, on_epoch=on_epoch, **inputs,
        )  # fmt: skip
    else:
        # Rank 0 saves the progress, through a store whose warnings go to the rank's log.
        result = train_data_parallel(
            compute, graph, train_config, log=context.log.info,
            progress=ArtifactProgress(store, key, log=rank_log) if config.resume else None,
            **inputs,
        )  # fmt: skip
        for record in result.history[result.resumed_from_epoch :]:  # the bar catches up at once
            on_epoch(record)
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
            "chosen_by": chosen_by,
        },
    )
    progress.clear()
    k = train_config.val_k
    best = next((r for r in result.history if r["epoch"] == result.best_epoch), {})
    # What was trained: the champion's model and searched settings where selection chose them.
    run_config = config.model_dump() | {
        "model": train_config.model,
        "learning_rate": train_config.lr,
        "l2": train_config.l2,
        "layers": train_config.layers,
    }
    return dg.MaterializeResult(
        metadata={
            "model": train_config.model,
            "chosen_by": chosen_by,
            "model_sha256": stamp.sha256,
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            f"val_recall@{k}": rounded(result.best_val_recall),
            f"val_ndcg@{k}": optional(best.get("val_ndcg")),
            "parameter_count": sum(p.numel() for p in result.model.parameters()),
            "checkpoint": dg.MetadataValue.path(store.location(MODEL, key)),
            "hyperparameters": dg.MetadataValue.json(
                {name: run_config[name] for name in KEY_HYPERPARAMETERS if name in run_config}
            ),
            # The curve within this run: sparklines in the table, then the table, then a
            # chart (the UI's Plots chart an entry across materializations, not within one).
            "loss_curve": loss_line(result.history),
            f"val_recall@{k}_curve": recall_line(result.history, result.best_epoch),
            "training_history": training_history(result.history, result.best_epoch, k),
            "training_curve": curve_markdown(result.history, result.best_epoch, k),
            "train_seconds": round(result.seconds, 2),
            # Where the time went (the scaling benchmark reads these).
            "setup_seconds": round(result.setup_seconds, 2),
            "step_seconds": round(sum(r.get("step_seconds", 0.0) for r in result.history), 2),
            "validation_seconds": round(sum(r.get("val_seconds", 0.0) for r in result.history), 2),
            "resumed_from_epoch": result.resumed_from_epoch,
            "training_workers": compute.workers,
            **(result.warm_start or {"warm_users": 0, "warm_items": 0}),
        }
    )


@dg.asset(
    partitions_def=daily_partitions,
    deps=[trained_model],
    pool="duckdb",
    group_name="model",
    kinds={"duckdb", "torch"},
    metadata=table_metadata("ml.metrics"),
    check_specs=[BEATS_POPULARITY, BEATS_EVERY_BASELINE],
    owners=OWNERS,
    tags=tags("model"),
)
def model_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationSettings,
    warehouse: Warehouse,
    artifacts: ArtifactStore,
    engine: ComputeEngine,
) -> Iterator[dg.MaterializeResult]:
    """Full-ranking evaluation on the test fold, training items excluded: Recall, NDCG,
    Precision and HitRate at K ∈ {10, 20, 50} for the model and every baseline, side by side,
    into `ml.metrics`. The metadata leads with the model's `Recall@20` and `NDCG@20`, each
    baseline's score beside them (`gfcf_recall@20`) with the model's lift over it in percent
    (`lift_vs_gfcf_recall@20_%`); the `comparison` table sets the model beside every baseline
    at every metric@K with the lifts; the other numbers follow (4 decimals, the model's
    `model_*`, then each baseline's `<baseline>_*`), plotted over partitions under the asset's
    Overview → Metadata → Plots. The rows replace only this model and configuration's earlier evaluation of the
    day: other models' and configurations' rows stay beside them. The ranking runs in the
    engine's shards of test users (`shard_runs`); the metrics come from the merged lists."""
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
    compute = engine.engine()
    shard_log = ShardLog(context, compute, "evaluation")
    with compute.session():
        results, _ = evaluate_scorers(
            scorers,
            graph.n_items,
            exclude,
            test_users,
            test_items,
            KS,
            engine=compute,
            on_shard=shard_log,
        )
    rows = [
        (model, k, metric, value)
        for model, metrics in results.items()
        for (metric, k), value in metrics.items()
    ]
    as_of = partition_date(context)
    # The split's settings are part of the key: the same model under another window or test
    # period is another evaluation, kept beside this one.
    split = store.get(SPLIT, key, expected_writer(context, "interaction_split"))["config"]
    evaluation = {"evaluated_model": model_name, "config_hash": config_hash(model[0], split)}
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
        # The partition's rows: this evaluation's and the day's other evaluations'.
        (metric_rows,) = con.execute(
            "SELECT count(*) FROM ml.metrics WHERE as_of_date = ?", [as_of]
        ).fetchone()
    evaluated_users = int(test_users.unique().numel())
    gate = gate_verdict(
        model_name,
        scorer.fingerprint,
        float(results[model_name][GATE_METRIC]),
        float(results[GATE_BASELINE][GATE_METRIC]),
        evaluated_users,
        config.to_core().min_test_users,
        chosen_on_validation=model[0].get("chosen_by") == "model_selection",
    )
    # Publication reads this record, not the check event: a run that selects recommendations
    # alone, or after a retrain, is refused unless this verdict names the current model.pt.
    record_gate(store, key, gate)
    # Recall@20 and NDCG@20 lead, each baseline's score beside the lift over it; then what was
    # evaluated; then every other metric@K (the UI's metadata table keeps this order; its Plots
    # sort by label, where the capitalised headline sorts first too).
    evaluated = dg.MaterializeResult(
        metadata={
            **headline_metrics(results, model_name),
            "model": model_name,
            "gate": gate.verdict,
            "evaluated_users": evaluated_users,
            "test_users": int(graph.test_users.unique().numel()),
            "comparison": comparison_table(results, model_name),
            "model_sha256": scorer.fingerprint,
            "config_hash": evaluation["config_hash"],
            **row_count(metric_rows),
            **other_metrics(results, model_name),
            **shard_log.metadata(),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=GATE_CHECK,
                passed=gate.verdict == PASSED,
                # No (or too few) test users is no verdict on the model: a warning, which does
                # not block recommendations (it publishes the popularity fallback, or the
                # validation champion with too few users; see publishable()).
                severity=dg.AssetCheckSeverity.WARN
                if gate.verdict in (NO_TEST_USERS, INSUFFICIENT, POPULARITY_CHOSEN)
                else dg.AssetCheckSeverity.ERROR,
                metadata={
                    **gate.score_metadata(),
                    "lift": None if gate.lift is None else rounded(gate.lift),
                    "evaluated_users": evaluated_users,
                    "model_sha256": scorer.fingerprint,
                },
                description=gate.summary,
            ),
            beats_every_baseline(results, model_name, evaluated_users),
        ],
    )
    yield evaluated
    if gate.verdict == FAILED:
        # The evaluation and both checks are recorded; the step then stops the chain with the
        # verdict's sentence (what the run page shows) instead of the blocking check's error.
        raise gate_stop(key, GateError(gate.refusal(key), gate))


def beats_every_baseline(
    results: dict, model_name: str, evaluated_users: int
) -> dg.AssetCheckResult:
    """The model's test Recall@20 against every baseline's, with its lift over each; a warning
    (never blocking) when a baseline scores as high: the selection chose on validation, and
    this says how that choice fared on the test period."""
    model = float(results[model_name][GATE_METRIC])
    baselines = {name: float(r[GATE_METRIC]) for name, r in results.items() if name != model_name}
    lifts = {
        f"lift_vs_{name}": rounded(model / score - 1) if score > 0 else None
        for name, score in baselines.items()
    }
    beaten = [name for name, score in baselines.items() if not model > score]
    if evaluated_users == 0:
        description = "no test users on this day: nothing to compare"
    elif beaten:
        description = f"{model_name}'s test {GATE_LABEL} {model:.4f} does not beat " + ", ".join(
            f"{name} ({baselines[name]:.4f})" for name in beaten
        )
    else:
        description = (
            f"{model_name}'s test {GATE_LABEL} {model:.4f} beats every baseline: "
            + ", ".join(f"{name} {score:.4f}" for name, score in baselines.items())
        )
    return dg.AssetCheckResult(
        check_name="beats_every_baseline",
        passed=evaluated_users > 0 and not beaten,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            f"model_{GATE_KEY}": rounded(model),
            **{f"{n}_{GATE_KEY}": rounded(v) for n, v in baselines.items()},
            **lifts,
        },
        description=description,
    )


def gate_stop(key: str, error: GateError) -> dg.Failure:
    """The failure of a step the quality gate stops on day ``key`` (model_evaluation, when the
    model fails the gate; recommendations, when it refuses to publish a model.pt): the gate's
    sentence as its description, which the run page shows first, its scores as metadata."""
    result = error.result
    if result is None:  # no verdict for this model.pt: the refusal says why
        return dg.Failure(description=str(error), metadata={"partition": key}, allow_retries=False)
    return dg.Failure(
        description=str(error),
        metadata={
            "verdict": result.verdict,
            "model": result.model,
            **result.score_metadata(),
            "lift_%": None if result.lift is None else round(result.lift * 100, 2),
            "evaluated_users": result.evaluated_users,
            "model_sha256": result.model_sha256,
            "check": f"model_evaluation → Checks → {GATE_CHECK}",
        },
        allow_retries=False,
    )
