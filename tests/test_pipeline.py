"""The whole chain on a small generated log, through dg.materialize with an ephemeral instance."""

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import torch

from assets.definitions import ALL_ASSETS
from assets.ingest import raw_interactions
from assets.lib.partitions import range_tags
from recs_pipeline.infra.artifacts import ITEM_FEATURES, MODEL, PROGRESS
from recs_pipeline.infra.warehouse import connect_lake
from recs_pipeline.schema import PARTITION_COLUMN
from tests.conftest import SMALL_LOG, copy_chain

DAY_1 = SMALL_LOG.end - dt.timedelta(days=1)
DAY_2 = SMALL_LOG.end
K = 10
CHAIN = dg.AssetSelection.assets(*ALL_ASSETS) - dg.AssetSelection.assets(raw_interactions)
RUN_CONFIG = {
    "ops": {
        "interaction_split": {"config": {"window_days": 14, "test_days": 2}},
        "trained_model": {"config": {"epochs": 12, "batch_size": 2048, "eval_every": 2}},
        "recommendations": {"config": {"k": K}},
    }
}


def ingest(instance, resources, start: dt.date, end: dt.date):
    return dg.materialize(
        [raw_interactions],
        instance=instance,
        resources=resources,
        tags=range_tags(start, end),
    )


def run_chain(instance, resources, day: dt.date, run_config=RUN_CONFIG):
    return dg.materialize(
        ALL_ASSETS,
        selection=CHAIN,
        partition_key=day.isoformat(),
        instance=instance,
        resources=resources,
        run_config=run_config,
        raise_on_error=False,
    )


def snapshot(con, day: dt.date) -> dict[str, list]:
    """Every row of every partitioned table for ``day``, sorted."""
    return {
        table: sorted(
            con.execute(f"SELECT * FROM {table} WHERE {column} = ?", [day]).fetchall(), key=str
        )
        for table, column in PARTITION_COLUMN.items()
    }


@pytest.fixture(scope="module")
def pipeline(two_day_chain, tmp_path_factory):
    """The whole log ingested once, then the chain for two consecutive days: a copy of the
    session's run (tests/conftest.py ``two_day_chain``), which the later tests here build on."""
    with copy_chain(two_day_chain, tmp_path_factory.mktemp("pipeline")) as (instance, resources):
        yield instance, resources, two_day_chain.results


def connect(resources):
    """A read-only connection to the resources' warehouse: the DuckDB file, or the DuckLake
    (tests/test_shared_deployment.py runs this module's checks on one)."""
    warehouse = resources["warehouse"]
    if warehouse.shared:
        return connect_lake(warehouse.catalog, read_only=True)
    return duckdb.connect(warehouse.database, read_only=True)


def recall_at_20(resources, day: dt.date) -> dict[str, float]:
    """Model name → Recall@20 in ml.metrics for ``day``, of the day's newest evaluation (the
    earlier ones stay beside it)."""
    with connect(resources) as con:
        return dict(
            con.execute(
                """SELECT model, value FROM ml.metrics
                   WHERE as_of_date = ? AND k = 20 AND metric = 'recall' AND run_id = (
                       SELECT arg_max(run_id, evaluated_at) FROM ml.metrics WHERE as_of_date = ?)""",
                [day, day],
            ).fetchall()
        )


def test_both_partitions_complete_and_pass_the_gate(pipeline):
    instance, _, results = pipeline
    for day, result in results.items():
        assert result.success, day
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        assert set(checks) == {"beats_popularity", "beats_every_baseline"}
        assert checks["beats_popularity"].passed
    materialized = instance.get_materialized_partitions(dg.AssetKey("recommendations"))
    assert materialized == {DAY_1.isoformat(), DAY_2.isoformat()}


def test_second_day_warm_starts_from_the_first_and_cleans_up_progress(pipeline):
    _, resources, _ = pipeline
    store = resources["artifacts"].store()
    first = store.get(MODEL, DAY_1.isoformat())
    second = store.get(MODEL, DAY_2.isoformat())
    assert first["warm_start"] is None  # no model for the day before
    warm = second["warm_start"]
    assert warm["warm_users"] > 0 and warm["warm_items"] > 0
    assert warm["warm_users"] + warm["new_users"] == second["n_users"]
    for day in (DAY_1, DAY_2):
        assert not store.has(PROGRESS, day.isoformat())


