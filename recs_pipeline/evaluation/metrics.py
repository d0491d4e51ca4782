"""Full-ranking top-K with already-seen items excluded, and the ranking metrics.

Definitions (per user u with test items T_u ≠ ∅, top-K list L_u; averaged over such users):
- Recall@K = |L_u ∩ T_u| / |T_u|  (the LightGCN/NGCF definition; not capped at K)
- Precision@K = |L_u ∩ T_u| / K
- HitRate@K = 1[|L_u ∩ T_u| > 0]
- NDCG@K = DCG/IDCG with DCG = Σ_{r≤K, L_u[r] ∈ T_u} 1/log₂(r + 1) and IDCG the DCG of
  min(|T_u|, K) hits at the top.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch

from recs_pipeline.graph.bipartite import csr_rows
from recs_pipeline.graph.negatives import edge_keys, is_edge
from recs_pipeline.infra.engine import Engine, ShardRun, map_shards, shard_ranges

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def topk_scored(
    score_fn: ScoreFn,
    users: torch.Tensor,
    exclude: torch.Tensor | None,
    k: int,
    chunk_users: int = 2048,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` items for each of ``users`` by ``score_fn``, skipping excluded items.

    ``score_fn(batch)`` returns the dense (len(batch), n_items) scores of a batch of users.
    ``exclude`` is an n_users × n_items sparse CSR matrix whose nonzeros are never returned
    (training items). Users are scored one chunk at a time, so memory stays at
    ``chunk_users × n_items`` floats. Returns (scores, items), each (len(users), k), best first;
    where a user has fewer than k unexcluded items the tail has score −inf.
    """
    top_scores, top_items = [], []
    with torch.no_grad():
        for start in range(0, users.numel(), chunk_users):
            batch = users[start : start + chunk_users]
            scores = score_fn(batch)
            if exclude is not None:
                row_of, cols = csr_rows(exclude, batch)
                scores[row_of, cols] = -torch.inf
            values, indices = torch.topk(scores, min(k, scores.shape[1]), dim=1)
            del scores  # free this chunk's scores before the next chunk allocates its own
            top_scores.append(values)
            top_items.append(indices)
    if not top_items:
        empty = torch.empty(0, k)
        return empty, empty.long()
    return torch.cat(top_scores), torch.cat(top_items)


def pad_to_k(scores: torch.Tensor, items: torch.Tensor, k: int):
    """Top-K (scores, items) widened to ``k`` columns with −inf scores and item 0, for lists
    that must have exactly k columns (publication) when fewer candidates existed. Padded
    entries are recognisable by their −inf score only: keep them out of ranking metrics."""
    missing = k - items.shape[1]
    if missing <= 0:
        return scores, items
    rows = items.shape[0]
    return (
        torch.cat([scores, torch.full((rows, missing), -torch.inf)], 1),
        torch.cat([items, torch.zeros(rows, missing, dtype=items.dtype)], 1),
    )


class InnerProduct:
    """score(u, i) = ⟨user_emb[u], item_emb[i]⟩, keeping the embeddings visible to consumers
    that can rank without every score (publication's approximate index)."""

    def __init__(self, user_emb: torch.Tensor, item_emb: torch.Tensor) -> None:
        self.user_emb, self.item_emb = user_emb, item_emb

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.user_emb[batch] @ self.item_emb.T


def inner_product(user_emb: torch.Tensor, item_emb: torch.Tensor) -> InnerProduct:
    """score(u, i) = ⟨user_emb[u], item_emb[i]⟩."""
    return InnerProduct(user_emb, item_emb)


