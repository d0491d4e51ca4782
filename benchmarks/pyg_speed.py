"""Training speed of our LightGCN versus PyTorch Geometric's, on the Gowalla train graph.

Both do the same work per batch of positive (user, item) edges: one uniform negative per edge,
full-graph propagation (dim ``--dim``, ``--layers`` layers), BPR loss with L2 on the batch's
layer-0 embeddings, one Adam step (same ``--lr``).

- ``ours``: :class:`recs_pipeline.models.lightgcn.LightGCN` over a precomputed
  :func:`recs_pipeline.graph.bipartite.normalized_adjacency` (sparse CSR), negatives from
  :func:`recs_pipeline.graph.negatives.uniform_negatives` (rejects the user's train items), loss
  :func:`recs_pipeline.training.losses.bpr_loss` + ``l2 * l2_penalty`` as in ``train_model``'s batch step.
- ``pyg``: ``torch_geometric.nn.models.LightGCN`` driven as in PyG's ``examples/lightgcn.py``:
  ``edge_index`` over the bidirectional user–item graph (items at ``n_users + item``),
  negatives ``torch.randint`` over all items (no rejection), ``pos_rank, neg_rank =
  model(edge_index, edge_label_index).chunk(2)`` and ``model.recommendation_loss(pos_rank,
  neg_rank, node_id=edge_label_index.unique())`` (lambda_reg ``--l2``). LGConv renormalises
  the ``edge_index`` on every call, as in the example.
- ``pyg_sparse`` (optional, not in the default): the same PyG model with ``normalize=False``
  given our precomputed normalised adjacency as a torch sparse CSR tensor, to separate the
  cost of PyG's ``edge_index`` path from the model itself.

Runs alternate in one process (ours, pyg, ours, pyg, ...) for ``--rounds`` rounds; each run
times ``--batches`` consecutive batches after ``--warmup`` untimed ones. Per-epoch time is
extrapolated: median seconds per batch × ceil(train edges / batch size). Reported: medians over
rounds of the per-batch time and the ratio pyg / ours.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from torch_geometric.nn.models import LightGCN as PygLightGCN

from benchmarks._common import fmt, hwm_mib, quiet_sparse_warnings, reset_hwm, write_results
from benchmarks.gowalla import load_lightgcn_split
from recs_pipeline.graph.bipartite import normalized_adjacency
from recs_pipeline.graph.negatives import edge_keys, uniform_negatives
from recs_pipeline.models.lightgcn import LightGCN
from recs_pipeline.training.cli import add_setting_flags
from recs_pipeline.training.losses import bpr_loss, l2_penalty

VARIANTS = ("ours", "pyg", "pyg_sparse")
# The TrainConfig settings of the batch step both implementations take (add_setting_flags), with
# this benchmark's defaults: they mean for PyG's model what they mean for ours (the docstring).
TRAIN_FLAGS = {
    "batch_size": 4096,
    "dim": 64,
    "layers": 3,
    "lr": 1e-3,
    "l2": 1e-4,
    "threads": 2,
    "seed": 0,
}


class Ours:
    def __init__(self, data, args, generator):
        n_users, n_items, train_u, train_i = data[:4]
        self.n_items = n_items
        self.adjacency = normalized_adjacency(train_u, train_i, n_users, n_items)
        self.positives = edge_keys(train_u, train_i, n_items)
        self.model = LightGCN(n_users, n_items, dim=args.dim, layers=args.layers)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=args.lr)
        self.l2, self.generator = args.l2, generator

    def step(self, u: torch.Tensor, p: torch.Tensor) -> float:
        n = uniform_negatives(u, self.n_items, 1, self.positives, self.generator)
        user_emb, item_emb = self.model.embed(self.adjacency)
        zu = user_emb[u]
        pos = (zu * item_emb[p]).sum(-1)
        neg = torch.einsum("bd,bnd->bn", zu, item_emb[n])
        zu0, zp0 = self.model.layer0(u, p)
        _, zn0 = self.model.layer0(u[:0], n.reshape(-1))
        loss = bpr_loss(pos, neg) + self.l2 * l2_penalty(zu0, zp0, zn0)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        return loss.item()


class Pyg:
    def __init__(self, data, args, generator, sparse: bool = False):
        n_users, n_items, train_u, train_i = data[:4]
        self.n_users, self.n_items = n_users, n_items
        items = train_i + n_users
        if sparse:  # precomputed D^-1/2 A D^-1/2, LGConv told not to renormalise
            self.edge_index = normalized_adjacency(train_u, train_i, n_users, n_items)
            self.model = PygLightGCN(n_users + n_items, args.dim, args.layers, normalize=False)
        else:  # the example's input: both directions of every user–item edge
            self.edge_index = torch.stack(
                [torch.cat([train_u, items]), torch.cat([items, train_u])]
            )
            self.model = PygLightGCN(n_users + n_items, args.dim, args.layers)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=args.lr)
        self.l2, self.generator = args.l2, generator

    def step(self, u: torch.Tensor, p: torch.Tensor) -> float:
        pos_index = torch.stack([u, p + self.n_users])
        neg_items = torch.randint(
            self.n_users, self.n_users + self.n_items, (u.numel(),), generator=self.generator
        )
        neg_index = torch.stack([u, neg_items])
        edge_label_index = torch.cat([pos_index, neg_index], dim=1)
        self.optimiser.zero_grad()
        pos_rank, neg_rank = self.model(self.edge_index, edge_label_index).chunk(2)
        loss = self.model.recommendation_loss(
            pos_rank, neg_rank, node_id=edge_label_index.unique(), lambda_reg=self.l2
        )
        loss.backward()
        self.optimiser.step()
        return float(loss.detach())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pyg_speed",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", required=True, help="folder with train.txt and test.txt")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches before each run")
    add_setting_flags(parser, TRAIN_FLAGS)
    parser.add_argument(
        "--variants", default="ours,pyg", help=f"comma-separated, alternated in order: {VARIANTS}"
    )
    parser.add_argument(
        "--out", default=None, help="JSON path (default benchmarks/results/pyg_speed.json)"
    )
    args = parser.parse_args(argv)
    quiet_sparse_warnings()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            parser.error(f"unknown variant {v!r}; choose from {VARIANTS}")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = load_lightgcn_split(args.data)
    n_users, n_items, train_u, train_i = data[:4]
    n_edges = train_u.numel()
    batches_per_epoch = math.ceil(n_edges / args.batch_size)

    runners, setup_seconds = {}, {}
    for v in variants:
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(args.seed)
        runners[v] = (
            Ours(data, args, generator)
            if v == "ours"
            else Pyg(data, args, generator, v == "pyg_sparse")
        )
        setup_seconds[v] = time.perf_counter() - started

    order_gen = torch.Generator().manual_seed(args.seed + 1)
    order = torch.randperm(n_edges, generator=order_gen)
    cursor = 0

    def next_batch():
        nonlocal order, cursor
        if cursor + args.batch_size > n_edges:
            order, cursor = torch.randperm(n_edges, generator=order_gen), 0
        idx = order[cursor : cursor + args.batch_size]
        cursor += args.batch_size
        return train_u[idx], train_i[idx]

    per_batch = {v: [] for v in variants}  # one median per round
    batch_times = {v: [] for v in variants}
    losses = {v: [] for v in variants}
    peak = {v: None for v in variants}
    for r in range(args.rounds):
        for v in variants:
            runner = runners[v]
            for _ in range(args.warmup):
                runner.step(*next_batch())
            batches = [next_batch() for _ in range(args.batches)]
            reset_ok = reset_hwm()
            times = []
            for u, p in batches:
                started = time.perf_counter()
                loss = runner.step(u, p)
                times.append(time.perf_counter() - started)
            if reset_ok:
                peak[v] = max(peak[v] or 0.0, hwm_mib())
            losses[v].append(loss)
            batch_times[v].append(times)
            per_batch[v].append(sum(times) / len(times))
            print(
                f"round {r + 1}/{args.rounds} {v:<10} {1000 * per_batch[v][-1]:8.1f} ms/batch"
                f"  loss {loss:.4f}",
                flush=True,
            )

    summary = {}
    for v in variants:
        med = statistics.median(per_batch[v])
        summary[v] = {
            "median_seconds_per_batch": med,
            "round_mean_seconds_per_batch": per_batch[v],
            "min_round_seconds_per_batch": min(per_batch[v]),
            "extrapolated_epoch_seconds": med * batches_per_epoch,
            "setup_seconds": setup_seconds[v],
            "last_loss_per_round": losses[v],
            "peak_rss_mib_during_timed_batches": peak[v],
            "batch_seconds": batch_times[v],
        }
    ratios = {
        f"{v}/ours": summary[v]["median_seconds_per_batch"]
        / summary["ours"]["median_seconds_per_batch"]
        for v in variants
        if v != "ours" and "ours" in summary
    }

    print()
    header = (
        f"{'variant':<12}{'ms/batch':>10}{'epoch s (extrap.)':>19}{'peak MiB':>10}{'vs ours':>9}"
    )
    print(header)
    print("-" * len(header))
    for v in variants:
        s = summary[v]
        ratio = ratios.get(f"{v}/ours", 1.0 if v == "ours" else None)
        print(
            f"{v:<12}{1000 * s['median_seconds_per_batch']:>10.1f}"
            f"{s['extrapolated_epoch_seconds']:>19.1f}"
            f"{fmt(s['peak_rss_mib_during_timed_batches'], '.0f'):>10}{fmt(ratio, '.2f'):>9}"
        )
    print(
        f"(per-epoch = median per-batch time × {batches_per_epoch} batches of {args.batch_size};"
        f" {args.rounds} rounds × {args.batches} timed batches, {args.threads} threads)"
    )

    payload = {
        "data": str(args.data),
        "args": vars(args),
        "n_users": n_users,
        "n_items": n_items,
        "train_edges": n_edges,
        "batches_per_epoch": batches_per_epoch,
        "extrapolation": "epoch seconds = median over rounds of mean seconds per batch"
        " × batches_per_epoch (a fixed number of batches is timed, not whole epochs)",
        "results": summary,
        "ratios": ratios,
    }
    path = write_results("pyg_speed", payload, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