def test_every_input_row_is_ingested_or_quarantined(pipeline, small_landing):
    _, resources, _ = pipeline
    lines = sum(sum(1 for _ in open(path)) - 1 for path in small_landing.glob("*/*.csv"))
    with connect(resources) as con:
        ingested = con.execute("SELECT count(*) FROM raw.interactions").fetchone()[0]
        rejected = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE record IS NULL OR reason IS NULL) FROM raw.rejected_interactions"
        ).fetchone()
    assert ingested + rejected[0] == lines
    assert rejected[0] > 0 and rejected[1] == 0  # the log is dirty; every rejection explained


def test_model_beats_popularity_and_metrics_are_in_unit_interval(pipeline):
    _, resources, _ = pipeline
    with connect(resources) as con:
        rows = con.execute("SELECT as_of_date, model, k, metric, value FROM ml.metrics").fetchall()
        assert {r[1] for r in rows} == {"lightgcn", "popularity", "gfcf"}
        assert {(r[2], r[3]) for r in rows} == {
            (k, m) for k in (10, 20, 50) for m in ("recall", "ndcg", "precision", "hitrate")
        }
        assert all(0.0 <= r[4] <= 1.0 for r in rows)
        for day in (DAY_1, DAY_2):
            recall = dict(
                con.execute(
                    "SELECT model, value FROM ml.metrics WHERE as_of_date = ? AND k = 20 AND metric = 'recall'",
                    [day],
                ).fetchall()
            )
            assert recall["lightgcn"] > recall["popularity"] * 1.2, recall


def test_published_lists_exclude_everything_seen_and_have_k_distinct_items(pipeline):
    _, resources, _ = pipeline
    with connect(resources) as con:
        for day in (DAY_1, DAY_2):
            leaks = con.execute(
                """SELECT count(*) FROM serving.recommendations r
                   JOIN raw.interactions i ON i.user_id = r.user_id AND i.item_id = r.item_id
                   WHERE r.as_of_date = ? AND i.event_date <= ?""",
                [day, day],
            ).fetchone()[0]
            assert leaks == 0
            per_user = con.execute(
                """SELECT user_id, count(*), count(DISTINCT item_id), min(rank), max(rank)
                   FROM serving.recommendations WHERE as_of_date = ? GROUP BY user_id""",
                [day],
            ).fetchall()
            assert per_user and all(row[1:] == (K, K, 1, K) for row in per_user)
            # Every user active in the window is served (model or popularity fallback).
            window_users = con.execute(
                "SELECT count(DISTINCT user_id) FROM raw.interactions WHERE event_date BETWEEN ? AND ?",
                [day - dt.timedelta(days=13), day],
            ).fetchone()[0]
            assert len(per_user) == window_users
        latest = con.execute(
            "SELECT DISTINCT as_of_date FROM serving.latest_recommendations"
        ).fetchall()
        assert latest == [(DAY_2,)]


def test_rematerialising_a_partition_leaves_the_same_rows(pipeline):
    instance, resources, _ = pipeline
    with connect(resources) as con:
        before = snapshot(con, DAY_2)
    assert ingest(instance, resources, DAY_2, DAY_2).success
    assert run_chain(instance, resources, DAY_2).success
    with connect(resources) as con:
        after = snapshot(con, DAY_2)
    for table in before:
        assert len(after[table]) == len(before[table]), table
    # Everything but the model's outputs is identical row for row. Training uses a fixed seed,
    # but multithreaded sparse products are not bit-reproducible: lists may differ by near-ties.
    # A publication's record is new each time (its id and time).
    for table in before:
        if table not in ("ml.metrics", "serving.recommendations", "serving.publications"):
            assert after[table] == before[table], table
    keys = {table: {row[1:3] for row in rows} for table, rows in before.items()}
    assert {row[1:3] for row in after["serving.recommendations"]} == keys["serving.recommendations"]
    pairs_before = {(row[1], row[3]) for row in before["serving.recommendations"]}
    pairs_after = {(row[1], row[3]) for row in after["serving.recommendations"]}
    assert len(pairs_before & pairs_after) >= 0.98 * len(pairs_before)


