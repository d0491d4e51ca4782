"""The lecture's comparisons on the Gowalla split, every variant on the same split and budget.

One command (the data is read where it lies, never copied):

    .venv/bin/python -m benchmarks.gowalla_lecture --data ../shared/data/gowalla_lightgcn

Variants (``benchmarks.variants.VARIANTS``, shared with the MovieLens benchmark; those needing
item features are left out): NGCF vs LightGCN vs MF vs PinSAGE (BPR, one uniform negative), binary vs BPR vs sampled softmax
(LightGCN), uniform vs shared vs uniform + hard-negative curriculum (LightGCN, BPR); popularity
and GF-CF beside them. Every trained variant gets the same wall-clock budget
(``--time-budget-minutes``), batch size, learning rate, spectral initialisation and early
stopping on a validation slice carved from train (20% of the train edges of 5,000 users);
Recall@20 and NDCG@20 are the papers' full-ranking metrics on the test fold. Results:
``benchmarks/results/gowalla_lecture.json``.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks._common import quiet_sparse_warnings, write_results
from benchmarks.gowalla import load_lightgcn_split
from benchmarks.variants import VARIANTS, print_table, run_training_free, run_variant
from recs_pipeline.graph.bipartite import interaction_csr, normalized_adjacency
from recs_pipeline.graph.negatives import HardNegativeConfig, hard_negative_pools
from recs_pipeline.training.cli import add_setting_flags, settings_from_args

# The TrainConfig settings this benchmark takes as flags (add_setting_flags), with its defaults:
# every trained variant gets the same budget, batch size, learning rate and validation slice.
TRAIN_FLAGS = {
    "time_budget_minutes": 3.0,
    "epochs": 1000,
    "batch_size": 8192,
    "lr": 5e-3,
    "val_users": 5000,
    "threads": 2,
    "seed": 0,
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gowalla_lecture")
    parser.add_argument("--data", required=True, help="folder with train.txt and test.txt")
    parser.add_argument(
        "--variants",
        default=",".join(n for n, v in VARIANTS.items() if not v.get("features")),
        help="comma-separated (Gowalla has no item features)",
    )
    add_setting_flags(parser, TRAIN_FLAGS)
    # shared_negatives and max_hard_negatives of only the variants that use them (others: 0).
    parser.add_argument("--shared", type=int, default=2048, help="shared negatives per batch")
    parser.add_argument("--max-hard", type=int, default=3, help="curriculum cap")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    quiet_sparse_warnings()
    torch.set_num_threads(args.threads)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")

    n_users, n_items, tu, ti, su, si = load_lightgcn_split(args.data)
    # No timestamps: a seeded random order makes each validation edge a random train item.
    last_ts = torch.randperm(tu.numel(), generator=torch.Generator().manual_seed(args.seed))
    exclude = interaction_csr(tu, ti, n_users, n_items)
    full_adjacency = normalized_adjacency(tu, ti, n_users, n_items)
    started = time.perf_counter()
    pools = None
    if any(VARIANTS[n].get("hard") for n in names):
        pools = hard_negative_pools(tu, ti, n_users, n_items, HardNegativeConfig(seed=args.seed))
    pool_seconds = time.perf_counter() - started

    results = run_training_free(("popularity", "gfcf"), tu, ti, n_users, n_items, exclude, su, si)
    common = {
        **settings_from_args(args, TRAIN_FLAGS),
        "init": "spectral",
        "patience": 3,
        "eval_every": 1,
        "val_fraction": 0.2,
    }
    for name in names:
        results[name] = run_variant(
            VARIANTS[name],
            common,
            args.shared,
            args.max_hard,
            (n_users, n_items, tu, ti, last_ts),
            full_adjacency,
            pools,
            exclude,
            (su, si),
            log=lambda message, name=name: print(f"[{name}] {message}", flush=True),
        )
    print_table(results)
    path = write_results(
        "gowalla_lecture",
        {
            "data": args.data,
            "args": vars(args),
            "hard_negative_pool_seconds": pool_seconds,
            "results": results,
        },
        args.out,
    )
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
