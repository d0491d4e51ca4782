"""Seconds per training epoch with 1 and 2 data-parallel workers, side by side in one run.

The edges come from a generated log (``recs_pipeline.data.synthetic``; the demo's defaults: 4,000
users, 2,000 items, 60 days of 4,000 events, one edge per distinct user–item pair). The same
LightGCN training (the pipeline's defaults: dim 64, 3 layers, batch 4096, one uniform and up to
two hard negatives per positive) runs

- in this process with 1 torch thread (``workers_1_threads_1``) and
- on 2 worker processes of one torch thread each (``workers_2``, ``Engine(workers=2)``),

alternately for ``--rounds`` rounds, then once in this process with 2 threads
(``workers_1_threads_2``). The epoch time is the median of the runs' epochs' ``step_seconds``
(rank 0's: the ranks step together),
so process start-up and set-up are apart (``wall_seconds`` has them). Every rank propagates
over the whole graph in every step (the graph is replicated, not sharded), so only the rest of
a step divides among the workers: ``propagation_seconds_per_epoch`` is that replicated part
(LightGCN's forward and backward over the fit graph, one thread, times the steps of an
epoch), the floor of a data-parallel epoch here. The runs train the same
model: ``max_abs_param_diff`` is the largest difference of the 2-worker weights from the
1-worker ones. The machine's load (``uptime``) before and after is recorded beside the figures:
on a shared 2-core machine other processes take cores from the workers.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import math
import os
import time

import polars as pl
import torch

from benchmarks._common import median, quiet_sparse_warnings, write_results
from recs_pipeline.data.synthetic import SyntheticLogSpec, generate_events
from recs_pipeline.graph.bipartite import InteractionGraph, normalized_adjacency
from recs_pipeline.graph.negatives import HardNegativeConfig, hard_negative_pools
from recs_pipeline.infra.engine import Engine
from recs_pipeline.models import build_model
from recs_pipeline.training import TrainConfig, train_model
from recs_pipeline.training.cli import add_setting_flags, settings_from_args
from recs_pipeline.training.data_parallel import train_data_parallel

# The TrainConfig settings this benchmark takes as flags (add_setting_flags), with its defaults:
# a few epochs are enough for a median epoch time.
TRAIN_FLAGS = {"epochs": 3}


def log_edges(spec: SyntheticLogSpec):
    """(n_users, n_items, users, items, last_ts) of the log's distinct user–item pairs."""
    pairs = (
        generate_events(spec)
        .group_by("user_id", "item_id")
        .agg(pl.col("timestamp").max().alias("last_ts"))
        .sort("user_id", "item_id")
        .with_columns(
            pl.col("user_id").rank("dense").cast(pl.Int64) - 1,
            pl.col("item_id").rank("dense").cast(pl.Int64) - 1,
        )
    )
    users, items, last_ts = (pairs[c].to_torch() for c in ("user_id", "item_id", "last_ts"))
    return int(users.max()) + 1, int(items.max()) + 1, users, items, last_ts


