"""Negative sampling: uniform negatives, hard negatives from random walk with restart, and the
curriculum that mixes them.

Hard negatives (lecture, PinSAGE): for user u, rank items by the visit distribution of a random
walk with restart at u; items at the very top are likely true positives, items at the bottom are
easy. Hard negatives come from a band in between (the lecture's ranks 2000–5000 on a catalogue
of millions), here scaled to the catalogue as fractions of its size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from recs_pipeline.graph.bipartite import bipartite_csr, csr_rows, interaction_csr
from recs_pipeline.graph.config import HardNegativeConfig
from recs_pipeline.infra.engine import Engine, ShardRun, map_shards, shard_ranges


def edge_keys(users: torch.Tensor, items: torch.Tensor, n_items: int) -> torch.Tensor:
    """Sorted unique int64 keys ``user * n_items + item``: a set of edges for membership tests."""
    return torch.unique(users.long() * n_items + items.long())


def is_edge(keys: torch.Tensor, users: torch.Tensor, items: torch.Tensor, n_items: int):
    """Elementwise: is (users, items) an edge of the sorted key set ``keys``?"""
    query = users.long() * n_items + items.long()
    pos = torch.searchsorted(keys, query).clamp_(max=max(keys.numel() - 1, 0))
    return keys[pos] == query if keys.numel() else torch.zeros_like(query, dtype=torch.bool)


def uniform_negatives(
    users: torch.Tensor,
    n_items: int,
    count: int,
    positive_keys: torch.Tensor,
    generator: torch.Generator | None = None,
    max_rounds: int = 10,
) -> torch.Tensor:
    """``count`` items per user drawn uniformly from the items the user has not interacted with.

    Rejection sampling: draws that hit a positive are redrawn, up to ``max_rounds`` times (with
    any realistic density none are left after two rounds); the few draws still clashing then
    (users who have seen almost everything) are drawn exactly from the user's unseen items.
    A user who has seen every item has no negative: ValueError. Returns (len(users), count).
    """
    users = users.long().unsqueeze(1).expand(-1, count)
    negatives = torch.randint(0, n_items, users.shape, generator=generator)
    for _ in range(max_rounds):
        clash = is_edge(positive_keys, users, negatives, n_items)
        n_clash = int(clash.sum())
        if n_clash == 0:
            break
        negatives[clash] = torch.randint(0, n_items, (n_clash,), generator=generator)
    else:
        clash = is_edge(positive_keys, users, negatives, n_items)
        for row, col in torch.nonzero(clash).tolist():
            user = int(users[row, 0])
            seen = positive_keys[
                (positive_keys >= user * n_items) & (positive_keys < (user + 1) * n_items)
            ]
            unseen = torch.ones(n_items, dtype=torch.bool)
            unseen[seen - user * n_items] = False
            candidates = torch.nonzero(unseen).squeeze(1)
            if candidates.numel() == 0:
                raise ValueError(f"user index {user} has interacted with every item: no negative")
            pick = torch.randint(0, candidates.numel(), (1,), generator=generator)
            negatives[row, col] = candidates[pick]
    return negatives


def personalized_pagerank(
    adjacency: torch.Tensor, seeds: torch.Tensor, restart: float = 0.3, iterations: int = 30
) -> torch.Tensor:
    """Random walk with restart from each seed node: the stationary visit distribution.

    ``adjacency`` is the symmetric N × N adjacency A (sparse CSR, nonnegative). A walker at node
    v moves to a neighbour w with probability A[v, w] / deg(v) and jumps back to its seed with
    probability ``restart``. The distribution π_s solves π = r·e_s + (1 − r)·A D⁻¹ π; power
    iteration from e_s, ``iterations`` steps (error ≤ (1 − r)^iterations). Returns a dense
    N × len(seeds) tensor whose column j is π of ``seeds[j]``.
    """
    n = adjacency.shape[0]
    degree = torch.zeros(n).index_add_(
        0,
        torch.repeat_interleave(torch.arange(n), adjacency.crow_indices().diff()),
        adjacency.values(),
    )
    inv_degree = torch.where(degree > 0, 1.0 / degree, torch.zeros_like(degree)).unsqueeze(1)
    start = torch.zeros(n, seeds.numel())
    start[seeds, torch.arange(seeds.numel())] = 1.0
    pi = start.clone()
    for _ in range(iterations):
        pi = restart * start + (1.0 - restart) * (adjacency @ (inv_degree * pi))
    return pi


def random_walk_visits(
    adjacency: torch.Tensor,
    seeds: torch.Tensor,
    walks: int,
    length: int,
    restart: float,
    generator: torch.Generator,
    columns: slice,
) -> torch.Tensor:
    """Visit counts of random walks with restart: (len(seeds), columns) float tensor.

    From each seed, ``walks`` walkers take ``length`` steps each on the graph of ``adjacency``
    (sparse CSR): at each step a walker jumps back to its seed with probability ``restart``,
    otherwise it moves to a uniformly chosen neighbour. Every node a walker lands on within ``columns`` of
    the node range is counted. As walks grow long the normalised counts converge to the
    personalised PageRank of :func:`personalized_pagerank`. The counts come back as a
    coalesced sparse COO tensor: memory grows with the visits, not with the catalogue.
    """
    indptr, indices = adjacency.crow_indices(), adjacency.col_indices()
    degree = indptr.diff()
    home = seeds.repeat_interleave(walks)
    row = torch.arange(seeds.numel()).repeat_interleave(walks)
    position = home.clone()
    width = columns.stop - columns.start
    landed = []
    for _ in range(length):
        # Each step either jumps back to the seed or moves to a uniform neighbour.
        jump = torch.rand(position.numel(), generator=generator) < restart
        d = degree[position]
        offset = (torch.rand(position.numel(), generator=generator) * d).long()
        moved = indices[(indptr[position] + offset).clamp(max=max(indices.numel() - 1, 0))]
        position = torch.where(jump | (d == 0), home, moved)
        inside = (position >= columns.start) & (position < columns.stop)
        landed.append(row[inside] * width + (position[inside] - columns.start))
    keys, counts = torch.unique(torch.cat(landed), return_counts=True)
    return torch.sparse_coo_tensor(
        torch.stack([keys // width, keys % width]),
        counts.float(),
        (seeds.numel(), width),
        is_coalesced=True,
        check_invariants=False,
    )


def hard_negative_pools(
    users: torch.Tensor,
    items: torch.Tensor,
    n_users: int,
    n_items: int,
    config: HardNegativeConfig = HardNegativeConfig(),
) -> torch.Tensor:
    """An (n_users, pool_size) tensor of hard negatives per user, in this process
    (:func:`sharded_hard_negative_pools` with the local engine, one shard)."""
    pools, _ = sharded_hard_negative_pools(users, items, n_users, n_items, config)
    return pools


@dataclasses.dataclass(frozen=True)
class _WalkGraph:
    """What every shard of the walks reads: the graph, each user's items, and the settings."""

    adjacency: torch.Tensor  # bipartite (users + items)² CSR
    seen: torch.Tensor  # n_users × n_items CSR of train edges
    positives: torch.Tensor  # edge_keys of the train edges
    n_users: int
    n_items: int
    method: str  # ppr or walks
    block_users: int
    config: HardNegativeConfig


