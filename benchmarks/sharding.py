"""The sharded steps on Ray with 1 and 2 workers, and what sharding through Dagster would cost.

``python -m benchmarks.sharding`` (defaults: a 1 M-event synthetic log) writes the log, runs the
chain once with the local engine (the embedded default), then, on one local Ray cluster of 2
worker slots, materialises ``hard_negatives``, ``model_evaluation`` and ``recommendations``
again with 1 and with 2 workers: seconds per step side by side, the ratio, the per-shard
table, and whether the outputs are those of the local run (they must be).

Then the figures behind choosing Ray tasks over Dagster's own fan-out (one step per shard):

- per-shard start overhead: a no-op Ray task (round trip, warm workers) against a no-op step
  of a Dagster job under the multiprocess executor (spawn, Dagster's default) and under the
  project's primed forkserver executor (``assets/platform/executor.py``), each step a process that
  loads this module and so the code location, as a real step does;
- data movement: what each shard needs (the graph for the walks, the scorer for evaluation):
  one ``ray.put`` plus a worker's fetch, against re-reading the artifacts and rebuilding the
  structures in every step (what a Dagster shard step would do).

Results: ``benchmarks/results/sharding.json``; the load (``uptime``) before and after.
"""

from __future__ import annotations

import argparse
import copy
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import torch

from assets.definitions import ALL_ASSETS
from assets.platform.executor import forkserver_executor
from benchmarks._common import quiet_sparse_warnings, write_results
from benchmarks.pipeline_scaling import spec_for
from recs_pipeline.data.synthetic import write_landing_files
from recs_pipeline.graph.bipartite import bipartite_csr, interaction_csr
from recs_pipeline.graph.negatives import edge_keys
from recs_pipeline.infra.artifacts import GRAPH, HARD_NEGATIVES
from recs_pipeline.infra.engine import Engine, map_shards
from recs_pipeline.steps.day import load_graph, load_scorer
from recs_pipeline.training.cli import add_setting_flags, settings_from_args
from resources import ArtifactStore, ComputeEngine, LogSource, Warehouse

SHARDED = ["hard_negatives", "model_evaluation", "recommendations"]
SETUP = ["interaction_split", "interaction_graph", "hard_negatives", "trained_model"]
NOOP_STEPS = 8
# The trained_model settings this benchmark takes as flags (add_setting_flags), with its defaults:
# training only sets up the sharded steps' inputs, so one epoch.
TRAIN_FLAGS = {"epochs": 1}


# --- Dagster's fan-out: a job of no-op steps, one process each --------------------------------


@dg.op
def noop() -> None:
    pass


def _fanout(executor_def: dg.ExecutorDefinition) -> dg.JobDefinition:
    @dg.job(name=f"fanout_{executor_def.name}", executor_def=executor_def)
    def fanout():
        for i in range(NOOP_STEPS):
            noop.alias(f"shard_{i}")()

    return fanout


def spawn_fanout() -> dg.JobDefinition:
    return _fanout(dg.multiprocess_executor)


def forkserver_fanout() -> dg.JobDefinition:
    return _fanout(forkserver_executor)