def topk_excluding(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    users: torch.Tensor,
    exclude: torch.Tensor | None,
    k: int,
    chunk_users: int = 2048,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`topk_scored` for inner-product scores of embeddings."""
    return topk_scored(inner_product(user_emb, item_emb), users, exclude, k, chunk_users)


def user_metrics(
    top_items: torch.Tensor,
    users: torch.Tensor,
    test_users: torch.Tensor,
    test_items: torch.Tensor,
    n_items: int,
    ks: Sequence[int] = (10, 20, 50),
) -> dict[tuple[str, int], torch.Tensor]:
    """Each metric of the module docstring per user, for lists ``top_items[j]`` of ``users[j]``:
    one value per user with test items, in the order of ``users`` (the others are dropped).

    Test edges are (``test_users``, ``test_items``). Every K must be at most
    ``top_items.shape[1]``.
    """
    truth = edge_keys(test_users, test_items, n_items)
    n_test = torch.bincount(test_users, minlength=int(users.max()) + 1 if users.numel() else 0)
    n_test = n_test[users]
    keep = n_test > 0
    users, top_items, n_test = users[keep], top_items[keep], n_test[keep].float()
    hits = is_edge(truth, users.unsqueeze(1).expand_as(top_items), top_items, n_items).float()
    discount = 1.0 / torch.log2(torch.arange(2, top_items.shape[1] + 2, dtype=torch.float32))
    results: dict[tuple[str, int], torch.Tensor] = {}
    for k in ks:
        if k > top_items.shape[1]:
            raise ValueError(f"K={k} exceeds the list length {top_items.shape[1]}")
        hit_count = hits[:, :k].sum(1)
        dcg = (hits[:, :k] * discount[:k]).sum(1)
        ideal = torch.cumsum(discount[:k], 0)[(n_test.clamp(max=k) - 1).long()]
        values = {
            "recall": hit_count / n_test,
            "ndcg": dcg / ideal,
            "precision": hit_count / k,
            "hitrate": (hit_count > 0).float(),
        }
        for metric, value in values.items():
            results[(metric, k)] = value
    return results


def mean_metrics(per_user: dict[tuple[str, int], torch.Tensor]) -> dict[tuple[str, int], float]:
    """The average over users of each :func:`user_metrics` value (NaN without a user)."""
    return {
        key: values.mean().item() if values.numel() else math.nan
        for key, values in per_user.items()
    }


def ranking_metrics(
    top_items: torch.Tensor,
    users: torch.Tensor,
    test_users: torch.Tensor,
    test_items: torch.Tensor,
    n_items: int,
    ks: Sequence[int] = (10, 20, 50),
) -> dict[tuple[str, int], float]:
    """Metrics of the module docstring for lists ``top_items[j]`` of ``users[j]``, averaged
    over the users with test items."""
    return mean_metrics(user_metrics(top_items, users, test_users, test_items, n_items, ks))


def evaluate_scorer(
    score_fn: ScoreFn,
    n_items: int,
    exclude: torch.Tensor,
    test_users: torch.Tensor,
    test_items: torch.Tensor,
    ks: Sequence[int] = (10, 20, 50),
) -> dict[tuple[str, int], float]:
    """Full-ranking metrics over every user with test items, training items excluded."""
    users = torch.unique(test_users)
    _, top = topk_scored(score_fn, users, exclude, max(ks))
    return ranking_metrics(top, users, test_users, test_items, n_items, ks)


@dataclasses.dataclass(frozen=True)
class ScorerResults:
    """:func:`evaluate_scorers`' answer: each scorer's metrics averaged over the evaluated
    users (``metrics``) and per user (``per_user``, the users in one order for every scorer,
    which paired comparisons need), and how the shards ran."""

    metrics: dict[str, dict[tuple[str, int], float]]
    per_user: dict[str, dict[tuple[str, int], torch.Tensor]]
    runs: list[ShardRun]


def evaluate_scorers(
    scorers: dict[str, ScoreFn],
    n_items: int,
    exclude: torch.Tensor,
    test_users: torch.Tensor,
    test_items: torch.Tensor,
    ks: Sequence[int] = (10, 20, 50),
    engine: Engine | None = None,
    on_shard: Callable[[ShardRun], None] | None = None,
) -> ScorerResults:
    """:func:`evaluate_scorer` for several scorers on the same users, the full ranking (users
    × items, the cost) in the engine's shards of users; the metrics are computed once from the
    merged lists, so they are those of one shard."""
    engine = engine or Engine()
    users = torch.unique(test_users)
    shards = [users[r.start : r.stop] for r in shard_ranges(users.numel(), engine.workers)]
    shared = engine.share((scorers, exclude, max(ks)))
    tops, runs = map_shards(engine, _topk_shard, shards, shared, on_done=on_shard)
    per_user = {}
    for name in scorers:
        top = torch.cat([t[name] for t in tops]) if tops else torch.empty(0, max(ks)).long()
        per_user[name] = user_metrics(top, users, test_users, test_items, n_items, ks)
    metrics = {name: mean_metrics(values) for name, values in per_user.items()}
    return ScorerResults(metrics, per_user, runs)


def _topk_shard(users: torch.Tensor, shared: tuple) -> dict[str, torch.Tensor]:
    """One shard of :func:`evaluate_scorers`: every scorer's top-k items of ``users``."""
    scorers, exclude, k = shared
    return {name: topk_scored(fn, users, exclude, k)[1] for name, fn in scorers.items()}


def evaluate_embeddings(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    exclude: torch.Tensor,
    test_users: torch.Tensor,
    test_items: torch.Tensor,
    ks: Sequence[int] = (10, 20, 50),
) -> dict[tuple[str, int], float]:
    """:func:`evaluate_scorer` for inner-product scores of embeddings."""
    return evaluate_scorer(
        inner_product(user_emb, item_emb), item_emb.shape[0], exclude, test_users, test_items, ks
    )


def popularity_embeddings(item_degree: torch.Tensor, n_users: int):
    """Popularity as a rank-1 model: every user scores item i by its train degree."""
    return torch.ones(n_users, 1), item_degree.float().unsqueeze(1)
