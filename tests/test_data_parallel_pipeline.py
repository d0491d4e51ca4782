"""The pipeline's model trained data parallel: the chain with an engine of two workers on a
real local Ray cluster passes the gate, and its model.pt is the one a single process trains
from the same stored inputs."""

import dataclasses

import dagster as dg
import torch

from recs_pipeline.infra.artifacts import GRAPH, HARD_NEGATIVES, MODEL
from recs_pipeline.steps.day import load_graph
from recs_pipeline.training import TrainConfig, train_model
from resources import ComputeEngine
from tests.conftest import make_resources
from tests.test_pipeline import DAY_2, RUN_CONFIG, SMALL_LOG, ingest, run_chain

EPOCHS = 6  # enough to pass the gate on the small log (validation recall flat after that)
SHORT = {"ops": {**RUN_CONFIG["ops"], "trained_model": {"config": {
    **RUN_CONFIG["ops"]["trained_model"]["config"], "epochs": EPOCHS,
}}}}  # fmt: skip


def test_chain_with_two_ray_workers_passes_the_gate_with_the_single_process_model(
    small_landing, tmp_path, no_ray_session
):
    resources = {
        **make_resources(small_landing, tmp_path),
        # Two one-CPU actors in a placement group of a cluster the step starts and stops (the
        # one test of that path through Dagster: the session's shared cluster is stopped first,
        # no_ray_session, so the step does not join it).
        "engine": ComputeEngine(kind="ray", workers=2, num_cpus=2),
    }
    instance = dg.DagsterInstance.ephemeral()
    assert ingest(instance, resources, SMALL_LOG.start, SMALL_LOG.end).success
    result = run_chain(instance, resources, DAY_2, SHORT)
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["beats_popularity"] and set(checks) == {
        "beats_popularity",
        "beats_every_baseline",
    }
    trained = result.asset_materializations_for_node("trained_model")[0].metadata
    assert trained["training_workers"].value == 2

    # The same training in this process, from the artifacts the chain stored.
    store = resources["artifacts"].store()
    key = DAY_2.isoformat()
    saved = store.get(MODEL, key)
    graph = load_graph(store, key)
    assert store.has(GRAPH, key) and saved["warm_start"] is None  # no D-1 model: a cold start
    # One thread: the same maths, and this process's threads would fight the machine's load.
    config = dataclasses.replace(TrainConfig(**saved["train_config"]), threads=1)
    assert config.epochs == EPOCHS
    threads = torch.get_num_threads()
    try:
        single = train_model(
            graph, config, hard_pools=store.get(HARD_NEGATIVES, key), log=lambda _: None
        )
    finally:
        torch.set_num_threads(threads)
    assert saved["best_epoch"] == single.best_epoch
    for name, tensor in single.model.state_dict().items():
        torch.testing.assert_close(saved["state_dict"][name], tensor, atol=1e-5, rtol=1e-4)