def propagation_seconds(n_users, n_items, users, items, config, repeats: int = 5) -> float:
    """One step's replicated part: propagation forward and backward over the graph."""
    model = build_model(config.model, n_users, n_items, **config.network_params())
    adjacency = normalized_adjacency(users, items, n_users, n_items)
    started = time.perf_counter()
    for _ in range(repeats):
        user_emb, item_emb = model.embed(adjacency)
        (user_emb.sum() + item_emb.sum()).backward()
    return (time.perf_counter() - started) / repeats


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def summary(result, wall: float) -> dict:
    steps = [h["step_seconds"] for h in result.history]
    return {
        "seconds_per_epoch": median(steps),
        "epoch_seconds": [round(s, 3) for s in steps],
        "setup_seconds": result.setup_seconds,
        "wall_seconds": wall,
        "final_loss": result.history[-1]["loss"],
        "val_recall": result.best_val_recall,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.data_parallel", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--events-per-day", type=int, default=4000)
    add_setting_flags(parser, TRAIN_FLAGS)
    parser.add_argument("--rounds", type=int, default=2, help="alternating 1- and 2-worker runs")
    parser.add_argument(
        "--no-threads-2",
        dest="threads_2",
        action="store_false",
        help="skip the one-process run with 2 torch threads",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    quiet_sparse_warnings()
    spec = SyntheticLogSpec(
        start=dt.date(2026, 1, 1), days=args.days, events_per_day=args.events_per_day
    )
    n_users, n_items, users, items, last_ts = log_edges(spec)
    pools = hard_negative_pools(users, items, n_users, n_items, HardNegativeConfig())
    graph = InteractionGraph.from_edges(n_users, n_items, users, items, last_ts)
    print(f"{users.numel():,} edges, {n_users:,} users, {n_items:,} items; load {load()}")
    base = TrainConfig(
        **settings_from_args(args, TRAIN_FLAGS), eval_every=args.epochs, val_users=1000
    )
    load_before = load()

    def one_worker(threads: int) -> tuple[dict, dict]:
        started = time.perf_counter()
        config = dataclasses.replace(base, threads=threads)
        result = train_model(graph, config, hard_pools=pools, log=lambda _: None)
        return summary(result, time.perf_counter() - started), result.model.state_dict()

    def two_workers() -> tuple[dict, dict]:
        started = time.perf_counter()
        config = dataclasses.replace(base, threads=1)
        result = train_data_parallel(
            Engine(workers=2), graph, config, hard_pools=pools, log=lambda _: None
        )
        return summary(result, time.perf_counter() - started), result.model.state_dict()

    # Rounds alternate the two set-ups, so that a change of the machine's load during the run
    # falls on both; each round records the load at its start.
    rounds = []
    for _ in range(args.rounds):
        started_at = load()
        one, single_weights = one_worker(1)
        two, parallel_weights = two_workers()
        two["max_abs_param_diff"] = max(
            float((parallel_weights[name] - tensor).abs().max())
            for name, tensor in single_weights.items()
        )
        rounds.append({"load": started_at, "workers_1_threads_1": one, "workers_2": two})
    runs = {
        name: {
            "seconds_per_epoch": median([s for r in rounds for s in r[name]["epoch_seconds"]]),
            "per_round": [r[name]["seconds_per_epoch"] for r in rounds],
            "wall_seconds": median([r[name]["wall_seconds"] for r in rounds]),
            "val_recall": rounds[0][name]["val_recall"],
        }
        for name in ("workers_1_threads_1", "workers_2")
    }
    runs["workers_2"]["max_abs_param_diff"] = max(
        r["workers_2"]["max_abs_param_diff"] for r in rounds
    )
    if args.threads_2:
        runs["workers_1_threads_2"], _ = one_worker(2)
    torch.set_num_threads(1)
    steps = math.ceil(users.numel() / base.batch_size)  # about: less the validation edges
    floor = steps * propagation_seconds(n_users, n_items, users, items, base)
    for name, run in runs.items():
        print(
            f"{name:>20}: {run['seconds_per_epoch']:.2f} s per epoch"
            f" (wall {run['wall_seconds']:.1f} s, val recall {run['val_recall']:.4f})"
        )
    payload = {
        "log": spec.to_json(),
        "edges": users.numel(),
        "n_users": n_users,
        "n_items": n_items,
        "config": dataclasses.asdict(base),
        "load_before": load_before,
        "load_after": load(),
        "steps_per_epoch": steps,
        "propagation_seconds_per_epoch": floor,
        "runs": runs,
        "rounds": rounds,
    }
    print(f"{'propagation alone':>20}: {floor:.2f} s per epoch (every rank, every step)")
    path = write_results("data_parallel", payload, args.out)
    print(f"wrote {path}; load {payload['load_after']}")
    return payload


if __name__ == "__main__":
    main()
