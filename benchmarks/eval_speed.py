"""Full-ranking evaluation speed: :func:`recs_pipeline.evaluation.metrics.topk_excluding` versus a
straightforward dense-mask implementation, on the Gowalla train matrix.

All users (or the first ``--users``) × all 40,981 items, K = ``--k``, training items excluded,
seeded random ``--dim``-dimensional embeddings (standard normal, so ties have probability ~0).

- ``core``: ``topk_excluding(user_emb, item_emb, users, train_csr, k, chunk_users)``: per chunk
  a dense score matrix, excluded entries set to −inf by index from the CSR rows, ``topk``.
- ``dense_mask``: per chunk of the same size, the chunk's rows of the train matrix
  ``index_select``-ed from a sparse COO tensor and ``to_dense()``-ed into a 0/1 matrix, then
  ``scores.masked_fill(mask.bool(), -inf)`` and ``topk``.

Runs alternate (core, dense_mask, core, ...) for ``--repeats`` repeats; medians are reported.
Peak memory is VmHWM reset just before each run (``/proc/self/clear_refs``) minus the RSS at
that moment: the run's own transient peak. The two top-K outputs are compared per user as sets;
a differing row counts as a tie when its K-th best scores agree in both.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks._common import hwm_mib, quiet_sparse_warnings, reset_hwm, rss_mib, write_results
from benchmarks.gowalla import load_lightgcn_split
from recs_pipeline.evaluation.metrics import topk_excluding
from recs_pipeline.graph.bipartite import interaction_csr


def dense_mask_topk(user_emb, item_emb, users, exclude_coo, k, chunk_users):
    """The straightforward version: dense 0/1 mask per batch via torch.sparse → to_dense."""
    top_scores, top_items = [], []
    with torch.no_grad():
        for start in range(0, users.numel(), chunk_users):
            batch = users[start : start + chunk_users]
            scores = user_emb[batch] @ item_emb.T
            mask = torch.index_select(exclude_coo, 0, batch).to_dense()
            scores = scores.masked_fill(mask.bool(), float("-inf"))
            values, indices = torch.topk(scores, k, dim=1)
            top_scores.append(values)
            top_items.append(indices)
    return torch.cat(top_scores), torch.cat(top_items)


def compare(a_scores, a_items, b_scores, b_items) -> dict:
    """Per-row equality of top-K sets; differing rows whose K-th scores match are ties."""
    same_set = (a_items.sort(1).values == b_items.sort(1).values).all(1)
    differing = ~same_set
    tie = differing & (a_scores[:, -1] == b_scores[:, -1])
    return {
        "rows": a_items.shape[0],
        "same_set_rows": int(same_set.sum()),
        "differing_rows": int(differing.sum()),
        "differing_rows_explained_by_ties": int(tie.sum()),
        "same_order_rows": int((a_items == b_items).all(1).sum()),
        "max_abs_score_diff": float(
            (a_scores - b_scores).abs().nan_to_num(0.0, posinf=0.0, neginf=0.0).max()
        ),
        "excluded_item_returned": None,  # filled by the caller
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.eval_speed",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", required=True, help="folder with train.txt and test.txt")
    parser.add_argument("--users", type=int, default=None, help="first N users only (default all)")
    parser.add_argument("--k", type=int, default=20)
    # Not TrainConfig's dim: that of the random embeddings ranked here (nothing is trained).
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--chunk-users", type=int, default=2048, help="users per batch, both")
    parser.add_argument("--repeats", type=int, default=3)
    # Not TrainConfig's threads and seed: the ranking's threads, the random embeddings' seed.
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", default=None, help="JSON path (default benchmarks/results/eval_speed.json)"
    )
    args = parser.parse_args(argv)
    quiet_sparse_warnings()

    torch.set_num_threads(args.threads)
    n_users, n_items, train_u, train_i = load_lightgcn_split(args.data)[:4]
    generator = torch.Generator().manual_seed(args.seed)
    user_emb = torch.randn(n_users, args.dim, generator=generator)
    item_emb = torch.randn(n_items, args.dim, generator=generator)
    users = torch.arange(n_users if args.users is None else min(args.users, n_users))

    started = time.perf_counter()
    exclude_csr = interaction_csr(train_u, train_i, n_users, n_items)
    csr_seconds = time.perf_counter() - started
    started = time.perf_counter()
    exclude_coo = exclude_csr.to_sparse_coo().coalesce()
    coo_seconds = time.perf_counter() - started

    implementations = {
        "core": lambda: topk_excluding(
            user_emb, item_emb, users, exclude_csr, args.k, chunk_users=args.chunk_users
        ),
        "dense_mask": lambda: dense_mask_topk(
            user_emb, item_emb, users, exclude_coo, args.k, args.chunk_users
        ),
    }
    seconds = {name: [] for name in implementations}
    peak_over = {name: [] for name in implementations}
    outputs = {}
    for r in range(args.repeats):
        for name, run in implementations.items():
            outputs.pop(name, None)
            reset_ok = reset_hwm()
            base = rss_mib()
            started = time.perf_counter()
            outputs[name] = run()
            seconds[name].append(time.perf_counter() - started)
            if reset_ok and base is not None:
                peak_over[name].append(hwm_mib() - base)
            print(
                f"repeat {r + 1}/{args.repeats} {name:<11} {seconds[name][-1]:7.2f} s"
                + (f"  peak +{peak_over[name][-1]:.0f} MiB" if peak_over[name] else ""),
                flush=True,
            )

    check = compare(*outputs["core"], *outputs["dense_mask"])
    keys = torch.unique(train_u * n_items + train_i)
    returned = users.unsqueeze(1) * n_items + outputs["core"][1]
    check["excluded_item_returned"] = int(torch.isin(returned, keys).sum())

    summary = {
        name: {
            "median_seconds": statistics.median(seconds[name]),
            "seconds": seconds[name],
            "median_peak_over_baseline_mib": statistics.median(peak_over[name])
            if peak_over[name]
            else None,
            "peak_over_baseline_mib": peak_over[name],
            "users_per_second": users.numel() / statistics.median(seconds[name]),
        }
        for name in implementations
    }
    ratio = summary["dense_mask"]["median_seconds"] / summary["core"]["median_seconds"]
    mem_ratio = (
        summary["dense_mask"]["median_peak_over_baseline_mib"]
        / summary["core"]["median_peak_over_baseline_mib"]
        if summary["core"]["median_peak_over_baseline_mib"]
        else None
    )

    print()
    header = f"{'implementation':<16}{'median s':>10}{'users/s':>10}{'peak +MiB':>11}"
    print(header)
    print("-" * len(header))
    for name, s in summary.items():
        peak = s["median_peak_over_baseline_mib"]
        print(
            f"{name:<16}{s['median_seconds']:>10.2f}{s['users_per_second']:>10.0f}"
            f"{'-' if peak is None else format(peak, '.0f'):>11}"
        )
    print(
        f"dense_mask / core time: {ratio:.2f}"
        + (f", peak memory: {mem_ratio:.2f}" if mem_ratio else "")
        + f"; same top-{args.k} sets in {check['same_set_rows']}/{check['rows']} rows"
        f" ({check['differing_rows_explained_by_ties']} of {check['differing_rows']} differing"
        f" rows are ties); excluded items returned by core: {check['excluded_item_returned']}"
    )

    payload = {
        "data": str(args.data),
        "args": vars(args),
        "n_users_evaluated": users.numel(),
        "n_items": n_items,
        "train_edges": train_u.numel(),
        "exclude_csr_build_seconds": csr_seconds,
        "exclude_coo_build_seconds": coo_seconds,
        "results": summary,
        "ratio_dense_mask_over_core_seconds": ratio,
        "ratio_dense_mask_over_core_peak_mib": mem_ratio,
        "agreement": check,
    }
    path = write_results("eval_speed", payload, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