def test_quality_gate_blocks_publication_of_a_broken_model(pipeline):
    instance, resources, _ = pipeline
    with connect(resources) as con:
        published_before = con.execute(
            "SELECT count(*) FROM serving.recommendations WHERE as_of_date = ?", [DAY_1]
        ).fetchone()[0]
    broken = {
        "ops": {
            **RUN_CONFIG["ops"],
            # Learning rate 0: the model keeps its random initial embeddings.
            # No warm start, so nothing but the random initialisation reaches the gate.
            "trained_model": {
                "config": {
                    "epochs": 2,
                    "learning_rate": 0.0,
                    "eval_every": 1,
                    "warm_start": False,
                }
            },
        }
    }
    result = run_chain(instance, resources, DAY_1, broken)
    assert not result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["beats_popularity"] is False and "beats_every_baseline" in checks
    assert "recommendations" not in {
        e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
    }
    with connect(resources) as con:
        published_after = con.execute(
            "SELECT count(*) FROM serving.recommendations WHERE as_of_date = ?", [DAY_1]
        ).fetchone()[0]
        latest = con.execute(
            "SELECT DISTINCT as_of_date FROM serving.latest_recommendations"
        ).fetchall()
    assert published_after == published_before
    assert latest == [(DAY_2,)]


def test_training_free_models_are_selectable_and_evaluated_side_by_side(pipeline):
    instance, resources, _ = pipeline
    config = {"ops": {**RUN_CONFIG["ops"], "trained_model": {"config": {"model": "gfcf"}}}}
    assert run_chain(instance, resources, DAY_1, config).success
    recall = recall_at_20(resources, DAY_1)
    with connect(resources) as con:
        served_by = dict(
            con.execute(
                "SELECT model, count(DISTINCT user_id) FROM serving.recommendations WHERE as_of_date = ? GROUP BY 1",
                [DAY_1],
            ).fetchall()
        )
    assert set(recall) == {"gfcf", "popularity"}
    assert recall["gfcf"] > recall["popularity"]
    assert served_by["gfcf"] > 0


def test_softmax_with_shared_negatives_and_spectral_init_from_run_config(pipeline):
    instance, resources, _ = pipeline
    train = {
        "loss": "softmax",
        "temperature": 0.2,
        "uniform_negatives": 0,
        "shared_negatives": 256,
        "init": "spectral",
        "epochs": 6,
        "eval_every": 2,
    }
    config = {"ops": {**RUN_CONFIG["ops"], "trained_model": {"config": train}}}
    assert run_chain(instance, resources, DAY_1, config).success
    recall = recall_at_20(resources, DAY_1)
    assert recall["lightgcn"] > recall["popularity"] * 1.2


def test_published_lists_are_scored_from_everything_known_up_to_the_day(pipeline):
    """Freshness: the published top-K of a user with test-period interactions equals the
    top-K scored from the up-to-date graph (train ∪ test), which differs from the train-only
    one for some such users."""
    import torch

    from recs_pipeline.steps.day import load_scorer

    _, resources, _ = pipeline
    store = resources["artifacts"].store()
    key = DAY_2.isoformat()
    stale = load_scorer(store, key)
    graph, stale_fn = stale.graph, stale.score_fn
    fresh_fn = load_scorer(store, key, up_to_date=True).score_fn
    users = torch.unique(graph.test_users)
    with connect(resources) as con:
        seen_pairs = con.execute(
            "SELECT DISTINCT user_id, item_id FROM raw.interactions WHERE event_date <= ?", [DAY_2]
        ).fetchall()
    # Publication excludes everything the user touched up to D, also before the window.
    user_pos = {graph.user_ids[u]: row for row, u in enumerate(users.tolist())}
    item_idx = {item: i for i, item in enumerate(graph.item_ids)}
    seen = torch.zeros(users.numel(), graph.n_items, dtype=torch.bool)
    for user, item in seen_pairs:
        if user in user_pos and item in item_idx:
            seen[user_pos[user], item_idx[item]] = True

    def top_k(score_fn):
        scores = score_fn(users)
        scores[seen] = -torch.inf
        return scores.topk(K).indices

    fresh, stale = top_k(fresh_fn), top_k(stale_fn)
    assert (fresh != stale).any(dim=1).sum() > 0
    with connect(resources) as con:
        published = dict(
            con.execute(
                """SELECT user_id, list(item_id ORDER BY rank) FROM serving.recommendations
                   WHERE as_of_date = ? GROUP BY user_id""",
                [DAY_2],
            ).fetchall()
        )
    for row, user in enumerate(users.tolist()[:20]):
        expected = [graph.item_ids[i] for i in fresh[row].tolist()]
        assert published[graph.user_ids[user]] == expected


