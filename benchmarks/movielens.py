"""The lecture's comparisons on MovieLens-100K with a temporal split, one command.

``python -m benchmarks.movielens --data ../shared/data/ml-100k`` trains, on the same split and
budget: MF vs NGCF vs LightGCN (BPR, uniform negatives); binary vs BPR vs sampled-softmax
loss (LightGCN); uniform vs shared vs uniform + hard-negative curriculum (LightGCN, BPR); plus
popularity and GF-CF. Results: ``benchmarks/results/movielens.json``.

Protocol
- Interactions: every rating of ``u.data`` is an implicit interaction (user saw the movie).
- Temporal split: train = ratings before the 80th percentile of timestamps, test = the rest,
  restricted to users and items seen in train; train items are excluded from the ranking.
- Validation (early stopping only): the latest 20% of the train edges of every user, carved
  from train by ``train_model`` with the real timestamps; the test fold is evaluated once.
- Budget: at most ``--epochs`` epochs and ``--time-budget-seconds`` per variant, patience 5.
- Shared negatives: one set of ``--shared`` items per mini-batch for every user in it. The JSON
  reports, per variant, the negative item embeddings gathered per mini-batch and the negative
  scores computed per mini-batch: the saving of shared negatives is the first divided by the
  second, against one gather per scored pair for per-user negatives.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import quiet_sparse_warnings, write_results
from recs_pipeline.graph import interaction_csr, normalized_adjacency
from recs_pipeline.metrics import evaluate_scorer, inner_product
from recs_pipeline.models import fit_training_free
from recs_pipeline.sampling import HardNegativeConfig, hard_negative_pools
from recs_pipeline.train import TrainConfig, train_model

KS = (10, 20, 50)


def load_temporal_split(folder: str | Path, quantile: float = 0.8):
    """(n_users, n_items, train (u, i, ts), test (u, i)) as int64 tensors, 0-based ids."""
    raw = np.loadtxt(Path(folder) / "u.data", dtype=np.int64)
    users, items, ts = raw[:, 0] - 1, raw[:, 1] - 1, raw[:, 3]
    cutoff = np.quantile(ts, quantile)
    train = ts < cutoff
    known_users, known_items = np.unique(users[train]), np.unique(items[train])
    test = ~train & np.isin(users, known_users) & np.isin(items, known_items)
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    t = torch.from_numpy
    return (
        n_users,
        n_items,
        (t(users[train]), t(items[train]), t(ts[train])),
        (t(users[test]), t(items[test])),
        {"cutoff_ts": int(cutoff), "train": int(train.sum()), "test": int(test.sum())},
    )


VARIANTS: dict[str, dict] = {
    # model comparison (BPR, one uniform negative)
    "mf/bpr/uniform": {"model": "mf"},
    "ngcf/bpr/uniform": {"model": "ngcf"},
    "lightgcn/bpr/uniform": {"model": "lightgcn"},
    # loss comparison (LightGCN)
    "lightgcn/binary/uniform": {"model": "lightgcn", "loss": "binary"},
    "lightgcn/softmax/shared": {
        "model": "lightgcn",
        "loss": "softmax",
        "uniform_negatives": 0,
        "shared": True,
    },
    # negative sampling comparison (LightGCN, BPR)
    "lightgcn/bpr/shared": {"model": "lightgcn", "uniform_negatives": 0, "shared": True},
    "lightgcn/bpr/uniform+hard-curriculum": {"model": "lightgcn", "hard": True},
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.movielens", description=__doc__)
    parser.add_argument("--data", required=True, help="folder with u.data")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--time-budget-seconds", type=float, default=60.0)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--shared", type=int, default=256, help="shared negatives per batch")
    parser.add_argument("--max-hard", type=int, default=3, help="curriculum cap")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    quiet_sparse_warnings()
    torch.set_num_threads(args.threads)

    n_users, n_items, (tu, ti, tts), (su, si), split = load_temporal_split(args.data)
    print(f"split: {split}, {n_users} users, {n_items} items")
    exclude = interaction_csr(tu, ti, n_users, n_items)
    full_adjacency = normalized_adjacency(tu, ti, n_users, n_items)
    started = time.perf_counter()
    pools = hard_negative_pools(tu, ti, n_users, n_items, HardNegativeConfig(seed=args.seed))
    pool_seconds = time.perf_counter() - started

    results: dict[str, dict] = {}
    for name in ("popularity", "gfcf"):
        started = time.perf_counter()
        model = fit_training_free(name, tu, ti, n_users, n_items)
        metrics = evaluate_scorer(model.scores, n_items, exclude, su, si, KS)
        results[name] = {"seconds": time.perf_counter() - started, **_flat(metrics)}
    for name, variant in VARIANTS.items():
        overrides = {k: v for k, v in variant.items() if k not in ("shared", "hard")}
        config = TrainConfig(
            **overrides,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            shared_negatives=args.shared if variant.get("shared") else 0,
            max_hard_negatives=args.max_hard if variant.get("hard") else 0,
            temperature=0.2 if overrides.get("loss") == "softmax" else 1.0,
            patience=5,
            eval_every=1,
            val_users=n_users,
            val_fraction=0.2,
            seed=args.seed,
            threads=args.threads,
            time_budget_s=args.time_budget_seconds,
        )
        started = time.perf_counter()
        result = train_model(
            n_users,
            n_items,
            tu,
            ti,
            tts,
            config,
            hard_pools=pools if variant.get("hard") else None,
            log=lambda message: None,
        )
        seconds = time.perf_counter() - started
        with torch.no_grad():
            user_emb, item_emb = result.model.embed(full_adjacency)
        metrics = evaluate_scorer(inner_product(user_emb, item_emb), n_items, exclude, su, si, KS)
        per_user = config.uniform_negatives + config.max_hard_negatives
        results[name] = {
            "seconds": seconds,
            "epochs_run": len(result.history),
            "best_epoch": result.best_epoch,
            "best_val_recall@20": result.best_val_recall,
            "negative_embeddings_per_batch": config.shared_negatives + config.batch_size * per_user,
            "negative_scores_per_batch": config.batch_size * (config.shared_negatives + per_user),
            "config": dataclasses.asdict(config),
            **_flat(metrics),
        }
    print(f"\n{'variant':<38}{'R@20':>8}{'N@20':>8}{'epochs':>8}{'s':>7}{'neg emb/batch':>15}")
    for name, r in results.items():
        print(
            f"{name:<38}{r['recall@20']:>8.4f}{r['ndcg@20']:>8.4f}"
            f"{r.get('epochs_run', '-')!s:>8}{r['seconds']:>7.1f}"
            f"{r.get('negative_embeddings_per_batch', '-')!s:>15}"
        )
    path = write_results(
        "movielens",
        {
            "data": args.data,
            "args": vars(args),
            "split": split,
            "pool_seconds": pool_seconds,
            "results": results,
        },
        args.out,
    )
    print(f"wrote {path}")
    return results


def _flat(metrics: dict) -> dict:
    return {f"{metric}@{k}": value for (metric, k), value in metrics.items()}


if __name__ == "__main__":
    main()
