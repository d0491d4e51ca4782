"""Publication ranking: exact top-K against the inverted-file index, on trained Gowalla
embeddings.

LightGCN is trained on the Gowalla train split with the Gowalla benchmark's defaults for
``--train-minutes`` (a short run: the point is real trained embeddings, not the best model).
Then every one of the 29,858 users gets a top-``--k`` list, training items excluded:

- ``exact``: :func:`recs_pipeline.evaluation.metrics.topk_scored` over every item (what publication does
  with ``index: exact``);
- ``ivf/P``: :class:`recs_pipeline.serving.ann.IVFIndex` built on the item embeddings
  (``--list-size`` items per list), each user scanning its ``P`` best lists (``--probes``).

For each: seconds (index build included), peak memory above the embeddings, Recall@K and
NDCG@K on the test split, and the overlap of its lists with the exact ones. Runs alternate
exact and index for ``--repeats`` rounds; times are medians.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks._common import hwm_mib, quiet_sparse_warnings, reset_hwm, rss_mib, write_results
from benchmarks.gowalla import build_parser, load_lightgcn_split, run_trained
from recs_pipeline.evaluation.metrics import inner_product, ranking_metrics, topk_scored
from recs_pipeline.graph.bipartite import interaction_csr, normalized_adjacency
from recs_pipeline.serving.ann import IVFIndex, list_overlap
from recs_pipeline.training.cli import add_setting_flags

# The TrainConfig settings this benchmark takes as flags (add_setting_flags), with its defaults:
# its threads train the embeddings (unless --embeddings) and rank.
TRAIN_FLAGS = {"threads": 2}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.publication",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", required=True, help="folder with train.txt and test.txt")
    parser.add_argument("--train-minutes", type=float, default=3.0)
    parser.add_argument(
        "--embeddings",
        default=None,
        help="lightgcn_embeddings.pt saved by `benchmarks.gowalla --save-embeddings` (skips"
        " training)",
    )
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--list-size", type=int, default=256)
    parser.add_argument("--probes", default="8,16,32,64", help="comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    add_setting_flags(parser, TRAIN_FLAGS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    quiet_sparse_warnings()
    torch.set_num_threads(args.threads)

    data = load_lightgcn_split(args.data)
    n_users, n_items, train_u, train_i, test_u, test_i = data
    if args.embeddings:
        saved = torch.load(args.embeddings)
        user_emb, item_emb = saved["user_emb"], saved["item_emb"]
        model = {"embeddings": args.embeddings}
    else:
        # --threads too: train_model sets torch's threads, which the ranking below then runs on.
        train_args = build_parser().parse_args(
            ["--data", args.data, "--time-budget-minutes", str(args.train_minutes), "--quiet"]
            + ["--threads", str(args.threads)]
        )
        last_ts = torch.randperm(train_u.numel(), generator=torch.Generator().manual_seed(0))
        adjacency = normalized_adjacency(train_u, train_i, n_users, n_items)
        record, user_emb, item_emb = run_trained(train_args, "lightgcn", data, last_ts, adjacency)
        model = {
            "train_minutes": args.train_minutes,
            "best_val_recall@20": record["best_val_recall@20"],
            "epochs_run": record["epochs_run"],
        }
    exclude = interaction_csr(train_u, train_i, n_users, n_items)
    users = torch.arange(n_users)
    score_fn = inner_product(user_emb, item_emb)

    def exact():
        return topk_scored(score_fn, users, exclude, args.k)

    built: list[IVFIndex] = []  # the last index a timed run built, for its shape

    def ivf(probes):
        def run():
            built[:] = [IVFIndex.build(item_emb, args.list_size)]  # the build is timed too
            return built[0].search(user_emb, args.k, probes, exclude, users)

        return run

    def metrics(top):
        m = ranking_metrics(top, users, test_u, test_i, n_items, (args.k,))
        return {"recall": m[("recall", args.k)], "ndcg": m[("ndcg", args.k)]}

    def measure(run):
        reset_hwm()
        before = rss_mib()
        started = time.perf_counter()
        scores, top = run()
        seconds = time.perf_counter() - started
        peak = hwm_mib()
        return seconds, (None if peak is None or before is None else peak - before), scores, top

    probes = [int(p) for p in args.probes.split(",") if p.strip()]
    variants = {"exact": exact, **{f"ivf/{p}": ivf(p) for p in probes}}
    times = {name: [] for name in variants}
    peaks = {name: [] for name in variants}
    outputs = {}
    for _ in range(args.repeats):
        for name, run in variants.items():
            seconds, peak, scores, top = measure(run)
            times[name].append(seconds)
            peaks[name].append(peak)
            outputs[name] = (scores, top)
    exact_scores, exact_top = outputs["exact"]
    index = built[0] if built else IVFIndex.build(item_emb, args.list_size)
    results = {}
    for name in variants:
        seconds = statistics.median(times[name])
        results[name] = {
            "seconds": seconds,
            "seconds_runs": times[name],
            "peak_mib_above_start": max(p for p in peaks[name] if p is not None)
            if any(p is not None for p in peaks[name])
            else None,
            "speedup_vs_exact": statistics.median(times["exact"]) / seconds,
            "overlap_with_exact": list_overlap(outputs[name][1], exact_top, exact_scores),
            "test": metrics(outputs[name][1]),
        }
        if name != "exact":
            n_probes = int(name.split("/")[1])
            results[name]["items_scanned_per_user"] = min(n_probes, index.centroids.shape[0]) * (
                args.list_size
            )
        print(
            f"{name:8s} {seconds:6.2f} s  x{results[name]['speedup_vs_exact']:.2f}"
            f"  overlap {results[name]['overlap_with_exact']:.4f}"
            f"  recall@{args.k} {results[name]['test']['recall']:.4f}"
            f"  ndcg@{args.k} {results[name]['test']['ndcg']:.4f}"
        )
    payload = {
        "users": n_users,
        "items": n_items,
        "k": args.k,
        "list_size": args.list_size,
        "lists": index.centroids.shape[0],
        "longest_list": index.longest,
        "model": model,
        "results": results,
    }
    print(f"wrote {write_results('publication', payload, args.out)}")
    return payload


if __name__ == "__main__":
    main()