def test_pinsage_trains_on_the_catalogues_item_features(pipeline):
    """The synthetic landing folder has items.csv (genre flags): interaction_graph aligns them
    to the id map, and trained_model hands them to PinSAGE, whose checkpoint carries them."""
    instance, resources, _ = pipeline
    train = {"model": "pinsage", "layers": 1, "epochs": 4, "batch_size": 2048, "eval_every": 2}
    config = {"ops": {**RUN_CONFIG["ops"], "trained_model": {"config": train}}}
    result = run_chain(instance, resources, DAY_1, config)
    assert "trained_model" in {
        e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
    }
    store = resources["artifacts"].store()
    key = DAY_1.isoformat()
    features = store.get(ITEM_FEATURES, key)
    assert features["columns"] == [f"genre_{g}" for g in range(8)]
    assert features["matched_items"] == features["values"].shape[0]  # every graph item listed
    state = store.get(MODEL, key)
    assert state["model"] == "pinsage"
    torch.testing.assert_close(state["state_dict"]["item_features"], features["values"])
    # Restore the day's default model for the tests that read it.
    assert run_chain(instance, resources, DAY_1).success


def published_lists(resources, day: dt.date) -> dict[str, list[str]]:
    with connect(resources) as con:
        return dict(
            con.execute(
                """SELECT user_id, list(item_id ORDER BY rank) FROM serving.recommendations
                   WHERE as_of_date = ? GROUP BY user_id""",
                [day],
            ).fetchall()
        )


def publish(instance, resources, day: dt.date, config: dict):
    from assets.serving import recommendations

    result = dg.materialize(
        ALL_ASSETS,
        selection=dg.AssetSelection.assets(recommendations),
        partition_key=day.isoformat(),
        instance=instance,
        resources=resources,
        run_config={"ops": {"recommendations": {"config": {"k": K, **config}}}},
    )
    (event,) = [  # its step may report live_recommendations too (assets/live.py)
        e for e in result.get_asset_materialization_events() if e.asset_key == recommendations.key
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_the_ivf_index_publishes_the_exact_lists_when_it_probes_every_list(pipeline):
    """Publication through the inverted-file index: probing every list is exact ranking;
    probing a few still gives K distinct unseen items per user and records its measured
    overlap with exact lists."""
    instance, resources, _ = pipeline
    exact_meta = publish(instance, resources, DAY_2, {"index": "exact"})
    assert exact_meta["index"] == "exact"
    exact = published_lists(resources, DAY_2)
    full = publish(
        instance, resources, DAY_2, {"index": "ivf", "ivf_list_size": 8, "ivf_probes": 10_000}
    )
    assert full["index"] == "ivf" and full[f"ivf_overlap@{K}"] == 1.0
    # The same items per user (the order may differ only between float near-ties).
    as_sets = lambda lists: {user: set(items) for user, items in lists.items()}  # noqa: E731
    assert as_sets(published_lists(resources, DAY_2)) == as_sets(exact)

    few = publish(instance, resources, DAY_2, {"index": "ivf", "ivf_list_size": 8, "ivf_probes": 4})
    assert few["ivf_probes"] == 4 < few["ivf_lists"]
    assert 0.0 < few[f"ivf_overlap@{K}"] < 1.0
    approximate = published_lists(resources, DAY_2)
    assert approximate.keys() == exact.keys()
    with connect(resources) as con:
        seen_and_published = con.execute(
            """SELECT count(*) FROM serving.recommendations r
               JOIN (SELECT DISTINCT user_id, item_id FROM raw.interactions
                     WHERE event_date <= ?) s USING (user_id, item_id)
               WHERE r.as_of_date = ?""",
            [DAY_2, DAY_2],
        ).fetchone()[0]
    assert seen_and_published == 0
    assert few["ivf_short_users_ranked_exactly"] > 0  # 4 lists of ~8 items: some run short
    assert {user: len(items) for user, items in approximate.items()} == {
        user: len(items) for user, items in exact.items()
    }
    assert all(len(set(items)) == len(items) for items in approximate.values())
    # Restore the default (exact at this catalogue size) for any later reader.
    assert publish(instance, resources, DAY_2, {})["index"] == "exact"


def partition_state(resources, day: dt.date) -> tuple[dict, dict]:
    """Every warehouse row of ``day`` and the bytes of every artifact of its partition."""
    with connect(resources) as con:
        rows = snapshot(con, day)
    root = Path(resources["artifacts"].root)
    files = {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.glob(f"*/{day.isoformat()}/*"))
    }
    return rows, files


