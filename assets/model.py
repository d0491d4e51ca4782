"""trained_model and model_evaluation (with the blocking quality gate)."""

import math
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import dagster as dg

from assets.features import hard_negatives, interaction_graph
from assets.lib.catalog import daily_asset
from assets.lib.curves import curve_markdown, loss_line, recall_line
from assets.lib.lineage import step_day
from assets.lib.partitions import daily_partitions
from assets.lib.settings import (
    EvaluationSettings,
    SelectionSettings,
    TrainSettings,
    check_run_config,
)
from assets.lib.shard_log import ShardLog
from assets.lib.tables import CHOICE, row_count
from assets.platform.instance import shared_database_url
from assets.platform.kubernetes import gpu_op_tags
from recs_pipeline.evaluation.gate import (
    FAILED,
    GATE_CHECK,
    GATE_KEY,
    GATE_LABEL,
    GATE_METRIC,
    INSUFFICIENT,
    KS,
    METRICS,
    NO_TEST_USERS,
    PASSED,
    POPULARITY_CHOSEN,
    GateError,
)
from recs_pipeline.evaluation.selection_record import Selection, champion_line
from recs_pipeline.infra.artifacts import GRAPH, MODEL
from recs_pipeline.infra.console import progress_bar
from recs_pipeline.models.declarations import TRAINING_FREE
from resources import ArtifactStore, ComputeEngine, Warehouse

if TYPE_CHECKING:
    from recs_pipeline.steps.train import TrainedDay

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
        " publishes only that model. For a model chosen on validation, fewer test users than"
        " min_test_users, or a deficit that a one-sided paired t-test on the users' Recall@20"
        " does not find significant (gate_alpha), is insufficient evidence: a warning, and the"
        " model is published.",
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