def dagster_step_overhead(build) -> dict:
    """Wall time of a run of NOOP_STEPS no-op steps, one at a time, and per step."""
    with tempfile.TemporaryDirectory() as home:
        Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        instance = dg.DagsterInstance.local_temp(home)
        started = time.perf_counter()
        result = dg.execute_job(
            dg.reconstructable(build),
            instance=instance,
            run_config={"execution": {"config": {"max_concurrent": 1}}},
        )
        wall = time.perf_counter() - started
        assert result.success
        starts = sorted(
            e.timestamp
            for e in instance.all_logs(result.run_id)
            if e.dagster_event and e.dagster_event.event_type_value == "STEP_START"
        )
        instance.dispose()
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    return {
        "steps": NOOP_STEPS,
        "run_seconds": round(wall, 3),
        "per_step_seconds": round(wall / NOOP_STEPS, 3),
        # Step start to next step start: one step's process start + teardown, no run set-up.
        "step_to_step_seconds": round(sorted(gaps)[len(gaps) // 2], 3) if gaps else None,
    }


# --- Ray: task round trip and the object store --------------------------------------------------


def _noop(shard, *shared):
    return None


def _nbytes(shard, obj):
    return len(pickle.dumps(obj, protocol=5))


def ray_task_overhead(engine: Engine, tasks: int) -> dict:
    """A no-op task at a time (latency), then ``tasks`` at once (throughput on the slots)."""
    map_shards(engine, _noop, [[0], [1]])  # warm both workers
    started = time.perf_counter()
    for i in range(tasks):
        map_shards(engine, _noop, [[i]])
    one_by_one = (time.perf_counter() - started) / tasks
    started = time.perf_counter()
    map_shards(engine, _noop, [[i] for i in range(tasks)])
    batch = (time.perf_counter() - started) / tasks
    return {
        "tasks": tasks,
        "round_trip_seconds": round(one_by_one, 4),
        "per_task_in_a_batch_seconds": round(batch, 4),
    }


def movement(engine: Engine, name: str, build) -> dict:
    """``build()`` (read artifacts, rebuild what a shard needs) timed, against one ray.put of
    its result and a worker's fetch of it (minus a no-op task's round trip)."""
    started = time.perf_counter()
    obj = build()
    rebuild = time.perf_counter() - started
    size = len(pickle.dumps(obj, protocol=5))
    started = time.perf_counter()
    ref = engine.share(obj)
    put = time.perf_counter() - started
    started = time.perf_counter()
    map_shards(engine, _nbytes, [[0]], ref)
    fetch = time.perf_counter() - started
    started = time.perf_counter()
    map_shards(engine, _noop, [[0]])
    fetch -= time.perf_counter() - started
    return {
        "what": name,
        "pickled_mib": round(size / 2**20, 1),
        "reread_and_rebuild_seconds": round(rebuild, 3),
        "ray_put_seconds": round(put, 3),
        "worker_fetch_seconds": round(max(fetch, 0.0), 3),
    }


# --- the sharded steps ------------------------------------------------------------------------


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--workdir", default="/tmp/recs_sharding")
    add_setting_flags(parser, TRAIN_FLAGS)
    parser.add_argument("--tasks", type=int, default=40, help="no-op Ray tasks timed")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    quiet_sparse_warnings()
    load = {"before": uptime()}
    print(load["before"])

    spec = spec_for(args.events, args.days)
    root = Path(args.workdir)
    shutil.rmtree(root, ignore_errors=True)
    write_landing_files(spec, root / "landing")
    resources = {
        "warehouse": Warehouse(database=str(root / "warehouse.duckdb")),
        "artifacts": ArtifactStore(root=str(root / "artifacts")),
        "log_source": LogSource(landing_root=str(root / "landing")),
        "engine": ComputeEngine(),
    }
    run_config = {
        "ops": {
            "interaction_split": {"config": {"window_days": args.days, "test_days": 2}},
            "trained_model": {
                "config": {
                    **settings_from_args(args, TRAIN_FLAGS),
                    "batch_size": 16384,
                    "max_steps_per_epoch": 16,
                }
            },
            "model_evaluation": {"config": {"baselines": ["popularity"]}},
        }
    }
    by_key = {a.key.to_user_string(): a for a in ALL_ASSETS}
    instance = dg.DagsterInstance.ephemeral()
    key = spec.end.isoformat()

    def materialize(name: str, engine: ComputeEngine | None = None, **kwargs) -> dict:
        started = time.perf_counter()
        result = dg.materialize(
            ALL_ASSETS,
            selection=dg.AssetSelection.assets(by_key[name]),
            instance=instance,
            resources={**resources, **({"engine": engine} if engine else {})},
            run_config={"ops": {name: run_config["ops"][name]}}
            if name in run_config["ops"]
            else {},
            **kwargs,
        )
        seconds = time.perf_counter() - started
        # The last event: an ingest of many days has one per day.
        metadata = result.get_asset_materialization_events()[-1].materialization.metadata
        shards = metadata.get("shard_runs")
        return {
            "seconds": round(seconds, 2),
            "shards": [r.data for r in shards.value.records] if shards else None,
        }

    print(f"{args.events:,} events: {spec.n_users:,} users, {spec.n_items:,} items")
    materialize(
        "raw_interactions",
        tags={
            "dagster/asset_partition_range_start": spec.start.isoformat(),
            "dagster/asset_partition_range_end": spec.end.isoformat(),
        },
    )
    for name in SETUP:
        materialize(name, partition_key=key)
    store = resources["artifacts"].store()

    def outputs() -> dict:
        with resources["warehouse"].session() as con:
            metrics = con.execute(
                """SELECT model, metric, k, value FROM ml.metrics WHERE as_of_date = ?
                   AND run_id = (SELECT arg_max(run_id, evaluated_at) FROM ml.metrics
                                 WHERE as_of_date = ?) ORDER BY ALL""",
                [spec.end, spec.end],
            ).fetchall()
            lists = con.execute(
                "SELECT user_id, rank, item_id FROM serving.recommendations"
                " WHERE as_of_date = ? ORDER BY ALL",
                [spec.end],
            ).fetchall()
        return {"pools": store.get(HARD_NEGATIVES, key), "metrics": metrics, "lists": lists}

    steps: dict[str, dict] = {}
    steps["local"] = {name: materialize(name, partition_key=key) for name in SHARDED}
    expected = outputs()
    print("local", {n: s["seconds"] for n, s in steps["local"].items()})

    cluster = Engine(kind="ray", workers=2, num_cpus=2)
    started = time.perf_counter()
    identical = {}
    with cluster.session():
        ray_init = time.perf_counter() - started
        overhead = {"ray_task": ray_task_overhead(cluster, args.tasks)}
        for workers in (1, 2):
            engine = ComputeEngine(kind="ray", workers=workers, num_cpus=2)
            run = {name: materialize(name, engine, partition_key=key) for name in SHARDED}
            steps[f"ray_{workers}"] = run
            got = outputs()
            identical[f"ray_{workers}"] = {
                "pools": torch.equal(got["pools"], expected["pools"]),
                "lists": got["lists"] == expected["lists"],
                "metrics_max_abs_diff": max(
                    abs(a[3] - b[3])
                    for a, b in zip(got["metrics"], expected["metrics"], strict=True)
                ),
            }
            print(f"ray x{workers}", {n: s["seconds"] for n, s in run.items()})

        def walk_inputs():
            graph = load_graph(store, key)
            u, i, nu, ni = graph.train_users, graph.train_items, graph.n_users, graph.n_items
            return bipartite_csr(u, i, nu, ni), interaction_csr(u, i, nu, ni), edge_keys(u, i, ni)

        def scorer():
            return load_scorer(store, key).score_fn

        data = [
            movement(cluster, "hard_negatives: graph, seen items, edge keys", walk_inputs),
            movement(cluster, "model_evaluation: the model's scorer", scorer),
        ]
    overhead["ray_local_cluster_start_seconds"] = round(ray_init, 2)
    overhead["dagster_multiprocess_spawn"] = dagster_step_overhead(spawn_fanout)
    overhead["dagster_primed_forkserver"] = dagster_step_overhead(forkserver_fanout)
    load["after"] = uptime()
    ratio = {
        name: round(steps["ray_1"][name]["seconds"] / steps["ray_2"][name]["seconds"], 2)
        for name in SHARDED
    }
    graph = load_graph(store, key)
    payload = {
        "args": vars(args),
        "load": load,
        "log": {
            "events": args.events,
            "users": graph.n_users,
            "items": graph.n_items,
            "train_edges": int(graph.train_users.numel()),
        },
        "steps": steps,
        "speedup_2_workers_over_1": ratio,
        "identical_to_local": identical,
        "overhead": overhead,
        "data_movement": data,
        "graph_artifact": store.location(GRAPH, key),
    }
    path = write_results("sharding", copy.deepcopy(payload), args.out)
    print("speedup 2 workers / 1:", ratio)
    print("overhead:", overhead)
    print("data:", data)
    print(load["after"])
    print(f"wrote {path}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