@pytest.mark.parametrize(
    ("op", "bad", "named"),
    [
        ("trained_model", {"batch_size": 0}, "batch_size"),
        ("hard_negatives", {"band_start": 0.5, "band_end": 0.2}, "band_start"),
    ],
)
def test_an_out_of_range_setting_fails_the_first_step_before_anything_is_written(
    pipeline, op, bad, named
):
    """The run's whole config is checked by its first step: the bad setting of a later step
    stops the run before the split rewrites its tables; the partition is left as it was."""
    instance, resources, _ = pipeline
    before = partition_state(resources, DAY_1)
    ops = dict(RUN_CONFIG["ops"])
    ops[op] = {"config": {**ops.get(op, {}).get("config", {}), **bad}}
    result = run_chain(instance, resources, DAY_1, {"ops": ops})
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert failure.step_key == "interaction_split"  # the first step of the chain
    message = failure.event_specific_data.error.message
    assert op in message and named in message
    assert result.get_asset_materialization_events() == []
    assert partition_state(resources, DAY_1) == before


def test_k_above_the_catalogue_fails_publication_clearly_and_publishes_nothing(pipeline):
    from assets.serving import recommendations

    instance, resources, _ = pipeline
    before = partition_state(resources, DAY_2)
    result = dg.materialize(
        ALL_ASSETS,
        selection=dg.AssetSelection.assets(recommendations),
        partition_key=DAY_2.isoformat(),
        instance=instance,
        resources=resources,
        run_config={"ops": {"recommendations": {"config": {"k": 10_000}}}},
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = result.get_step_failure_events()
    message = failure.event_specific_data.error.to_string()  # with the cause
    assert "k (10000) exceeds the catalogue" in message
    assert partition_state(resources, DAY_2) == before


def test_another_model_keeps_the_first_ones_metrics_and_the_published_model(pipeline):
    """Issue 12, finding 5: materialising a served day again with another model (here
    popularity, which fails the gate, so nothing new is published) keeps the first model's
    metrics beside the new ones, and the model behind the published lists stays loadable,
    byte for byte the one the publication recorded, although trained_model/D/model.pt moved on.
    """
    instance, resources, _ = pipeline
    (record,) = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("recommendations"), asset_partitions=[DAY_2.isoformat()]
        ),
        limit=1,
    ).records
    published_sha = record.asset_materialization.metadata["model_sha256"].value
    lists_before = published_lists(resources, DAY_2)
    config = {"ops": {**RUN_CONFIG["ops"], "trained_model": {"config": {"model": "popularity"}}}}
    assert not run_chain(instance, resources, DAY_2, config).success  # gate: popularity fails
    with connect(resources) as con:
        models = con.execute(
            "SELECT DISTINCT model FROM ml.metrics WHERE as_of_date = ?", [DAY_2]
        ).fetchall()
        assert ("lightgcn",) in models
        evaluations = con.execute(
            """SELECT evaluated_model, count(DISTINCT model), count(DISTINCT run_id),
                      any_value(model_sha256), any_value(config_hash)
               FROM ml.metrics WHERE as_of_date = ? GROUP BY 1 ORDER BY 1""",
            [DAY_2],
        ).fetchall()
    assert [row[:3] for row in evaluations] == [("lightgcn", 3, 1), ("popularity", 2, 1)]
    assert evaluations[0][3] == published_sha and evaluations[0][4] != evaluations[1][4]
    assert published_lists(resources, DAY_2) == lists_before
    from recs_pipeline.infra.artifacts import PUBLISHED_MODEL

    store = resources["artifacts"].store()
    assert store.get(MODEL, DAY_2.isoformat())["model"] == "popularity"
    pinned, stamp = store.get_stamped(PUBLISHED_MODEL, DAY_2.isoformat())
    assert stamp.sha256 == published_sha and pinned["model"] == "lightgcn"