def sharded_hard_negative_pools(
    users: torch.Tensor,
    items: torch.Tensor,
    n_users: int,
    n_items: int,
    config: HardNegativeConfig = HardNegativeConfig(),
    engine: Engine | None = None,
    on_shard: Callable[[ShardRun], None] | None = None,
) -> tuple[torch.Tensor, list[ShardRun]]:
    """An (n_users, pool_size) tensor of hard negatives per user, and how its shards ran.

    For each user: random walks with restart over the bipartite graph from the user (exact
    personalised PageRank or sampled walks, :class:`HardNegativeConfig`), items ranked by
    visits with the user's own items removed, and ``pool_size`` items drawn uniformly from the
    ranks [lo, hi) of :meth:`HardNegativeConfig.band`. When the user's unseen items are fewer
    than ``hi``, the band is clipped to the unseen items. With sampled walks, items never
    visited tie at zero and fill the ranks past the visited ones in random order.

    Users are walked in blocks of ``batch_users`` (ppr) or ``walk_batch_users`` (walks), each
    block with its own generator seeded by (seed, block): the engine's shards are runs of whole
    blocks, so the pools are the same however many shards computed them.
    """
    engine = engine or Engine()
    method = config.method
    if method == "auto":
        method = "ppr" if n_users + n_items <= config.ppr_max_nodes else "walks"
    block_users = config.batch_users if method == "ppr" else config.walk_batch_users
    walk_graph = _WalkGraph(
        bipartite_csr(users, items, n_users, n_items),
        interaction_csr(users, items, n_users, n_items),
        edge_keys(users, items, n_items),
        n_users,
        n_items,
        method,
        block_users,
        config,
    )
    n_blocks = -(-n_users // block_users)
    shards = shard_ranges(n_blocks, engine.workers)
    sizes = [min(s.stop * block_users, n_users) - s.start * block_users for s in shards]
    pools, runs = map_shards(
        engine, _pool_blocks, shards, engine.share(walk_graph), sizes=sizes, on_done=on_shard
    )
    if not pools:
        return torch.empty(0, config.pool_size, dtype=torch.long), runs
    return torch.cat(pools), runs


def block_generator(seed: int, block: int) -> torch.Generator:
    """The generator of user block ``block``: independent streams for every (seed, block)."""
    state = np.random.SeedSequence([seed % 2**64, block]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) >> 1)


