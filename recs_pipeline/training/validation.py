"""The validation slice a run carves from its train edges, and its metrics.

For up to ``val_users`` users with at least two train edges, the user's most recent train
edges (by last event time) are held out of the fit graph. Validation Recall@K ranks all items
except the fit edges. The test fold is never seen here. Model selection
(:mod:`recs_pipeline.evaluation.selection`) carves the same slice with the same seed.
"""

from __future__ import annotations

import dataclasses
import functools

import torch

from recs_pipeline.evaluation.metrics import ranking_metrics, topk_excluding
from recs_pipeline.models import Recommender


@dataclasses.dataclass(frozen=True)
class FitGraph:
    """A run's train edges split into the edges it fits on and its validation slice, with what
    the run builds from the fit edges once (:func:`recs_pipeline.training.setup.fit_graph`):
    the normalised adjacency its model propagates over and the interaction matrix whose items
    validation and the teacher exclude."""

    n_users: int
    n_items: int
    users: torch.Tensor  # the fit edges
    items: torch.Tensor
    # Their loss weights with ``weighted`` (edge weight over the fit edges' mean), else None.
    weights: torch.Tensor | None
    val_u: torch.Tensor  # the validation slice
    val_i: torch.Tensor
    adjacency: torch.Tensor
    exclude: torch.Tensor
    # Edge keys of every train edge, validation ones included: never a negative.
    train_keys: torch.Tensor

    @functools.cached_property
    def val_users(self) -> torch.Tensor:
        return torch.unique(self.val_u)


def validation_split(
    users: torch.Tensor,
    last_ts: torch.Tensor,
    n_users: int,
    max_users: int,
    generator: torch.Generator,
    fraction: float = 0.0,
) -> torch.Tensor:
    """Boolean mask over edges: for up to ``max_users`` random users with at least two edges,
    their latest edges (ties in time broken by the larger edge index): one edge when
    ``fraction`` is 0, else ``fraction`` of the user's edges (at least one, never all)."""
    degree = torch.bincount(users, minlength=n_users)
    eligible = torch.nonzero(degree >= 2).squeeze(1)
    chosen = eligible[torch.randperm(eligible.numel(), generator=generator)[:max_users]]
    held_out = torch.zeros(n_users, dtype=torch.long)
    per_user = torch.ones_like(degree) if fraction <= 0 else (fraction * degree).long().clamp(min=1)
    held_out[chosen] = torch.minimum(per_user[chosen], degree[chosen] - 1)
    # Order edges by (user, ts); an edge's position from its user's end says how recent it is.
    order = torch.argsort(last_ts, stable=True)
    order = order[torch.argsort(users[order], stable=True)]
    sorted_users = users[order]
    end_of_user = torch.cumsum(degree, 0)[sorted_users]
    from_end = end_of_user - torch.arange(users.numel())  # 1 for the latest edge
    mask = torch.zeros(users.numel(), dtype=torch.bool)
    mask[order] = from_end <= held_out[sorted_users]
    return mask


def validation_metrics(
    model: Recommender,
    adjacency: torch.Tensor,
    exclude: torch.Tensor,
    users: torch.Tensor,
    val_users: torch.Tensor,
    val_items: torch.Tensor,
    k: int,
) -> tuple[float, float]:
    """(Recall@k, NDCG@k) on the validation edges, fit items excluded."""
    model.eval()
    with torch.no_grad():
        user_emb, item_emb = model.embed(adjacency)
        _, top = topk_excluding(user_emb, item_emb, users, exclude, k)
    metrics = ranking_metrics(top, users, val_users, val_items, item_emb.shape[0], (k,))
    return metrics[("recall", k)], metrics[("ndcg", k)]
