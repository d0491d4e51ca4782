"""Time and memory of each asset at 100 M and 1 B events, projected from the measured scaling runs.

Reads ``benchmarks/results/pipeline_scaling.json`` (250k–3M events) and
``pipeline_scaling_10m.json`` (10M), both from ``benchmarks.pipeline_scaling`` on this machine,
and extends each asset's cost along the line through its two largest measurements (3M and 10M:
the steepest measured slope, so the projection errs high). Memory is the asset's peak resident
set above the process's baseline. Training is projected per *step*: the scaling runs cap an
epoch at 16 mini-batches of 16,384 edges, while a real epoch has ``train_edges / batch`` steps,
each propagating the whole graph, so a full epoch is also given. Beside the fit, the training
memory that LightGCN's tensors need by construction (embedding table, its gradient and two Adam
moments, the per-layer outputs kept for the backward pass, the adjacency in COO with int64
indices) checks the line at every size.

Writes ``benchmarks/results/scale_projection.json``; the design note in docs/distributed.md shows it.
    .venv/bin/python -m benchmarks.scale_projection
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks._common import write_results

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = (100_000_000, 1_000_000_000)
MACHINE_GIB = 24
DIM, LAYERS, BATCH = 64, 3, 16_384
STEPS_MEASURED = 16  # the scaling runs' --max-steps


def measured_sizes() -> dict[int, dict]:
    sizes: dict[int, dict] = {}
    for name in ("pipeline_scaling.json", "pipeline_scaling_10m.json"):
        for events, run in json.loads((RESULTS / name).read_text())["sizes"].items():
            sizes[int(events)] = run
    return dict(sorted(sizes.items()))


def line(points: list[tuple[float, float]], x: float) -> float:
    """The value at ``x`` of the line through the last two points."""
    (x0, y0), (x1, y1) = points[-2:]
    return y1 + (y1 - y0) / (x1 - x0) * (x - x1)


def lightgcn_training_bytes(users: int, items: int, train_edges: int) -> int:
    """Bytes LightGCN's training holds by construction: table + gradient + 2 Adam moments, the
    layers' outputs (kept for backward, and their gradients), the symmetric adjacency in COO."""
    table = (users + items) * DIM * 4
    return 4 * table + 2 * (LAYERS + 1) * table + 2 * train_edges * (8 + 8 + 4)


def project(sizes: dict[int, dict]) -> dict:
    largest = max(sizes)
    ratios = {  # users, items and train edges per event, from the largest run
        key: sizes[largest][key] / sizes[largest]["events_ingested"]
        for key in ("users", "items", "train_edges")
    }
    steps = list(sizes[largest]["steps"])
    out: dict = {"measured": {}, "projected": {}, "ratios_per_event": ratios}
    for events, run in sizes.items():
        meta = run["steps"]["trained_model"].get("metadata", {})
        out["measured"][events] = {
            "assets": {
                name: {
                    "seconds": round(step["seconds"], 2),
                    "memory_mib": round(step["peak_rss_mib"] - run["baseline_rss_mib"]),
                }
                for name, step in run["steps"].items()
            },
            "train_step_seconds": round(meta["step_seconds"] / STEPS_MEASURED, 3),
            "lightgcn_tensors_mib": round(
                lightgcn_training_bytes(run["users"], run["items"], run["train_edges"]) / 2**20
            ),
        }
    measured = out["measured"]
    for target in TARGETS:
        users, items, edges = (round(target * ratios[k]) for k in ("users", "items", "train_edges"))
        assets = {}
        for name in steps:
            seconds = [(e, m["assets"][name]["seconds"]) for e, m in measured.items()]
            memory = [(e, m["assets"][name]["memory_mib"]) for e, m in measured.items()]
            assets[name] = {
                "seconds": round(line(seconds, target)),
                "memory_gib": round(line(memory, target) / 1024, 1),
            }
        step = line([(e, m["train_step_seconds"]) for e, m in measured.items()], target)
        epoch_steps = -(-edges // BATCH)
        out["projected"][target] = {
            "users": users,
            "items": items,
            "train_edges": edges,
            "assets": assets,
            "train_step_seconds": round(step, 1),
            "full_epoch_steps": epoch_steps,
            "full_epoch_hours": round(step * epoch_steps / 3600, 1),
            "lightgcn_tensors_gib": round(lightgcn_training_bytes(users, items, edges) / 2**30, 1),
            "over_machine_memory": sorted(
                name for name, a in assets.items() if a["memory_gib"] > MACHINE_GIB
            ),
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default=None, help="default: benchmarks/results/scale_projection.json"
    )
    args = parser.parse_args(argv)
    result = project(measured_sizes())
    for target, p in result["projected"].items():
        print(f"{target:>13,} events: {p['users']:,} users, {p['items']:,} items")
        for name, a in p["assets"].items():
            print(f"  {name:<20}{a['seconds']:>9,} s{a['memory_gib']:>8.1f} GiB")
        print(
            f"  training: {p['train_step_seconds']} s a step, full epoch {p['full_epoch_steps']:,}"
            f" steps = {p['full_epoch_hours']} h; LightGCN tensors {p['lightgcn_tensors_gib']} GiB"
        )
    write_results("scale_projection", result, args.out)
    return result


if __name__ == "__main__":
    main()
