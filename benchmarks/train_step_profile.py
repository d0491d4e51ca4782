"""Why a trained_model epoch grows faster than the log: where its time goes as the graph grows.

Two measurements, in one process:

- ``spmm``: the per-nonzero cost of a sparse CSR × dense (dim 64) product, the propagation
  at the heart of every LightGCN step, for node counts whose embedding table fits the CPU's
  last-level cache and for ones that do not (mean degree 40, power-law columns).
- ``epoch``: one epoch of the pipeline's default regime (as in ``benchmarks.pipeline_scaling``:
  at most 16 steps, BPR, one uniform negative per positive) on random power-law graphs sized
  like that benchmark's train splits (1 user per 25 events, 1 item per 100, 80% of events in
  train), under ``torch.profiler``: step seconds and the self CPU seconds of the top operators.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks._common import quiet_sparse_warnings, write_results
from recs_pipeline.graph.bipartite import InteractionGraph
from recs_pipeline.training import TrainConfig, train_model


def power_law_edges(n_rows, n_cols, nnz, generator):
    rows = torch.randint(0, n_rows, (nnz,), generator=generator)
    cols = (torch.rand(nnz, generator=generator) ** 2 * n_cols).long()
    return rows, cols


def spmm_cost(nodes: int, degree: int, repeats: int, generator) -> dict:
    rows, cols = power_law_edges(nodes, nodes, nodes * degree, generator)
    cols = torch.randperm(nodes, generator=generator)[cols]  # popular nodes scattered
    matrix = (
        torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.ones(rows.numel()), (nodes, nodes))
        .coalesce()
        .to_sparse_csr()
    )
    dense = torch.randn(nodes, 64, generator=generator)
    matrix @ dense
    started = time.perf_counter()
    for _ in range(repeats):
        matrix @ dense
    seconds = (time.perf_counter() - started) / repeats
    return {
        "nodes": nodes,
        "nonzeros": matrix._nnz(),
        "table_mib": nodes * 64 * 4 / 2**20,
        "ms": 1e3 * seconds,
        "ns_per_nonzero": 1e9 * seconds / matrix._nnz(),
    }


def epoch_profile(events: int, generator, top: int) -> dict:
    n_users, n_items = events // 25, events // 100
    users, items = power_law_edges(n_users, n_items, int(0.8 * events), generator)
    config = TrainConfig(
        epochs=1, batch_size=16384, max_steps_per_epoch=16, eval_every=1, threads=2
    )
    graph = InteractionGraph.from_edges(n_users, n_items, users, items, torch.arange(users.numel()))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        result = train_model(graph, config, log=lambda _: None)
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    edges = users.numel()
    record = result.history[0]
    return {
        "events": events,
        "edges": edges,
        "nodes": n_users + n_items,
        "embedding_table_mib": (n_users + n_items) * 64 * 4 / 2**20,
        "setup_seconds": result.setup_seconds,
        "step_seconds": record["step_seconds"],
        "step_seconds_per_million_edges": record["step_seconds"] / (edges / 1e6),
        "validation_seconds": record["val_seconds"],
        "top_ops_self_seconds": {e.key: e.self_cpu_time_total / 1e6 for e in ops},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.train_step_profile", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--nodes", default="50000,150000,500000", help="spmm node counts")
    parser.add_argument("--events", default="1000000,3000000,10000000", help="epoch sizes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top", type=int, default=8, help="operators kept per size")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    quiet_sparse_warnings()
    torch.set_num_threads(2)
    generator = torch.Generator().manual_seed(0)
    spmm = []
    for nodes in [int(n) for n in args.nodes.split(",") if n.strip()]:
        spmm.append(spmm_cost(nodes, 40, args.repeats, generator))
        print(
            f"spmm {nodes:>9,} nodes ({spmm[-1]['table_mib']:.0f} MiB table):"
            f" {spmm[-1]['ns_per_nonzero']:.1f} ns per nonzero"
        )
    epochs = []
    for events in [int(n) for n in args.events.split(",") if n.strip()]:
        epochs.append(epoch_profile(events, generator, args.top))
        e = epochs[-1]
        ops = ", ".join(f"{k} {v:.1f}" for k, v in list(e["top_ops_self_seconds"].items())[:4])
        print(
            f"epoch {events:>11,} events: {e['step_seconds']:.1f} s of steps"
            f" ({e['step_seconds_per_million_edges']:.1f} s per million edges); {ops}"
        )
    path = write_results("train_step_profile", {"spmm": spmm, "epochs": epochs}, args.out)
    print(f"wrote {path}")
    return {"spmm": spmm, "epochs": epochs}


if __name__ == "__main__":
    main()
