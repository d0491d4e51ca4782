"""How much of a training-free teacher's ranking a rank-k dot-product model can hold.

``python -m benchmarks.gowalla_rank_limit --data ../shared/data/gowalla_lightgcn [--param …]``

A LightGCN student scores ⟨e_u, e_i⟩ with 64-dimensional final embeddings, so its score matrix
has rank at most 64; propagation adds no rank (the final embeddings are a polynomial in the
normalised adjacency applied to the layer-0 table). This fits the teacher (dnfilter with the
``--param NAME=VALUE`` settings) on all train edges, forms its dense score matrix over every user and
item, and replaces it by its best rank-k approximation in the least-squares sense (a randomised
SVD, Halko et al. 2011), for several k. Each approximation is then ranked like any model: full
ranking, train items excluded, Gowalla's test fold.

Before the SVD each user's row is put on one scale, since a ranking ignores a user's scale and
the least-squares fit should too: ``standardised`` centres each row on its unseen items' mean
and divides by their standard deviation, with train items set to that mean; ``raw`` only zeroes
the train items. Neither is the best rank-k *ranking* of the teacher's order (no closed form
exists), so a trained student can in principle beat these figures; they say how far the
teacher's order reaches into its low-rank part. The teacher is scored in full beside them.
Results: ``benchmarks/results/gowalla_rank_limit.json``.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks._common import machine, process_peak_mib, quiet_sparse_warnings, write_results
from benchmarks.gowalla import fit_filter, load_lightgcn_split
from benchmarks.variants import flat
from recs_pipeline.config import SettingError
from recs_pipeline.evaluation.metrics import evaluate_scorer, inner_product
from recs_pipeline.graph.bipartite import csr_rows, interaction_csr
from recs_pipeline.models import TRAINING_FREE
from recs_pipeline.training import TrainConfig
from recs_pipeline.training.cli import add_param_flags, add_setting_flags, params_from_args

RANKS = (32, 64, 128, 256, 512)
KS = (10, 20, 50)
TRANSFORMS = ("standardised", "raw")
# The TrainConfig settings this benchmark takes as flags (add_setting_flags), with its defaults:
# the seed is the teacher's (as benchmarks.gowalla fits it) and the SVD's.
TRAIN_FLAGS = {"threads": 2, "seed": 0}


def summary(metrics: dict, ks: list[int]) -> str:
    k = 20 if 20 in ks else ks[-1]
    return f"recall@{k} {metrics[('recall', k)]:.4f} ndcg@{k} {metrics[('ndcg', k)]:.4f}"


def teacher_matrix(
    teacher, n_users: int, n_items: int, exclude: torch.Tensor, transform: str, batch: int = 2048
) -> torch.Tensor:
    """The teacher's (n_users × n_items) scores, rows transformed as the module docstring says."""
    dense = torch.empty(n_users, n_items)
    for start in range(0, n_users, batch):
        users = torch.arange(start, min(start + batch, n_users))
        scores = teacher.scores(users)
        seen = torch.zeros_like(scores, dtype=torch.bool)
        seen[csr_rows(exclude, users)] = True
        if transform == "standardised":
            unseen = (~seen).float()
            count = unseen.sum(1, keepdim=True).clamp(min=1)
            mean = (scores * unseen).sum(1, keepdim=True) / count
            var = ((scores - mean).square() * unseen).sum(1, keepdim=True) / count
            scores = (scores - mean) / var.sqrt().clamp(min=1e-12)
        scores[seen] = 0.0
        dense[users] = scores
    return dense


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gowalla_rank_limit")
    parser.add_argument("--data", required=True)
    parser.add_argument("--teacher", default="dnfilter", choices=sorted(TRAINING_FREE))
    parser.add_argument("--ranks", default=",".join(map(str, RANKS)))
    parser.add_argument("--transforms", default=",".join(TRANSFORMS))
    parser.add_argument("--oversample", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=3)
    add_setting_flags(parser, TRAIN_FLAGS)
    parser.add_argument("--ks", default=",".join(map(str, KS)), help="cut-offs of the metrics")
    parser.add_argument("--out", default=None)
    add_param_flags(parser, distill=False)
    args = parser.parse_args(argv)
    quiet_sparse_warnings()
    torch.set_num_threads(args.threads)
    ranks = sorted(int(r) for r in args.ranks.split(","))
    ks = sorted(int(k) for k in args.ks.split(","))
    transforms = [t for t in args.transforms.split(",") if t]
    if ranks[0] < 1:
        parser.error("ranks must be at least 1")
    for t in transforms:
        if t not in TRANSFORMS:
            parser.error(f"transform {t!r}: choose from {TRANSFORMS}")
    try:
        config = TrainConfig(model=args.teacher, **params_from_args(args, args.teacher, None))
    except SettingError as error:
        parser.error(str(error))

    data = load_lightgcn_split(args.data)
    n_users, n_items, tu, ti, su, si = data
    if ranks[-1] > min(n_users, n_items):
        parser.error(f"rank {ranks[-1]} exceeds the score matrix ({n_users} × {n_items})")
    exclude = interaction_csr(tu, ti, n_users, n_items)
    started = time.perf_counter()
    teacher, settings = fit_filter(config, args.teacher, args.seed, data)
    results = {
        "teacher": {
            "name": args.teacher,
            "settings": settings,
            "fit_seconds": time.perf_counter() - started,
        }
    }
    metrics = evaluate_scorer(teacher.scores, n_items, exclude, su, si, ks)
    results["teacher"]["test"] = flat(metrics)
    print(f"teacher: {summary(metrics, ks)}")

    for transform in transforms:
        started = time.perf_counter()
        dense = teacher_matrix(teacher, n_users, n_items, exclude, transform)
        width = min(ranks[-1] + args.oversample, *dense.shape)
        # svd_lowrank draws its random start from torch's global generator: seeded here, so
        # the figures do not depend on what ran before in the process.
        torch.manual_seed(args.seed)
        u, s, v = torch.svd_lowrank(dense, q=width, niter=args.iterations)
        del dense
        rows = {"svd_seconds": time.perf_counter() - started, "by_rank": {}}
        for rank in ranks:
            user_emb = (u[:, :rank] * s[:rank]).contiguous()
            item_emb = v[:, :rank].contiguous()
            metrics = evaluate_scorer(
                inner_product(user_emb, item_emb), n_items, exclude, su, si, ks
            )
            rows["by_rank"][rank] = flat(metrics)
            print(f"{transform} rank {rank}: {summary(metrics, ks)}", flush=True)
        results[transform] = rows
        del u, s, v

    payload = {
        "machine": machine(),
        "data": str(args.data),
        "args": vars(args),
        "protocol": "rank-k least-squares approximation of the teacher's transformed score"
        " matrix; full ranking, train items excluded, test fold",
        "results": results,
        "process_peak_rss_mib": process_peak_mib(),
    }
    path = write_results("gowalla_rank_limit", payload, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
