"""Sharded steps: hard negatives, evaluation and publication give the same result on a real
multi-process Ray cluster (2 workers) as in one process, in the core and through Dagster.

The session's local cluster (``ray_engine``, tests/conftest.py: started once, shut down at the
end) serves the module: every ``Engine.session()`` inside it joins that cluster instead of
starting its own.
"""

import copy
import datetime as dt
import json
import subprocess
import sys

import dagster as dg
import pytest
import torch

from recs_pipeline.evaluation.metrics import evaluate_scorer, evaluate_scorers, inner_product
from recs_pipeline.graph.bipartite import interaction_csr
from recs_pipeline.graph.negatives import HardNegativeConfig, sharded_hard_negative_pools
from recs_pipeline.infra.artifacts import HARD_NEGATIVES
from recs_pipeline.infra.engine import Engine, shard_ranges
from recs_pipeline.models import fit_training_free
from recs_pipeline.serving.recommend import PublishIndex, rank_publish_rows
from resources import ComputeEngine
from tests.conftest import SMALL_LOG, make_resources
from tests.test_pipeline import RUN_CONFIG, connect, ingest, run_chain

LOCAL = Engine()
N_USERS, N_ITEMS = 300, 120


def graph(seed: int = 3, edges: int = 4000):
    generator = torch.Generator().manual_seed(seed)
    users = torch.randint(0, N_USERS, (edges,), generator=generator)
    # Skewed items, so popularity and the walks have a shape.
    items = (torch.rand(edges, generator=generator) ** 2 * N_ITEMS).long()
    return users, items


@pytest.mark.parametrize("method", ["ppr", "walks"])
def test_hard_negative_pools_do_not_depend_on_the_shards(ray_engine, method):
    users, items = graph()
    config = HardNegativeConfig(
        method=method, pool_size=8, batch_users=64, walk_batch_users=64, walks=32
    )
    one, runs = sharded_hard_negative_pools(users, items, N_USERS, N_ITEMS, config)
    assert len(runs) == 1 and runs[0].users == N_USERS
    three, _ = sharded_hard_negative_pools(
        users, items, N_USERS, N_ITEMS, config, engine=Engine(workers=3)
    )
    seen = []
    on_ray, runs = sharded_hard_negative_pools(
        users, items, N_USERS, N_ITEMS, config, engine=ray_engine, on_shard=seen.append
    )
    assert torch.equal(three, one) and torch.equal(on_ray, one)
    # 5 blocks of 64 users in 2 shards, each reported once as it completed.
    assert [r.users for r in runs] == [128, 172]
    assert sorted(r.shard for r in seen) == [0, 1]
    assert len({r.worker for r in runs}) == 2  # two worker processes


def scorers(users, items):
    embeddings = torch.Generator().manual_seed(5)
    model = inner_product(
        torch.randn(N_USERS, 16, generator=embeddings),
        torch.randn(N_ITEMS, 16, generator=embeddings),
    )
    fitted = {
        name: fit_training_free(name, users, items, N_USERS, N_ITEMS).scores
        for name in ("popularity", "gfcf")
    }
    return {"model": model, **fitted}


