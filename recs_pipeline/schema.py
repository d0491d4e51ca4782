"""Every warehouse table's name, columns and types: the one place they are spelled.

Schemas: ``raw`` (ingested logs), ``features`` (split and id maps), ``ml`` (metrics) and
``serving`` (published recommendations). Each table is partitioned by one DATE column, named in
:data:`PARTITION_COLUMN`; writes replace a whole partition in one transaction
(:func:`recs_pipeline.warehouse.replace_partition`), except ``ml.metrics``, whose writes replace
one evaluation of the partition (see its comment).
"""

from __future__ import annotations

TABLES: dict[str, str] = {
    "raw.interactions": """
        event_date DATE NOT NULL,
        event_ts TIMESTAMP NOT NULL,
        user_id VARCHAR NOT NULL,
        item_id VARCHAR NOT NULL,
        event_type VARCHAR,
        weight DOUBLE NOT NULL,
        source_file VARCHAR
    """,
    "raw.rejected_interactions": """
        event_date DATE NOT NULL,
        source_file VARCHAR,
        record VARCHAR,
        reason VARCHAR NOT NULL
    """,
    # One row per distinct (user, item) edge of the split; event counts and first/last times kept.
    "features.train_interactions": """
        as_of_date DATE NOT NULL,
        user_id VARCHAR NOT NULL,
        item_id VARCHAR NOT NULL,
        n_events INTEGER NOT NULL,
        weight DOUBLE NOT NULL,
        first_ts TIMESTAMP NOT NULL,
        last_ts TIMESTAMP NOT NULL
    """,
    "features.test_interactions": """
        as_of_date DATE NOT NULL,
        user_id VARCHAR NOT NULL,
        item_id VARCHAR NOT NULL,
        n_events INTEGER NOT NULL,
        weight DOUBLE NOT NULL,
        first_ts TIMESTAMP NOT NULL,
        last_ts TIMESTAMP NOT NULL
    """,
    "features.user_index": """
        as_of_date DATE NOT NULL,
        user_id VARCHAR NOT NULL,
        idx INTEGER NOT NULL
    """,
    "features.item_index": """
        as_of_date DATE NOT NULL,
        item_id VARCHAR NOT NULL,
        idx INTEGER NOT NULL
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
        as_of_date DATE NOT NULL,
        model VARCHAR NOT NULL,
        k INTEGER NOT NULL,
        metric VARCHAR NOT NULL,
        value DOUBLE NOT NULL,
        evaluated_model VARCHAR,
        config_hash VARCHAR,
        model_sha256 VARCHAR,
        run_id VARCHAR,
        evaluated_at TIMESTAMP
    """,
    "serving.recommendations": """
        as_of_date DATE NOT NULL,
        user_id VARCHAR NOT NULL,
        rank INTEGER NOT NULL,
        item_id VARCHAR NOT NULL,
        score DOUBLE NOT NULL,
        model VARCHAR NOT NULL
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
