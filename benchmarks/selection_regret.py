"""Does model selection publish a scorer as good as the best single candidate? One command.

``python -m benchmarks.selection_regret --ml100k ../shared/data/ml-100k`` takes each log
(MovieLens-100K, and the demo's two synthetic logs: ``make run``'s and ``--small``'s) through a
temporal split (train = events before the 80th percentile of time, test = the rest, on users
and items known to train), then:

- every candidate of :data:`recs_pipeline.evaluation.selection.DEFAULT_CANDIDATES` at its shipped
  defaults, fitted or trained on train (real timestamps for early stopping), scored on test;
- the pipeline's selection (:func:`recs_pipeline.evaluation.selection.select`, ``--budget-minutes``) on
  train alone, once per seed of ``--seeds``; its champion refitted on train and scored on test.

The target (issue 25): the champion's test Recall@20, averaged over the seeds, is at least the
best single candidate's minus the seed-to-seed spread (the standard deviation of the champion's
test Recall@20 over the seeds). Results: ``benchmarks/results/selection_regret.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import statistics
import time

import numpy as np
import torch

from benchmarks._common import quiet_sparse_warnings, write_results
from benchmarks.movielens import load_temporal_split
from recs_pipeline.data.synthetic import SyntheticLogSpec, generate_events
from recs_pipeline.evaluation.metrics import evaluate_scorer, inner_product
from recs_pipeline.evaluation.selection import DEFAULT_CANDIDATES, default_params, select
from recs_pipeline.graph.bipartite import InteractionGraph, interaction_csr, normalized_adjacency
from recs_pipeline.models import TRAINING_FREE, fit_training_free
from recs_pipeline.training import TrainConfig, train_model
from recs_pipeline.training.cli import add_setting_flags

# The TrainConfig settings this benchmark takes as flags (add_setting_flags), with its defaults:
# torch threads of this process, where every candidate and selection trial trains.
TRAIN_FLAGS = {"threads": 2}

SYNTHETIC = {
    # cli.demo's demo log, and its --small one (recs_pipeline.data.synthetic's defaults besides).
    "synthetic": dict(days=60, n_users=4000, n_items=2000, events_per_day=4000),
    "synthetic-small": dict(days=60, n_users=500, n_items=250, events_per_day=900),
}


def synthetic_split(name: str, quantile: float = 0.8):
    spec = SyntheticLogSpec(start=dt.date(2026, 1, 1), dirty_fraction=0.0, **SYNTHETIC[name])
    events = generate_events(spec)
    users = np.unique(events["user_id"].to_numpy(), return_inverse=True)[1]
    items = np.unique(events["item_id"].to_numpy(), return_inverse=True)[1]
    ts = events["timestamp"].to_numpy()
    cutoff = np.quantile(ts, quantile)
    train = ts < cutoff
    test = ~train & np.isin(users, users[train]) & np.isin(items, items[train])
    # One test edge per (user, item), as the pipeline's split keeps it.
    pairs = np.unique(np.stack([users[test], items[test]]), axis=1)
    t = torch.from_numpy
    return (
        int(users.max()) + 1,
        int(items.max()) + 1,
        (t(users[train]), t(items[train]), t(ts[train])),
        (t(pairs[0]), t(pairs[1])),
    )


def graph_of(n_users: int, n_items: int, train) -> InteractionGraph:
    """The train edges as the pipeline's graph: one edge per (user, item), its latest time."""
    users, items, ts = train
    keys = users * n_items + items
    unique, inverse = torch.unique(keys, return_inverse=True)
    last = torch.zeros(unique.numel(), dtype=torch.long).scatter_reduce(
        0, inverse, ts.long(), reduce="amax", include_self=False
    )
    empty = torch.zeros(0, dtype=torch.long)
    return InteractionGraph(
        [str(u) for u in range(n_users)],
        [str(i) for i in range(n_items)],
        unique // n_items,
        unique % n_items,
        last,
        empty,
        empty,
    )


def fit(graph: InteractionGraph, model: str, params: dict, seed: int):
    """The score function of ``model`` with ``params``, fitted or trained on all of train."""
    n_users, n_items = graph.n_users, graph.n_items
    if model in TRAINING_FREE:
        return fit_training_free(model, graph.train_users, graph.train_items, n_users, n_items,
                                 **params).scores  # fmt: skip
    config = dataclasses.replace(TrainConfig(model=model, seed=seed), **params)
    result = train_model(graph, config, log=lambda _: None)
    adjacency = normalized_adjacency(graph.train_users, graph.train_items, n_users, n_items)
    with torch.no_grad():
        user_emb, item_emb = result.model.embed(adjacency)
    return inner_product(user_emb.detach(), item_emb.detach())


