"""Every warehouse table's name, columns and types: the one place they are spelled.

Schemas: ``raw`` (ingested logs), ``features`` (split and id maps), ``ml`` (metrics) and
``serving`` (published recommendations). Each table is partitioned by one DATE column, named in
:data:`PARTITION_COLUMN`; writes replace a whole partition in one transaction
(:func:`recs_pipeline.warehouse.replace_partition`).
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
    "ml.metrics": """
        as_of_date DATE NOT NULL,
        model VARCHAR NOT NULL,
        k INTEGER NOT NULL,
        metric VARCHAR NOT NULL,
        value DOUBLE NOT NULL
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
