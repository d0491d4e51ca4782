"""The lecture's model / loss / negative-sampling variants, run the same way on any split.

Shared by ``benchmarks.movielens`` and ``benchmarks.gowalla_lecture``: one table of variants,
one function that trains and evaluates a variant, one that fits the training-free baselines.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable

import torch

from recs_pipeline.evaluation.metrics import evaluate_scorer, inner_product
from recs_pipeline.graph.bipartite import InteractionGraph
from recs_pipeline.models import fit_training_free
from recs_pipeline.training import TrainConfig, train_model

KS = (10, 20, 50)

# name → TrainConfig overrides; "shared": shared negatives instead of uniform ones,
# "hard": uniform negatives plus the hard-negative curriculum, "features": the split's item
# features (variants with it run only where the data has features).
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
    # PinSAGE (BPR, one uniform negative; one convolution scored higher validation recall than
    # two on MovieLens), ids only and ids + item features
    "pinsage/bpr/uniform": {"model": "pinsage", "layers": 1},
    "pinsage+features/bpr/uniform": {"model": "pinsage", "layers": 1, "features": True},
}
SPECIAL = ("shared", "hard", "features")


def flat(metrics: dict) -> dict:
    return {f"{metric}@{k}": value for (metric, k), value in metrics.items()}


def run_training_free(
    names: Iterable[str],
    users,
    items,
    n_users: int,
    n_items: int,
    exclude,
    test_u,
    test_i,
    settings: dict[str, tuple[str, dict]] | None = None,
) -> dict[str, dict]:
    """Each model of ``names`` with its defaults, then each ``label: (name, params)`` of
    ``settings`` with those parameters, fitted on (users, items) and scored on the test edges."""
    runs = {name: (name, {}) for name in names} | (settings or {})
    results = {}
    for label, (name, params) in runs.items():
        started = time.perf_counter()
        model = fit_training_free(name, users, items, n_users, n_items, **params)
        metrics = evaluate_scorer(model.scores, n_items, exclude, test_u, test_i, KS)
        results[label] = {"seconds": time.perf_counter() - started, **flat(metrics)}
    return results


def variant_config(variant: dict, common: dict, shared: int, max_hard: int) -> TrainConfig:
    overrides = {k: v for k, v in variant.items() if k not in SPECIAL}
    return TrainConfig(
        **overrides,
        **common,
        shared_negatives=shared if variant.get("shared") else 0,
        max_hard_negatives=max_hard if variant.get("hard") else 0,
        temperature=0.2 if overrides.get("loss") == "softmax" else 1.0,
    )


def run_variant(
    variant: dict,
    common: dict,
    shared: int,
    max_hard: int,
    train: tuple,
    full_adjacency: torch.Tensor,
    pools: torch.Tensor | None,
    exclude: torch.Tensor,
    test: tuple[torch.Tensor, torch.Tensor],
    log: Callable[[str], None] = lambda message: None,
    item_features: torch.Tensor | None = None,
) -> dict:
    """Train one variant on ``train`` = (n_users, n_items, users, items, last_ts), embed over
    the full train graph and evaluate on ``test``; returns its figures and config."""
    n_users, n_items, users, items, last_ts = train
    config = variant_config(variant, common, shared, max_hard)
    started = time.perf_counter()
    result = train_model(
        InteractionGraph.from_edges(n_users, n_items, users, items, last_ts),
        config,
        hard_pools=pools if variant.get("hard") else None,
        log=log,
        item_features=item_features if variant.get("features") else None,
    )
    seconds = time.perf_counter() - started
    model = result.model
    model.attach_graph(users, items)  # PinSAGE: neighbourhoods of the full train graph
    with torch.no_grad():
        user_emb, item_emb = model.embed(full_adjacency)
    metrics = evaluate_scorer(inner_product(user_emb, item_emb), n_items, exclude, *test, KS)
    per_user = config.uniform_negatives + config.max_hard_negatives
    return {
        "seconds": seconds,
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "best_val_recall@20": result.best_val_recall,
        "negative_embeddings_per_batch": config.shared_negatives + config.batch_size * per_user,
        "negative_scores_per_batch": config.batch_size * (config.shared_negatives + per_user),
        "config": dataclasses.asdict(config),
        **flat(metrics),
    }


def print_table(results: dict[str, dict]) -> None:
    print(f"\n{'variant':<38}{'R@20':>8}{'N@20':>8}{'epochs':>8}{'s':>7}{'neg emb/batch':>15}")
    for name, r in results.items():
        print(
            f"{name:<38}{r['recall@20']:>8.4f}{r['ndcg@20']:>8.4f}"
            f"{r.get('epochs_run', '-')!s:>8}{r['seconds']:>7.1f}"
            f"{r.get('negative_embeddings_per_batch', '-')!s:>15}"
        )
