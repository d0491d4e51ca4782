"""The lecture's comparisons on MovieLens-100K with a temporal split, one command.

``python -m benchmarks.movielens --data ../shared/data/ml-100k`` trains, on the same split and
budget: MF vs NGCF vs LightGCN (BPR, uniform negatives); binary vs BPR vs sampled-softmax
loss (LightGCN); uniform vs shared vs uniform + hard-negative curriculum (LightGCN, BPR); PinSAGE
without and with the genre flags of ``u.item`` as item features; plus the training-free
popularity, GF-CF and dnfilter; with ``--distill dnfilter`` (or any training-free teacher) the
LightGCN variants of ``DISTILLED`` again, ranked-distilled from that teacher as in the Gowalla
table; and a cold-item check (below). Results: ``benchmarks/results/movielens.json``.

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
- PinSAGE: one convolution (``layers`` 1; one layer scored higher validation recall than two
  in trial runs), the model's default neighbourhoods (top 100 of 128 walks of 8 steps).
  Before test scoring every model gets ``attach_graph`` with the full train edges (a no-op
  except for PinSAGE, which rebuilds its neighbourhoods from them).

Cold-item check (``cold_items`` in the JSON)
- ``--cold-items`` items drawn at random among those with at least ``--cold-min-train`` train
  interactions lose all their train interactions; every model of the check trains on the rest.
- Ground truth: each user's interactions with those items, train period (the removed edges)
  and test period; users need at least one remaining train edge. Ranking: among the cold items
  only, so that recall@K of a random ranking is K / (number of cold items).
- Compared: PinSAGE with genre features, PinSAGE without features (every cold item then gets
  the same embedding), a genre-profile content baseline (score = user's genre counts over
  their train items · item's genre flags), and the random ranking's expected recall.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import fmt, quiet_sparse_warnings, write_results
from benchmarks.variants import (
    KS,
    VARIANTS,
    flat,
    print_table,
    run_training_free,
    run_variant,
    variant_config,
)
from recs_pipeline.evaluation.metrics import evaluate_embeddings
from recs_pipeline.graph.bipartite import InteractionGraph, interaction_csr, normalized_adjacency
from recs_pipeline.graph.negatives import HardNegativeConfig, hard_negative_pools
from recs_pipeline.training import train_model
from recs_pipeline.training.cli import add_setting_flags, settings_from_args
from recs_pipeline.training.config import LISTWISE_DISTILL
from recs_pipeline.training.validation import validation_split


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


def load_genres(folder: str | Path, n_items: int) -> torch.Tensor:
    """The 19 genre flags of ``u.item`` (latin-1, ``|``-separated) as an (n_items, 19) float
    tensor, row i for item id i + 1; a movie can have several genres."""
    genres = torch.zeros(n_items, 19)
    for line in (Path(folder) / "u.item").read_text(encoding="latin-1").splitlines():
        if line.strip():
            fields = line.split("|")
            genres[int(fields[0]) - 1] = torch.tensor([float(f) for f in fields[5:24]])
    return genres


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.movielens", description=__doc__)
    parser.add_argument("--data", required=True, help="folder with u.data")
    add_setting_flags(parser, TRAIN_FLAGS)
    parser.add_argument("--time-budget-seconds", type=float, default=60.0)
    # shared_negatives and max_hard_negatives of only the variants that use them (others: 0).
    parser.add_argument("--shared", type=int, default=256, help="shared negatives per batch")
    parser.add_argument("--max-hard", type=int, default=3, help="curriculum cap")
    parser.add_argument("--cold-items", type=int, default=200, help="items made cold")
    parser.add_argument("--cold-min-train", type=int, default=5, help="their min train degree")
    parser.add_argument("--only", nargs="*", default=None, help="run only these variants")
    parser.add_argument(
        "--training-free",
        nargs="*",
        default=["popularity", "gfcf", "dnfilter"],
        help="training-free models fitted beside the variants (their default settings)",
    )
    # Not TrainConfig's distill (one teacher of a run): a list of teachers, each an extra run.
    parser.add_argument(
        "--distill",
        nargs="*",
        default=[],
        metavar="TEACHER",
        help="also train the LightGCN variants of DISTILLED with ranked distillation from each"
        " training-free TEACHER (e.g. dnfilter), run even where --only omits them",
    )
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-item check")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    quiet_sparse_warnings()
    torch.set_num_threads(args.threads)

    n_users, n_items, (tu, ti, tts), (su, si), split = load_temporal_split(args.data)
    genres = load_genres(args.data, n_items)
    print(f"split: {split}, {n_users} users, {n_items} items")
    exclude = interaction_csr(tu, ti, n_users, n_items)
    full_adjacency = normalized_adjacency(tu, ti, n_users, n_items)
    started = time.perf_counter()
    pools = hard_negative_pools(tu, ti, n_users, n_items, HardNegativeConfig(seed=args.seed))
    pool_seconds = time.perf_counter() - started

    results = run_training_free(
        args.training_free, tu, ti, n_users, n_items, exclude, su, si, filter_settings(args)
    )
    on_validation = training_free_on_validation(args, n_users, n_items, (tu, ti, tts))
    distilled = distilled_variants(args.distill)
    for name, variant in (VARIANTS | distilled).items():
        if args.only is not None and name not in args.only and name not in distilled:
            continue
        results[name] = run_variant(
            variant,
            common_config(args, n_users),
            args.shared,
            args.max_hard,
            (n_users, n_items, tu, ti, tts),
            full_adjacency,
            pools,
            exclude,
            (su, si),
            item_features=genres,
        )
    print_table(results)
    cold = (
        {"n_cold_items": 0, "n_users": 0, "results": {}, "skipped": True}
        if args.no_cold
        else cold_item_check(args, n_users, n_items, (tu, ti, tts), (su, si), genres)
    )
    print(f"\ncold items: {cold['n_cold_items']} items, {cold['n_users']} users")
    for name, r in cold["results"].items():
        print(f"{name:<38}{r['recall@20']:>8.4f}{fmt(r['ndcg@20']):>8}")
    path = write_results(
        "movielens",
        {
            "data": args.data,
            "args": vars(args),
            "split": split,
            "pool_seconds": pool_seconds,
            "results": results,
            "training_free_on_validation": on_validation,
            "cold_items": cold,
        },
        args.out,
    )
    print(f"wrote {path}")
    return results


# dnfilter beside its defaults: the user-exponent grid's pick on Gowalla's random validation
# slice, that pick with GF-CF's user normalisation back (docs/benchmarks/movielens.md says why), and
# the pick on Gowalla's file-order slice (benchmarks.gowalla_filters --holdout file-order).
GOWALLA_PICK = {"user_exponent": 0.3, "weight": 0.3, "k": 1024}
GOWALLA_FILE_ORDER_PICK = {"user_exponent": 0.3, "beta": 0.3, "gamma": 0.5, "weight": 0.1}
GOWALLA_FILE_ORDER_PICK |= {"sharpen": 1.0, "k": 1024}
FILTER_SETTINGS = {
    "dnfilter, Gowalla's a 0.3 pick": ("dnfilter", GOWALLA_PICK),
    "dnfilter, that pick with a ½": ("dnfilter", GOWALLA_PICK | {"user_exponent": 0.5}),
    "dnfilter, Gowalla's file-order pick": ("dnfilter", GOWALLA_FILE_ORDER_PICK),
}


def filter_settings(args) -> dict[str, tuple[str, dict]]:
    """FILTER_SETTINGS whose model is among ``--training-free``."""
    return {k: v for k, v in FILTER_SETTINGS.items() if v[0] in args.training_free}


# The variants trained again with a teacher: the softmax regime of the Gowalla table's distilled
# LightGCN, and the BPR regime that scores best among this split's trained LightGCNs.
DISTILLED = ("lightgcn/bpr/uniform", "lightgcn/softmax/shared")


def distilled_variants(teachers: list[str]) -> dict[str, dict]:
    """``<variant>+distill:<teacher>`` for each of DISTILLED: the variant with the teacher's top
    20 unseen items per user as extra positives, the r-th weighted 1/log2(r + 2); and
    ``+distill-listwise:<teacher>`` for its softmax variant, list-wise at teacher weight 4."""
    ranked = {
        f"{name}+distill:{teacher}": VARIANTS[name] | {"distill": teacher, "distill_ranked": True}
        for teacher in teachers
        for name in DISTILLED
    }
    # The teacher settings that met the Gowalla trained target, on the softmax variant.
    listwise = {
        f"{name}+distill-listwise:{teacher}": VARIANTS[name]
        | {"distill": teacher, **LISTWISE_DISTILL}
        for teacher in teachers
        for name in DISTILLED
        if VARIANTS[name].get("loss") == "softmax"
    }
    return ranked | listwise


def training_free_on_validation(args, n_users: int, n_items: int, train) -> dict[str, dict]:
    """The training-free models fitted on the fit edges of the variants' validation split and
    scored on its held edges: what early stopping sees of a teacher (docs/benchmarks/movielens.md's reading of
    why distilled students do not follow theirs on this split)."""
    tu, ti, tts = train
    config = common_config(args, n_users)
    generator = torch.Generator().manual_seed(args.seed)
    held = validation_split(
        tu, tts, n_users, config["val_users"], generator, config["val_fraction"]
    )
    fu, fi = tu[~held], ti[~held]
    exclude = interaction_csr(fu, fi, n_users, n_items)
    results = run_training_free(
        args.training_free,
        fu,
        fi,
        n_users,
        n_items,
        exclude,
        tu[held],
        ti[held],
        filter_settings(args),
    )
    for name, r in results.items():
        print(f"validation {name:<28}{r['recall@20']:>8.4f}{r['ndcg@20']:>8.4f}")
    return results


# The TrainConfig settings this benchmark takes as flags (add_setting_flags), with its defaults;
# the time budget is this benchmark's own --time-budget-seconds.
TRAIN_FLAGS = {"epochs": 200, "batch_size": 2048, "lr": 5e-3, "threads": 2, "seed": 0}


def common_config(args, n_users: int) -> dict:
    """TrainConfig fields every variant shares on this split."""
    return {
        **settings_from_args(args, TRAIN_FLAGS),
        "patience": 5,
        "eval_every": 1,
        "val_users": n_users,
        "val_fraction": 0.2,
        "time_budget_minutes": args.time_budget_seconds / 60,
    }


def cold_item_check(args, n_users: int, n_items: int, train, test, genres: torch.Tensor) -> dict:
    """Recall among held-out cold items: PinSAGE with vs without genre features (docstring)."""
    tu, ti, tts = train
    su, si = test
    generator = torch.Generator().manual_seed(args.seed)
    degree = torch.bincount(ti, minlength=n_items)
    eligible = torch.nonzero(degree >= args.cold_min_train).squeeze(1)
    cold = eligible[torch.randperm(eligible.numel(), generator=generator)[: args.cold_items]]
    cold = torch.sort(cold).values
    is_cold = torch.zeros(n_items, dtype=torch.bool)
    is_cold[cold] = True
    keep = ~is_cold[ti]
    ku, ki, kts = tu[keep], ti[keep], tts[keep]
    # Ground truth: every interaction with a cold item, removed train edges and test edges,
    # of users that keep a train edge; items renumbered 0..len(cold)-1.
    position = torch.full((n_items,), -1, dtype=torch.long)
    position[cold] = torch.arange(cold.numel())
    gu = torch.cat([tu[~keep], su[is_cold[si]]])
    gi = position[torch.cat([ti[~keep], si[is_cold[si]]])]
    known = torch.bincount(ku, minlength=n_users) > 0
    gu, gi = gu[known[gu]], gi[known[gu]]
    nothing = interaction_csr(gu[:0], gi[:0], n_users, cold.numel())
    adjacency = normalized_adjacency(ku, ki, n_users, n_items)
    results: dict[str, dict] = {}
    for name, with_features in (("pinsage+genres", True), ("pinsage", False)):
        config = variant_config(
            {"model": "pinsage", "layers": 1}, common_config(args, n_users), 0, 0
        )
        started = time.perf_counter()
        result = train_model(
            InteractionGraph.from_edges(n_users, n_items, ku, ki, kts),
            config,
            log=lambda message: None,
            item_features=genres if with_features else None,
        )
        result.model.attach_graph(ku, ki)
        with torch.no_grad():
            user_emb, item_emb = result.model.embed(adjacency)
        metrics = evaluate_embeddings(user_emb, item_emb[cold], nothing, gu, gi, KS)
        results[name] = {
            "seconds": time.perf_counter() - started,
            "epochs_run": len(result.history),
            "best_val_recall@20": result.best_val_recall,
            **flat(metrics),
        }
    # Content baseline: a user's genre counts over their remaining train items.
    profile = torch.zeros(n_users, genres.shape[1]).index_add_(0, ku, genres[ki])
    metrics = evaluate_embeddings(profile, genres[cold], nothing, gu, gi, KS)
    results["genre-profile"] = flat(metrics)
    results["random (expected)"] = {
        f"{metric}@{k}": min(1.0, k / cold.numel()) if metric == "recall" else None
        for metric in ("recall", "ndcg")
        for k in KS
    }
    return {
        "n_cold_items": int(cold.numel()),
        "min_train_degree": args.cold_min_train,
        "removed_train_edges": int((~keep).sum()),
        "ground_truth_edges": int(gu.numel()),
        "n_users": int(torch.unique(gu).numel()),
        "results": results,
    }


if __name__ == "__main__":
    main()
