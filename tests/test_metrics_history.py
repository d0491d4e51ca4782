"""ml.metrics keeps every model's evaluation of a day side by side (issue 12, finding 5)."""

import dataclasses
import datetime as dt

import duckdb

from recs_pipeline.infra.warehouse import ensure_schema, replace_partition

DAY = dt.date(2026, 3, 1)


def test_ensure_schema_adds_the_new_metrics_columns_to_an_old_warehouse(tmp_path):
    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    con.execute("CREATE SCHEMA ml")
    con.execute(  # the ml.metrics of warehouses created before issue 12
        """CREATE TABLE ml.metrics (as_of_date DATE NOT NULL, model VARCHAR NOT NULL,
           k INTEGER NOT NULL, metric VARCHAR NOT NULL, value DOUBLE NOT NULL)"""
    )
    con.execute("INSERT INTO ml.metrics VALUES (?, 'lightgcn', 20, 'recall', 0.25)", [DAY])
    ensure_schema(con)
    ensure_schema(con)  # idempotent
    columns = [row[0] for row in con.execute("DESCRIBE ml.metrics").fetchall()]
    assert columns[:5] == ["as_of_date", "model", "k", "metric", "value"]
    assert {"evaluated_model", "config_hash", "model_sha256", "run_id"} <= set(columns)
    assert con.execute("SELECT model, value, config_hash FROM ml.metrics").fetchall() == [
        ("lightgcn", 0.25, None)
    ]


def test_ensure_schema_replaces_a_view_whose_body_is_not_the_declared_one(tmp_path):
    """A warehouse whose serving.latest_recommendations an older version declared otherwise
    gets the declared body again (test_ducklake.py: a schema already there is not written)."""
    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    ensure_schema(con)
    declared = con.execute(
        "SELECT sql FROM duckdb_views() WHERE view_name = 'latest_recommendations'"
    ).fetchone()
    con.execute(
        "CREATE OR REPLACE VIEW serving.latest_recommendations AS"
        " SELECT * FROM serving.recommendations"
    )
    ensure_schema(con)
    now = con.execute(
        "SELECT sql FROM duckdb_views() WHERE view_name = 'latest_recommendations'"
    ).fetchone()
    assert now == declared


def test_a_keyed_replace_keeps_the_other_evaluations_of_the_day(con):
    def evaluate(model: str, config: str, value: float) -> int:
        return replace_partition(
            con,
            "ml.metrics",
            DAY,
            """SELECT CAST(? AS DATE), ?, 20, 'recall', ?, ?, ?, 'sha', 'run', now()::TIMESTAMP""",
            [DAY, model, value, model, config],
            within={"evaluated_model": model, "config_hash": config},
        )

    assert evaluate("lightgcn", "a", 0.3) == 1
    assert evaluate("gfcf", "b", 0.2) == 1
    assert evaluate("lightgcn", "a", 0.4) == 1  # the same model and config: replaced
    assert evaluate("lightgcn", "c", 0.5) == 1  # another config: kept beside
    rows = con.execute(
        "SELECT evaluated_model, config_hash, value FROM ml.metrics ORDER BY 1, 2"
    ).fetchall()
    assert rows == [("gfcf", "b", 0.2), ("lightgcn", "a", 0.4), ("lightgcn", "c", 0.5)]


def test_config_hash_tells_filter_settings_apart_and_ignores_unset_settings():
    """Two dnfilter runs of a day with different settings keep their own ml.metrics rows; a
    setting left unset (None: the model's default) does not change a trained model's hash."""
    from recs_pipeline.models import TRAINING_FREE
    from recs_pipeline.steps.day import config_hash
    from recs_pipeline.training import TrainConfig

    def free(**params) -> dict:
        return {"model": "dnfilter", "params": TRAINING_FREE["dnfilter"](**params).params()}

    assert config_hash(free()) == config_hash({"model": "dnfilter"})  # the hash it always had
    assert config_hash(free(sharpen=1.0)) != config_hash(free())
    assert config_hash(free(sharpen=1.0)) == config_hash(free(sharpen=1.0))
    trained = dataclasses.asdict(TrainConfig())
    unset = {**trained, "a_future_setting": None}
    assert config_hash({"train_config": unset}) == config_hash({"train_config": trained})
    assert config_hash({"train_config": {**trained, "epochs": 3}}) != config_hash(
        {"train_config": trained}
    )


def test_evaluations_under_different_windows_are_keyed_apart():
    """Issue 25: evaluations of one model under two windows overwrote each other in ml.metrics
    (the window was not in the key); the split's settings are part of config_hash now."""
    from recs_pipeline.steps.day import config_hash

    state = {"train_config": {"model": "lightgcn", "epochs": 3}}
    window_28 = {"window_days": 28, "test_days": 2, "min_degree": 1, "min_weight": None}
    window_120 = {**window_28, "window_days": 120}
    assert config_hash(state, window_28) != config_hash(state, window_120)
    assert config_hash(state, window_28) == config_hash(state, dict(window_28))
    assert config_hash(state) == config_hash(state, None)  # no split: the hash it always had
