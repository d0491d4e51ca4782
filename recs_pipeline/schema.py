"""Every warehouse table's name, columns, types and column descriptions: the one place they
are spelled. A column's description is its line's ``--`` comment; :func:`columns` reads them
(the Dagster assets' column schemas are built from it).

Schemas: ``raw`` (ingested logs), ``features`` (split and id maps), ``ml`` (metrics) and
``serving`` (published recommendations). Each table is partitioned by one DATE column, named in
:data:`PARTITION_COLUMN`; writes replace a whole partition in one transaction
(:func:`recs_pipeline.infra.warehouse.replace_partition`), except ``ml.metrics``, whose writes replace
one evaluation of the partition (see its comment).
"""

from __future__ import annotations

from typing import NamedTuple

# The columns of both folds of the split (features.train_interactions and test_interactions).
_SPLIT_EDGES = """
        as_of_date DATE NOT NULL,  -- Day D the split is for (the partition).
        user_id VARCHAR NOT NULL,  -- The user.
        item_id VARCHAR NOT NULL,  -- The item.
        n_events INTEGER NOT NULL,  -- The user's events on the item in the period.
        weight DOUBLE NOT NULL,  -- Sum of those events' weights.
        first_ts TIMESTAMP NOT NULL,  -- The first of those events.
        last_ts TIMESTAMP NOT NULL  -- The last of those events.
    """

TABLES: dict[str, str] = {
    "raw.interactions": """
        event_date DATE NOT NULL,  -- Day of the event (the partition), from event_ts.
        event_ts TIMESTAMP NOT NULL,  -- When the event happened.
        user_id VARCHAR NOT NULL,  -- The user, as in the landing files.
        item_id VARCHAR NOT NULL,  -- The item, as in the landing files.
        event_type VARCHAR,  -- The event's type, when the log has a column for it.
        weight DOUBLE NOT NULL,  -- The weight_column's value (a rating, say), or 1.0 without one.
        source_file VARCHAR  -- The landing file the row came from.
    """,
    "raw.rejected_interactions": """
        event_date DATE NOT NULL,  -- Day the rejected row is quarantined under (the partition).
        source_file VARCHAR,  -- The landing file the row came from.
        record VARCHAR,  -- The row's raw text.
        reason VARCHAR NOT NULL  -- Why the row was rejected.
    """,
    # One row per distinct (user, item) edge of the split; event counts and first/last times kept.
    "features.train_interactions": _SPLIT_EDGES,
    "features.test_interactions": _SPLIT_EDGES,
    "features.user_index": """
        as_of_date DATE NOT NULL,  -- Day D the id map is for (the partition).
        user_id VARCHAR NOT NULL,  -- The user.
        idx INTEGER NOT NULL  -- The user's row in the model's embeddings.
    """,
    "features.item_index": """
        as_of_date DATE NOT NULL,  -- Day D the id map is for (the partition).
        item_id VARCHAR NOT NULL,  -- The item.
        idx INTEGER NOT NULL  -- The item's row in the model's embeddings.
    """,
    # One row per (model scored, K, metric) of one evaluation. An evaluation is keyed by the
    # day, the evaluated model and its configuration's hash: re-evaluating the same model and
    # config replaces its rows, another model or config adds rows beside them. ``model`` is the
    # scorer of the row (the evaluated model, or a baseline scored on the same test sample);
    # ``evaluated_model``, ``config_hash``, ``model_sha256`` (the fingerprint of the evaluated
    # model.pt), ``run_id`` and ``evaluated_at`` say which evaluation it belongs to. Columns
    # added after the first release are nullable: ensure_schema adds them to older warehouses,
    # whose rows keep NULL there.
    "ml.metrics": """
        as_of_date DATE NOT NULL,  -- Day D evaluated (the partition).
        model VARCHAR NOT NULL,  -- The scorer of the row: the evaluated model or a baseline.
        k INTEGER NOT NULL,  -- Cut-off K of the metric.
        metric VARCHAR NOT NULL,  -- recall, ndcg, precision or hitrate.
        value DOUBLE NOT NULL,  -- The metric at K, averaged over the evaluated test users.
        evaluated_model VARCHAR,  -- The model this evaluation was for.
        config_hash VARCHAR,  -- Hash of the evaluated model's training config and the split settings.
        model_sha256 VARCHAR,  -- sha256 of the evaluated model.pt.
        run_id VARCHAR,  -- The Dagster run that evaluated.
        evaluated_at TIMESTAMP  -- When the evaluation ran.
    """,
    "serving.recommendations": """
        as_of_date DATE NOT NULL,  -- Day D published (the partition).
        user_id VARCHAR NOT NULL,  -- The user served.
        rank INTEGER NOT NULL,  -- Position in the user's list, 1 = best.
        item_id VARCHAR NOT NULL,  -- The recommended item.
        score DOUBLE NOT NULL,  -- The scorer's score of the item for the user.
        model VARCHAR NOT NULL  -- The scorer of the list: the model, or popularity (the fallback).
    """,
    # One row per published day, committed with the day's lists: what the copies outside the
    # warehouse (the serving files, published_model.pt) must agree with. A crash between the
    # commit and those copies leaves them behind; the next export and `python -m cli.doctor`
    # find them by this record (recs_pipeline/serving/files.py).
    "serving.publications": """
        as_of_date DATE NOT NULL,  -- Day D published (the partition).
        publication VARCHAR NOT NULL,  -- This publication's id, recorded in its serving file too.
        model_sha256 VARCHAR,  -- sha256 of the model.pt published; NULL: not known.
        published_at TIMESTAMP NOT NULL  -- When the lists were committed.
    """,
}

PARTITION_COLUMN: dict[str, str] = {
    "raw.interactions": "event_date",
    "raw.rejected_interactions": "event_date",
    **{name: "as_of_date" for name in TABLES if not name.startswith("raw.")},
}

# The newest published partition. Recommendations are written only after the quality gate
# passed, so the newest partition present is the newest published one.
VIEWS: dict[str, str] = {
    "serving.latest_recommendations": """
        SELECT * FROM serving.recommendations
        WHERE as_of_date = (SELECT max(as_of_date) FROM serving.recommendations)
    """,
}


class Column(NamedTuple):
    name: str
    type: str
    nullable: bool
    description: str
    definition: str  # as declared, without the comment: "name TYPE [NOT NULL]"


def columns(table: str) -> list[Column]:
    """The columns of a :data:`TABLES` entry, in order, with their descriptions."""
    found = []
    for line in TABLES[table].strip().splitlines():
        definition, _, description = line.partition("--")
        definition = definition.strip().rstrip(",").strip()
        if definition:
            name, type_, *constraints = definition.split()
            nullable = "NOT NULL" not in " ".join(constraints).upper()
            found.append(Column(name, type_, nullable, description.strip(), definition))
    return found