def _pool_blocks(blocks: range, g: _WalkGraph) -> torch.Tensor:
    """The pools of the users of ``blocks`` (a shard's run of whole blocks), in user order."""
    config, n_users, n_items = g.config, g.n_users, g.n_items
    degree = g.seen.crow_indices().diff()
    lo, hi = config.band(n_items)
    out = []
    for block in blocks:
        generator = block_generator(config.seed, block)
        batch = torch.arange(block * g.block_users, min((block + 1) * g.block_users, n_users))
        unseen = (n_items - degree[batch]).clamp(min=1)
        band_hi = torch.minimum(torch.full_like(unseen, hi), unseen)
        band_lo = torch.minimum(torch.full_like(unseen, lo), band_hi - 1)
        offsets = torch.rand(batch.numel(), config.pool_size, generator=generator)
        rank = band_lo.unsqueeze(1) + (offsets * (band_hi - band_lo).unsqueeze(1)).long()
        if g.method == "ppr":
            pi = personalized_pagerank(g.adjacency, batch, config.restart, config.iterations)
            scores = pi[n_users:].T.contiguous()  # (batch, n_items)
            row_of, cols = csr_rows(g.seen, batch)
            scores[row_of, cols] = -1.0  # below every visit probability
            ranked = torch.topk(scores, hi, dim=1).indices  # (batch, hi), best first
            out.append(ranked.gather(1, rank))
        else:
            out.append(
                _ranks_from_walks(
                    g.adjacency, batch, rank, g.positives, n_users, n_items, config, generator
                )
            )
    if not out:
        return torch.empty(0, config.pool_size, dtype=torch.long)
    return torch.cat(out)


def _ranks_from_walks(adjacency, batch, rank, positives, n_users, n_items, config, generator):
    """Items at the given visit ranks (per user, own items removed, most visited first); ranks
    past a user's visited items are filled with uniformly drawn unvisited unseen items."""
    visits = random_walk_visits(
        adjacency,
        batch,
        config.walks,
        config.walk_length,
        config.restart,
        generator,
        slice(n_users, n_users + n_items),
    )
    row, item = visits.indices()
    count = visits.values()
    keep = ~is_edge(positives, batch[row], item, n_items)
    row, item, count = row[keep], item[keep], count[keep]
    # Within each user: most visited first, ties in random order.
    order = torch.argsort(-(count + 0.5 * torch.rand(count.numel(), generator=generator)))
    order = order[torch.argsort(row[order], stable=True)]
    row, item = row[order], item[order]
    n_visited = torch.bincount(row, minlength=batch.numel())
    first = torch.cumsum(n_visited, 0) - n_visited
    visited = rank < n_visited.unsqueeze(1)
    at = (first.unsqueeze(1) + rank).clamp(max=max(item.numel() - 1, 0))
    ranked = item[at] if item.numel() else torch.zeros_like(rank)
    fill = uniform_negatives(batch, n_items, rank.shape[1], positives, generator)
    return torch.where(visited, ranked, fill)


def curriculum_hard_count(epoch: int, max_hard: int) -> int:
    """Hard negatives per positive at ``epoch`` (1-based): the lecture's n − 1, capped."""
    return max(0, min(epoch - 1, max_hard))
