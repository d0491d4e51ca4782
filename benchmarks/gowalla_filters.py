"""The degree-normalised filter (``dnfilter``) on Gowalla: tuned on a validation slice, tested once.

``python -m benchmarks.gowalla_filters --data ../shared/data/gowalla_lightgcn``

1. Validation slice: exactly ``benchmarks.gowalla_calibration``'s (seed 0, 5,000 random users
   with ≥ 2 train edges, the latest 20% of each one's train edges held out; the order is a seeded
   permutation since the split has no timestamps). The model is fitted once on the remaining
   train edges (its basis at the largest width of the search) and a coordinate search over
   β and γ (degree exponents before and after the filter), w (ideal weight) and k (ideal width)
   evaluates each point on that slice (validation NDCG@20 decides, recall@20 breaks ties). It
   starts from β = γ = 0.3, w = 0.2, k = 512: the best point of a first search over β ∈
   {0.2..0.5}, w ∈ {0.1..0.5}, k ∈ {256, 512} with γ = β, on the same slice (its log is in the
   JSON's ``exploration``).
2. Refit on all train edges with the chosen settings and evaluate on the test fold, once.
3. JSON in ``benchmarks/results/gowalla_filters.json``: command, search path, chosen settings,
   validation and test metrics, the validation-to-test ratio (and GF-CF's, from
   ``gowalla_calibration.json`` when present), timings and the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from benchmarks._common import RESULTS, quiet_sparse_warnings, write_results
from benchmarks.gowalla import load_lightgcn_split
from benchmarks.variants import KS, flat
from recs_pipeline.graph import interaction_csr
from recs_pipeline.metrics import evaluate_scorer
from recs_pipeline.models.dnfilter import DegreeNormalisedFilter
from recs_pipeline.train import validation_split

GRID = {
    "beta": (0.2, 0.3, 0.4, 0.5),
    "gamma": (0.1, 0.2, 0.3, 0.4),
    "weight": (0.1, 0.2, 0.3),
    "k": (256, 512, 768),
}

# The first search (γ = β, same slice; R@20, N@20 on validation), which set this one's start.
EXPLORATION = [
    {"beta": 0.2, "weight": 0.2, "k": 512, "recall@20": 0.2144, "ndcg@20": 0.1419},
    {"beta": 0.3, "weight": 0.2, "k": 512, "recall@20": 0.2169, "ndcg@20": 0.1431},
    {"beta": 0.4, "weight": 0.2, "k": 512, "recall@20": 0.2136, "ndcg@20": 0.1409},
    {"beta": 0.5, "weight": 0.2, "k": 512, "recall@20": 0.2105, "ndcg@20": 0.1371},
    {"beta": 0.3, "weight": 0.1, "k": 512, "recall@20": 0.2161, "ndcg@20": 0.1430},
    {"beta": 0.3, "weight": 0.3, "k": 512, "recall@20": 0.2147, "ndcg@20": 0.1420},
    {"beta": 0.3, "weight": 0.5, "k": 512, "recall@20": 0.2123, "ndcg@20": 0.1405},
    {"beta": 0.3, "weight": 0.2, "k": 256, "recall@20": 0.2121, "ndcg@20": 0.1401},
]


def coordinate_search(model, score, start: dict, grid: dict, passes: int, log) -> tuple:
    """Coordinate ascent on ``score(model)`` (validation NDCG@20, recall@20 breaking ties)."""
    cache: dict[tuple, dict] = {}

    def value(point: dict) -> dict:
        key = tuple(point[name] for name in grid)
        if key not in cache:
            started = time.perf_counter()
            metrics = score(model.retune(**point))
            cache[key] = {**point, **metrics, "seconds": time.perf_counter() - started}
            log(
                f"  β={point['beta']:<4} γ={point['gamma']:<4} w={point['weight']:<4} k={point['k']:<4}"
                f" R@20 {metrics['recall@20']:.4f} N@20 {metrics['ndcg@20']:.4f}"
                f" ({cache[key]['seconds']:.1f} s)"
            )
        return cache[key]

    def key(result: dict) -> tuple:
        return result["ndcg@20"], result["recall@20"]

    best = dict(start)
    for _ in range(passes):
        before = dict(best)
        for name, values in grid.items():
            tried = [value({**best, name: v}) for v in values]
            winner = max(tried, key=key)
            best = {n: winner[n] for n in grid}
        if best == before:
            break
    return best, list(cache.values())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gowalla_filters")
    parser.add_argument("--data", required=True)
    parser.add_argument("--val-users", type=int, default=5000)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=4, help="subspace iterations")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    quiet_sparse_warnings()
    started = time.perf_counter()
    load_before = os.getloadavg()
    n_users, n_items, tu, ti, su, si = load_lightgcn_split(args.data)
    last_ts = torch.randperm(tu.numel(), generator=torch.Generator().manual_seed(args.seed))
    generator = torch.Generator().manual_seed(args.seed)
    held = validation_split(tu, last_ts, n_users, args.val_users, generator, args.val_fraction)
    fu, fi, vu, vi = tu[~held], ti[~held], tu[held], ti[held]

    # 1. search on the validation slice
    t = time.perf_counter()
    search_model = DegreeNormalisedFilter(
        k=max(GRID["k"]), iterations=args.iterations, seed=args.seed
    ).fit(fu, fi, n_users, n_items)
    val_fit_seconds = time.perf_counter() - t
    val_exclude = interaction_csr(fu, fi, n_users, n_items)

    def validation(model) -> dict:
        return flat(evaluate_scorer(model.scores, n_items, val_exclude, vu, vi, KS))

    print(f"validation fit {val_fit_seconds:.1f} s; coordinate search:", flush=True)
    t = time.perf_counter()
    start = {"beta": 0.3, "gamma": 0.3, "weight": 0.2, "k": 512}
    chosen, tried = coordinate_search(
        search_model, validation, start, GRID, args.passes, lambda m: print(m, flush=True)
    )
    search_seconds = time.perf_counter() - t
    validation_metrics = {
        k: v
        for k, v in next(r for r in tried if all(r[n] == chosen[n] for n in GRID)).items()
        if k not in GRID and k != "seconds"
    }
    del search_model
    tuning_seconds = time.perf_counter() - started

    # 2. refit on all train edges, evaluate on test once
    end_to_end = time.perf_counter()
    t = time.perf_counter()
    model = DegreeNormalisedFilter(**chosen, iterations=args.iterations, seed=args.seed).fit(
        tu, ti, n_users, n_items
    )
    fit_seconds = time.perf_counter() - t
    t = time.perf_counter()
    exclude = interaction_csr(tu, ti, n_users, n_items)
    test_metrics = flat(evaluate_scorer(model.scores, n_items, exclude, su, si, KS))
    eval_seconds = time.perf_counter() - t
    end_to_end = time.perf_counter() - end_to_end

    ratio = {m: test_metrics[m] / validation_metrics[m] for m in ("recall@20", "ndcg@20")}
    calibration = {"dnfilter test/validation": ratio}
    reference = RESULTS / "gowalla_calibration.json"
    if reference.exists():
        gfcf = json.loads(reference.read_text())["results"]
        calibration["gfcf test/validation (gowalla_calibration.json)"] = {
            m: gfcf["test"]["gfcf"][m] / gfcf["validation"]["gfcf"][m]
            for m in ("recall@20", "ndcg@20")
        }
    print(f"chosen {chosen}")
    print(
        f"validation R@20 {validation_metrics['recall@20']:.4f} N@20 "
        f"{validation_metrics['ndcg@20']:.4f}"
    )
    print(
        f"test       R@20 {test_metrics['recall@20']:.4f} N@20 {test_metrics['ndcg@20']:.4f}"
        f"  (fit {fit_seconds:.1f} s, evaluation {eval_seconds:.1f} s, end to end "
        f"{end_to_end:.1f} s; load {os.getloadavg()})"
    )
    payload = {
        "args": vars(args),
        "validation_slice": "benchmarks.gowalla_calibration's: train_model.validation_split, "
        f"seed {args.seed}, {args.val_users} users, latest {args.val_fraction:.0%} of their "
        "train edges (seeded permutation as time)",
        "grid": GRID,
        "exploration": EXPLORATION,
        "search_start": start,
        "search": tried,
        "chosen": {**chosen, "iterations": args.iterations, "seed": args.seed},
        "validation": validation_metrics,
        "test": test_metrics,
        "calibration": calibration,
        "seconds": {
            "validation_fit": val_fit_seconds,
            "search": search_seconds,
            "tuning_total": tuning_seconds,
            "fit": fit_seconds,
            "evaluation": eval_seconds,
            "end_to_end_fit_and_test": end_to_end,
        },
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    path = write_results("gowalla_filters", payload, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
