"""``model_evaluation``'s day: the day's model and every baseline ranked over the whole
catalogue for a sample of test users, the metrics written to ``ml.metrics``, and the quality
gate's verdict recorded beside the model's fingerprint."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Callable

import duckdb

from recs_pipeline.evaluation.config import EvaluationConfig
from recs_pipeline.evaluation.gate import (
    GATE_BASELINE,
    GATE_METRIC,
    KS,
    GateResult,
    gate_verdict,
    paired_p_worse,
    record_gate,
)
from recs_pipeline.evaluation.metrics import evaluate_scorers
from recs_pipeline.graph.bipartite import InteractionGraph
from recs_pipeline.infra.artifacts import GRAPH, MODEL, SPLIT, DayArtifacts
from recs_pipeline.infra.engine import Engine
from recs_pipeline.infra.warehouse import replace_partition
from recs_pipeline.models import fit_training_free
from recs_pipeline.steps.day import config_hash, load_model, load_scorer, sample_test_users

Session = Callable[[], contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]]
# One scorer's metrics: {(metric, k): value}.
Metrics = dict[tuple[str, int], float]


@dataclasses.dataclass(frozen=True)
class EvaluatedDay:
    model: str
    fingerprint: str  # the sha256 of the model.pt evaluated
    graph: InteractionGraph
    results: dict[str, Metrics]  # the model's and each baseline's, the model first
    gate: GateResult
    evaluated_users: int
    config_hash: str
    metric_rows: int  # ml.metrics' rows of the day: this evaluation's and the day's others'


def evaluate_day(
    day: DayArtifacts,
    config: EvaluationConfig,
    engine: Engine,
    session: Session,
    run_id: str,
    on_shard: Callable | None = None,
) -> EvaluatedDay:
    """Evaluate the ``day``'s trained_model beside popularity and ``config.baselines`` on a seeded
    sample of the day's test users (train items excluded from every list), in ``engine``'s
    shards; replace this model and configuration's earlier rows of the day in ``ml.metrics``
    (other models' and configurations' rows stay) and record the gate's verdict."""
    store, key = day.store, day.key
    model = load_model(store, key, day.writer(MODEL))
    scorer = load_scorer(store, key, model=model, expect_graph_run=day.writer(GRAPH))
    graph, model_name = scorer.graph, scorer.model
    test_users, test_items = sample_test_users(graph, config.max_users, config.seed)
    with engine.session():
        scored = evaluate_scorers(
            _scorers(scorer, config), graph.n_items, graph.train_csr(), test_users, test_items,
            KS, engine=engine, on_shard=on_shard,
        )  # fmt: skip
    results = scored.metrics
    # The split's settings are part of the key: the same model under another window or test
    # period is another evaluation, kept beside this one.
    split = day.get(SPLIT)["config"]
    evaluation = {"evaluated_model": model_name, "config_hash": config_hash(model[0], split)}
    metric_rows = _write_metrics(
        session, dt.date.fromisoformat(key), results, evaluation, scorer.fingerprint, run_id
    )
    evaluated_users = int(test_users.unique().numel())
    gate = gate_verdict(
        model_name,
        scorer.fingerprint,
        float(results[model_name][GATE_METRIC]),
        float(results[GATE_BASELINE][GATE_METRIC]),
        evaluated_users,
        config.min_test_users,
        chosen_on_validation=model[0].get("chosen_by") == "model_selection",
        p_worse=paired_p_worse(
            scored.per_user[model_name][GATE_METRIC].numpy(),
            scored.per_user[GATE_BASELINE][GATE_METRIC].numpy(),
        ),
        alpha=config.gate_alpha,
    )
    # Publication reads this record, not the check event: a run that selects recommendations
    # alone, or after a retrain, is refused unless this verdict names the current model.pt.
    record_gate(store, key, gate)
    return EvaluatedDay(
        model_name, scorer.fingerprint, graph, results, gate, evaluated_users,
        evaluation["config_hash"], metric_rows,
    )  # fmt: skip


def _scorers(scorer, config: EvaluationConfig) -> dict:
    """The day's model, then the gate's baseline and ``config.baselines``, each fitted on the
    day's training graph, by name."""
    graph = scorer.graph
    scorers = {scorer.model: scorer.score_fn}
    for baseline in dict.fromkeys([GATE_BASELINE, *config.baselines]):
        if baseline not in scorers:
            scorers[baseline] = fit_training_free(
                baseline, graph.train_users, graph.train_items, graph.n_users, graph.n_items
            ).scores
    return scorers


def _write_metrics(
    session: Session,
    as_of: dt.date,
    results: dict,
    evaluation: dict,
    fingerprint: str,
    run_id: str,
) -> int:
    """Replace this evaluation's rows of ``as_of`` in ``ml.metrics`` (other models' and
    configurations' rows stay); returns the day's row count."""
    rows = [
        (name, k, metric, value)
        for name, metrics in results.items()
        for (metric, k), value in metrics.items()
    ]
    with session() as con:
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
            [as_of, *evaluation.values(), fingerprint, run_id],
            within=evaluation,
        )
        (metric_rows,) = con.execute(
            "SELECT count(*) FROM ml.metrics WHERE as_of_date = ?", [as_of]
        ).fetchone()
    return metric_rows