def test_evaluation_metrics_do_not_depend_on_the_shards(ray_engine):
    users, items = graph()
    test_users, test_items = graph(seed=4, edges=600)
    exclude = interaction_csr(users, items, N_USERS, N_ITEMS)
    fns = scorers(users, items)
    local = evaluate_scorers(fns, N_ITEMS, exclude, test_users, test_items).metrics
    on_ray = evaluate_scorers(fns, N_ITEMS, exclude, test_users, test_items, engine=ray_engine)
    runs, on_ray = on_ray.runs, on_ray.metrics
    assert len(runs) == 2 and sum(r.users for r in runs) == test_users.unique().numel()
    for name, fn in fns.items():
        alone = evaluate_scorer(fn, N_ITEMS, exclude, test_users, test_items)
        assert local[name] == alone  # one shard is the unsharded evaluation
        assert on_ray[name] == pytest.approx(alone, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("index", [PublishIndex("exact"), PublishIndex("ivf", 16, 3, 50)])
def test_published_lists_do_not_depend_on_the_shards(ray_engine, index):
    users, items = graph()
    fns = scorers(users, items)
    # Publish rows: every model user, and 40 users the model does not know (the fallback).
    model_index = torch.cat([torch.arange(N_USERS), torch.full((40,), -1)])
    model_index = model_index[torch.randperm(model_index.numel(), generator=torch.Generator())]
    rows = torch.arange(model_index.numel())
    seen_rows = torch.randint(0, rows.numel(), (3000,), generator=torch.Generator())
    seen_items = torch.randint(0, N_ITEMS, (3000,), generator=torch.Generator())
    exclude = interaction_csr(seen_rows, seen_items, rows.numel(), N_ITEMS)
    args = (fns["model"], model_index, exclude, 10, index, N_ITEMS)
    local = rank_publish_rows(*args, fallback_fn=fns["popularity"])
    on_ray = rank_publish_rows(*args, fallback_fn=fns["popularity"], engine=ray_engine)
    for field in ("model_rows", "model_top", "fallback_rows", "fallback_top"):
        assert torch.equal(getattr(on_ray, field), getattr(local, field)), field
    torch.testing.assert_close(on_ray.model_scores, local.model_scores)
    assert on_ray.fallback_rows.numel() == 40
    assert on_ray.used["index"] == index.kind
    timing = {"ivf_build_seconds"}  # measured, not computed
    drop = lambda used: {k: v for k, v in used.items() if k not in timing}  # noqa: E731
    assert drop(on_ray.used) == pytest.approx(drop(local.used))


def day_outputs(resources, day: dt.date) -> dict:
    """What the sharded steps wrote for ``day``: pools, metrics and the published lists."""
    store = resources["artifacts"].store()
    with connect(resources) as con:
        metrics = con.execute(
            """SELECT model, metric, k, value FROM ml.metrics WHERE as_of_date = ?
               AND run_id = (SELECT arg_max(run_id, evaluated_at) FROM ml.metrics
                             WHERE as_of_date = ?)""",
            [day, day],
        ).fetchall()
        lists = con.execute(
            """SELECT user_id, list(item_id ORDER BY rank), list(model) FROM
               serving.recommendations WHERE as_of_date = ? GROUP BY user_id ORDER BY user_id""",
            [day],
        ).fetchall()
    return {
        "pools": store.get(HARD_NEGATIVES, day.isoformat()),
        "metrics": {(m, metric, k): value for m, metric, k, value in metrics},
        "lists": lists,
    }


def shard_metadata(result) -> dict:
    return {
        event.asset_key.to_user_string(): event.materialization.metadata
        for event in result.get_asset_materialization_events()
    }


def test_the_chain_on_ray_publishes_what_the_local_chain_publishes(
    ray_engine, small_landing, tmp_path
):
    resources = make_resources(small_landing, tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    assert ingest(instance, resources, SMALL_LOG.start, SMALL_LOG.end).success
    config = copy.deepcopy(RUN_CONFIG)
    # Blocks of 128 users: the 500 users' walks split into 2 shards.
    config["ops"]["hard_negatives"] = {"config": {"batch_users": 128}}
    local = run_chain(instance, resources, SMALL_LOG.end, config)
    assert local.success
    expected = day_outputs(resources, SMALL_LOG.end)
    on_ray = run_chain(
        instance,
        {**resources, "engine": ComputeEngine(kind="ray", workers=2, num_cpus=2)},
        SMALL_LOG.end,
        config,
    )
    assert on_ray.success
    got = day_outputs(resources, SMALL_LOG.end)
    assert torch.equal(got["pools"], expected["pools"])
    assert got["lists"] == expected["lists"] and len(got["lists"]) > 400
    assert got["metrics"].keys() == expected["metrics"].keys()
    assert got["metrics"] == pytest.approx(expected["metrics"], rel=1e-6, abs=1e-9)

    for name, metadata in shard_metadata(on_ray).items():
        if "shard_runs" not in metadata:
            continue
        assert metadata["engine"].value == "ray" and metadata["engine_workers"].value == 2
        table = metadata["shard_runs"].value
        assert metadata["shards"].value == len(table.records) == 2, name
        assert all(r.data["users"] > 0 and r.data["seconds"] >= 0 for r in table.records)
    sharded = {n for n, m in shard_metadata(on_ray).items() if "shard_runs" in m}
    assert sharded == {"hard_negatives", "model_evaluation", "recommendations"}
    assert shard_metadata(local)["hard_negatives"]["engine"].value == "local"

    # The run's event log: one line per shard and a summary per step, and nothing of Ray's.
    messages = [
        e.message for e in instance.all_logs(on_ray.run_id) if e.dagster_event is None and e.message
    ]
    shard_lines = [m for m in messages if "shard" in m and "done" in m]
    assert len(shard_lines) == 6, shard_lines
    assert sum("shard(s) on engine ray" in m for m in messages) == 3
    assert not [m for m in messages if "pid=" in m or "Ray" in m]


LOCAL_RUN = """
import sys, torch
import assets.definitions  # the code location, as every step process loads it
from recs_pipeline.infra.artifacts import HARD_NEGATIVES
from recs_pipeline.infra.engine import Engine
from recs_pipeline.graph.bipartite import interaction_csr
from recs_pipeline.evaluation.metrics import evaluate_scorers, inner_product
from recs_pipeline.serving.recommend import PublishIndex, rank_publish_rows
from recs_pipeline.graph.negatives import HardNegativeConfig, sharded_hard_negative_pools
engine = Engine(kind="local", workers=2)
users, items = torch.arange(40) % 20, torch.arange(40) % 15
pools, _ = sharded_hard_negative_pools(users, items, 20, 15, HardNegativeConfig(pool_size=2,
    batch_users=4), engine=engine)
fn = inner_product(torch.randn(20, 4), torch.randn(15, 4))
exclude = interaction_csr(users, items, 20, 15)
evaluate_scorers({"m": fn}, 15, exclude, users, items, ks=(5,), engine=engine)
rank_publish_rows(fn, torch.arange(20), exclude, 5, PublishIndex(), 15, engine=engine)
print("ray" in sys.modules)
"""


def test_the_local_engine_never_imports_ray():
    out = subprocess.run(
        [sys.executable, "-c", LOCAL_RUN], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1].lower()) is False


def test_shard_ranges_cover_every_user_once():
    for n, shards in [(0, 2), (1, 4), (10, 3), (500, 2)]:
        ranges = shard_ranges(n, shards)
        assert [i for r in ranges for i in r] == list(range(n))
        assert len(ranges) == max(1, min(n, shards))