@daily_asset(
    "model",
    kinds=["optuna"],
    deps=[interaction_graph],
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
    from recs_pipeline.evaluation.selection import daily_selection
    from recs_pipeline.steps.day import item_features, load_graph

    day = step_day(context, artifacts.store())
    store, key = day.store, day.key
    graph = load_graph(store, key, day.writer(GRAPH))
    train = TrainSettings(**_op_config(context, "trained_model")).to_core()
    features = None
    if "pinsage" in config.candidates:
        features = item_features(store, key, "pinsage", context.log.info, day.writer(GRAPH))
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
    choice = champion_line(selection, reused_from)
    context.log.info(choice)
    return dg.MaterializeResult(
        metadata={
            # The sentence: which model and why, or whose earlier choice it is (`recs run`
            # prints it).
            CHOICE: choice,
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


def _op_config(context: dg.AssetExecutionContext, op: str) -> dict:
    return ((context.run.run_config.get("ops") or {}).get(op) or {}).get("config") or {}


@daily_asset(
    "model",
    kinds=["torch"],
    deps=[interaction_graph, hard_negatives, model_selection],
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
    from recs_pipeline.steps.day import load_graph
    from recs_pipeline.steps.train import choose_model, train_day

    day = step_day(context, artifacts.store())
    store, key = day.store, day.key
    graph = load_graph(store, key, day.writer(GRAPH))
    choice = choose_model(day, config.to_core(), config.pinned())
    (context.log.warning if choice.warning else context.log.info)(choice.line)
    train_config = choice.config
    trains = train_config.model not in TRAINING_FREE
    bar = (
        progress_bar(train_config.epochs, f"train {train_config.model}", "epoch")
        if trains
        else None
    )

    def on_epoch(record: dict) -> None:
        bar.update(1)
        bar.set_postfix_str(f"loss {record['loss']:.4f}")

    trained = train_day(
        day, graph, choice, engine.engine(), warm_start=config.warm_start,
        resume=config.resume, log=context.log.info, warn=context.log.warning, on_epoch=on_epoch,
    )  # fmt: skip
    if bar is not None:
        bar.close()
    checkpoint = dg.MetadataValue.path(store.location(MODEL, key))
    return dg.MaterializeResult(metadata=trained_metadata(trained, config, checkpoint))


def trained_metadata(trained: "TrainedDay", config: TrainSettings, checkpoint) -> dict:
    """What trained_model shows: the model, how it was chosen and its fingerprint; for a trained
    one its run (best epoch, validation, the curve, the key hyperparameters, where time went)."""
    train_config = trained.config
    if trained.result is None:
        return {
            "model": train_config.model,
            "chosen_by": trained.chosen_by,
            "training_free": True,
            "settings": dg.MetadataValue.json(trained.fitted.params()),
            "model_sha256": trained.stamp.sha256,
            "checkpoint": checkpoint,
        }
    result, k = trained.result, train_config.val_k
    best = next((r for r in result.history if r["epoch"] == result.best_epoch), {})
    # What was trained: the champion's model and searched settings where selection chose them.
    run_config = config.model_dump() | {
        "model": train_config.model,
        "learning_rate": train_config.lr,
        "l2": train_config.l2,
        "layers": train_config.layers,
    }
    return {
        "model": train_config.model,
        "chosen_by": trained.chosen_by,
        "model_sha256": trained.stamp.sha256,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        f"val_recall@{k}": rounded(result.best_val_recall),
        f"val_ndcg@{k}": optional(best.get("val_ndcg")),
        "parameter_count": sum(p.numel() for p in result.model.parameters()),
        "checkpoint": checkpoint,
        "hyperparameters": dg.MetadataValue.json(
            {name: run_config[name] for name in KEY_HYPERPARAMETERS if name in run_config}
        ),
        # The curve within this run: sparklines in the table, then the table, then a chart (the
        # UI's Plots chart an entry across materializations, not within one).
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
        "training_workers": trained.workers,
        **(result.warm_start or {"warm_users": 0, "warm_items": 0}),
    }


@daily_asset(
    "model",
    writes=["ml.metrics"],
    kinds=["torch"],
    deps=[trained_model],
    check_specs=[BEATS_POPULARITY, BEATS_EVERY_BASELINE],
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
    from recs_pipeline.steps.evaluate import evaluate_day

    compute = engine.engine()
    shard_log = ShardLog(context, compute, "evaluation")
    day = evaluate_day(
        step_day(context, artifacts.store()), config.to_core(), compute, warehouse.session,
        context.run_id, on_shard=shard_log,
    )  # fmt: skip
    results, model_name, gate, key = day.results, day.model, day.gate, context.partition_key
    # Recall@20 and NDCG@20 lead, each baseline's score beside the lift over it; then what was
    # evaluated; then every other metric@K (the UI's metadata table keeps this order; its Plots
    # sort by label, where the capitalised headline sorts first too).
    evaluated = dg.MaterializeResult(
        metadata={
            **headline_metrics(results, model_name),
            "model": model_name,
            "gate": gate.verdict,
            "evaluated_users": day.evaluated_users,
            "test_users": int(day.graph.test_users.unique().numel()),
            "comparison": comparison_table(results, model_name),
            "model_sha256": day.fingerprint,
            "config_hash": day.config_hash,
            **row_count(day.metric_rows),
            **other_metrics(results, model_name),
            **shard_log.metadata(),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=GATE_CHECK,
                passed=gate.verdict == PASSED,
                # No (or too few) test users, or a deficit within noise, is no verdict on the
                # model: a warning, which does not block recommendations (it publishes the
                # popularity fallback, or the validation champion; see publishable()).
                severity=dg.AssetCheckSeverity.WARN
                if gate.verdict in (NO_TEST_USERS, INSUFFICIENT, POPULARITY_CHOSEN)
                else dg.AssetCheckSeverity.ERROR,
                metadata={
                    **gate.score_metadata(),
                    "lift": None if gate.lift is None else rounded(gate.lift),
                    # How likely popularity's lead is noise (one-sided paired t-test).
                    "p_worse": None if gate.p_worse is None else round(gate.p_worse, 4),
                    "evaluated_users": day.evaluated_users,
                    "model_sha256": day.fingerprint,
                },
                description=gate.summary,
            ),
            beats_every_baseline(results, model_name, day.evaluated_users),
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