def test_min_weight_and_weighted_training_run_through_the_chain(pipeline):
    """Issue 12, finding 6, end to end: the split's min_weight and trained_model's weighted
    are run-config settings; the graph carries the edge weights to training."""
    instance, resources, _ = pipeline
    ops = {
        **RUN_CONFIG["ops"],
        "interaction_split": {"config": {"window_days": 14, "test_days": 2, "min_weight": 1.0}},
        "trained_model": {"config": {"model": "mf", "epochs": 2, "weighted": True}},
    }
    result = run_chain(instance, resources, DAY_1, {"ops": ops})
    metadata = {
        e.asset_key.path[-1]: e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert metadata["interaction_split"]["below_min_weight_rows_dropped"].value == 0
    assert metadata["trained_model"]["model"].value == "mf"
    state = resources["artifacts"].store().get(MODEL, DAY_1.isoformat())
    assert state["train_config"]["weighted"] is True


def test_unpinned_the_selection_champion_is_trained_evaluated_and_published(pipeline):
    """With trained_model's model unset, the day's model_selection champion (here among the
    filters) is what trained_model fits, what the gate evaluates and what is published; the
    next day within every_days reuses that choice instead of searching again."""
    from recs_pipeline.evaluation.selection import Selection
    from recs_pipeline.infra.artifacts import SELECTION

    instance, resources, _ = pipeline
    selection = {"candidates": ["popularity", "gfcf", "dnfilter"], "trials": 5}
    config = {
        "ops": {
            **RUN_CONFIG["ops"],
            "model_selection": {"config": selection},
            "trained_model": {"config": {"model": None}},
        }
    }
    store = resources["artifacts"].store()
    for day in (DAY_1, DAY_2):
        result = run_chain(instance, resources, day, config)
        assert result.success, day
    first = store.get(SELECTION, DAY_1.isoformat())
    second = store.get(SELECTION, DAY_2.isoformat())
    champion = Selection.from_dict(first["selection"])
    assert first["reused_from"] is None and second["reused_from"] == DAY_1.isoformat()
    assert len(champion.trials) >= 5 and champion.model in selection["candidates"]
    materialization = result.asset_materializations_for_node("model_selection")[0]
    assert materialization.metadata["champion"].value == champion.model
    assert materialization.metadata["reused_from"].value == DAY_1.isoformat()
    trained = result.asset_materializations_for_node("trained_model")[0].metadata
    assert trained["model"].value == champion.model
    assert trained["chosen_by"].value == "model_selection"
    with connect(resources) as con:
        served = con.execute(
            "SELECT DISTINCT model FROM serving.recommendations WHERE as_of_date = ?", [DAY_2]
        ).fetchall()
    assert (champion.model,) in served


def test_too_few_test_users_publishes_the_validation_champion_with_a_warning(pipeline):
    instance, resources, _ = pipeline
    selection = {"candidates": ["gfcf", "dnfilter"], "trials": 2}
    config = {
        "ops": {
            **RUN_CONFIG["ops"],
            "model_selection": {"config": selection},
            "trained_model": {"config": {"model": None}},
            "model_evaluation": {"config": {"min_test_users": 10**6}},
        }
    }
    result = run_chain(instance, resources, DAY_1, config)
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    gate = checks["beats_popularity"]
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    assert "insufficient_evidence" in gate.description
    with connect(resources) as con:
        served = con.execute(
            "SELECT DISTINCT model FROM serving.recommendations WHERE as_of_date = ?", [DAY_1]
        ).fetchall()
    champion = result.asset_materializations_for_node("model_selection")[0].metadata["champion"]
    assert (champion.value,) in served