def test_recall(graph: InteractionGraph, score_fn, test) -> dict:
    exclude = interaction_csr(graph.train_users, graph.train_items, graph.n_users, graph.n_items)
    metrics = evaluate_scorer(score_fn, graph.n_items, exclude, *test, (20,))
    return {"recall@20": metrics[("recall", 20)], "ndcg@20": metrics[("ndcg", 20)]}


def run_log(name: str, split, args) -> dict:
    n_users, n_items, train, test = split[:4]
    graph = graph_of(n_users, n_items, train)
    print(f"{name}: {n_users} users, {n_items} items, {graph.train_users.numel()} train edges,"
          f" {test[0].numel()} test edges", flush=True)  # fmt: skip
    candidates = {}
    for model in args.candidates:
        started = time.perf_counter()
        candidates[model] = test_recall(graph, fit(graph, model, {}, 0), test)
        candidates[model]["seconds"] = time.perf_counter() - started
        print(f"  {model} (defaults): {candidates[model]['recall@20']:.4f}", flush=True)
    runs = []
    for seed in args.seeds:
        started = time.perf_counter()
        chosen = select(graph, candidates=args.candidates, budget_seconds=args.budget_minutes * 60,
                        seed=seed, log=lambda _: None)  # fmt: skip
        scores = test_recall(graph, fit(graph, chosen.model, chosen.params, seed), test)
        # Each candidate's validation score at its defaults, beside the champion's: where the
        # champion loses on test, this shows whether validation disagreed with test or the
        # search missed.
        at_defaults = {
            t.model: t.recall for t in chosen.trials
            if t.recall is not None and t.params == default_params(t.model)
        }  # fmt: skip
        runs.append({
            "seed": seed, "chosen": chosen.model, "settings": chosen.params,
            "validation_recall@20": chosen.recall,
            "validation_recall@20_at_defaults": at_defaults, "trials": len(chosen.trials),
            "seconds": time.perf_counter() - started, **scores,
        })  # fmt: skip
        print(f"  auto seed {seed}: {chosen.model} {scores['recall@20']:.4f}", flush=True)
    recalls = [r["recall@20"] for r in runs]
    spread = statistics.stdev(recalls) if len(recalls) > 1 else 0.0
    best = max(candidates, key=lambda m: candidates[m]["recall@20"])
    mean = statistics.mean(recalls)
    return {
        "candidates": candidates,
        "auto": runs,
        "auto_mean_recall@20": mean,
        "seed_spread_recall@20": spread,
        "best_candidate": best,
        "best_candidate_recall@20": candidates[best]["recall@20"],
        "target_met": mean >= candidates[best]["recall@20"] - spread,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.selection_regret",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--ml100k", default=None, help="folder with MovieLens-100K's u.data")
    parser.add_argument("--logs", nargs="*", default=["ml100k", *SYNTHETIC],
                        help="which logs: ml100k, synthetic, synthetic-small")  # fmt: skip
    parser.add_argument("--budget-minutes", type=float, default=2.0)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--candidates", nargs="*", default=list(DEFAULT_CANDIDATES))
    add_setting_flags(parser, TRAIN_FLAGS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    quiet_sparse_warnings()
    torch.set_num_threads(args.threads)
    results = {}
    for name in args.logs:
        if name == "ml100k":
            if not args.ml100k:
                parser.error("--ml100k is needed for the ml100k log")
            split = load_temporal_split(args.ml100k)
            split = (split[0], split[1], split[2], split[3])
        else:
            split = synthetic_split(name)
        results[name] = run_log(name, split, args)
        r = results[name]
        print(f"{name}: auto {r['auto_mean_recall@20']:.4f} ± {r['seed_spread_recall@20']:.4f},"
              f" best single candidate {r['best_candidate']} {r['best_candidate_recall@20']:.4f}:"
              f" target {'met' if r['target_met'] else 'missed'}", flush=True)  # fmt: skip
    payload = {"args": vars(args), "logs": results}
    path = write_results("selection_regret", payload, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
