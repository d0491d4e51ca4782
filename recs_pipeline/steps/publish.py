"""``recommendations``' day: publish day D's top-K lists from the model the quality gate passed,
keep copies in agreement with the warehouse, and pin the model that served.

Only a model.pt whose fingerprint the gate's record names may be published (the weights read
once, so the fingerprint checked is that of the weights published); on a day without test users
popularity serves everyone. The lists commit with a record in ``serving.publications``; the
serving files and every day's pinned published_model.pt are then checked against those records
and rewritten where they disagree.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from recs_pipeline.evaluation.gate import GATE_BASELINE, NO_TEST_USERS, GateResult, publishable
from recs_pipeline.infra.artifacts import GATE, GRAPH, MODEL, SPLIT, DayArtifacts
from recs_pipeline.infra.engine import Engine
from recs_pipeline.serving.files import export_published
from recs_pipeline.serving.published_model import converge_published_models, pin_published_model
from recs_pipeline.serving.recommend import PublishIndex, publish_recommendations
from recs_pipeline.steps.day import load_model_payload, load_scorer, popularity_scorer

Session = Callable[[], contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]]
Log = Callable[[str], None]
PREVIEW_RANKS = 10


@dataclasses.dataclass(frozen=True)
class PublishedDay:
    served: str  # the scorer of the model rows: the model, or popularity for everyone
    fingerprint: str  # the sha256 of the model.pt published (and pinned)
    state: dict  # its checkpoint
    gate: GateResult
    counts: dict  # rows, users, the publication's id, repairs made
    fallback: str | None  # why popularity served everyone, if it did
    preview: list[tuple]  # a few users' top ranks (preview_rows)
    reported: Any = None  # what ``report`` returned


def publish_day(
    day: DayArtifacts,
    k: int,
    index: PublishIndex,
    engine: Engine,
    session: Session,
    serving_root: str | Path | None,
    *,
    warn: Log = print,
    on_shard: Callable | None = None,
    report: Callable[[duckdb.DuckDBPyConnection, PublishedDay], Any] | None = None,
) -> PublishedDay:
    """Publish ``day``'s lists (module docstring); raises
    :class:`~recs_pipeline.evaluation.gate.GateError` when the gate does not allow it.
    ``report(con, day)`` runs once everything is committed, on the same connection (what the
    caller reports about the publication, such as whether it made the day live)."""
    store, key = day.store, day.key
    model, payload = load_model_payload(store, key, day.writer(MODEL))
    gate = publishable(store, key, model[1], day.writer(GATE))
    scorer = load_scorer(
        store, key, up_to_date=True, model=model, expect_graph_run=day.writer(GRAPH)
    )
    graph, served, score_fn = scorer.graph, scorer.model, scorer.score_fn
    fallback = None
    if gate.verdict == NO_TEST_USERS:
        served, score_fn = GATE_BASELINE, popularity_scorer(graph)
        fallback = f"{GATE_BASELINE}: no test users on this day"
        warn(f"{key}: no test users, the model was not evaluated: {gate.description}")
    window_days = day.get(SPLIT)["config"]["window_days"]
    as_of = dt.date.fromisoformat(key)
    # The cluster first: starting one must not hold the warehouse.
    with engine.session(), session() as con:
        counts = publish_recommendations(
            con, as_of, as_of - dt.timedelta(days=window_days - 1), graph, score_fn, served, k,
            index, engine=engine, on_shard=on_shard, model_sha256=model[1].sha256,
        )  # fmt: skip
        # Every day's copies are checked against the warehouse's publication records, so a
        # publication killed between its commit and here is caught up now or by the next one.
        counts |= export_published(con, serving_root, as_of)
        if "serving_repaired" in counts:
            warn(f"serving files rewritten: {counts['serving_repaired']}")
        # After the lists are committed: a publication that fails leaves the earlier pin.
        pin_published_model(store, key, payload)
        unpinned = converge_published_models(con, store, warn)
        for other, problem in unpinned.items():
            warn(f"{other}: {problem}")
        if unpinned:
            counts["published_models_disagreeing"] = ", ".join(sorted(unpinned))
        published = PublishedDay(
            served, scorer.fingerprint, model[0], gate, counts, fallback, preview_rows(con, as_of)
        )
        if report is not None:
            published = dataclasses.replace(published, reported=report(con, published))
    return published


def preview_rows(con: duckdb.DuckDBPyConnection, day: dt.date) -> list[tuple]:
    """The top :data:`PREVIEW_RANKS` of three users the model served and, when there is one, of
    a user who got the popularity fallback: (user_id, rank, item_id, score, model)."""
    return con.execute(
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
        {"day": day, "fallback": GATE_BASELINE, "ranks": PREVIEW_RANKS},
    ).fetchall()
