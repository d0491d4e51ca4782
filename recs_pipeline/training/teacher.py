"""Knowledge distillation from a training-free teacher, and the loss positives of a run.

The loss positives are the fit edges, plus with ``distill`` the teacher's top ``distill_k``
unseen items per user. Each positive's loss weight: 1 for the user's own edges (their edge
weight over the mean with ``weighted``; times ``distill_own_weight`` when set, 0 drops them);
for a teacher item ``distill_weight``, times the DCG discount 1/log2(r + 2) of its teacher rank
r with ``distill_ranked`` (the student then learns the teacher's order, not only its set). With
``distill_listwise`` a teacher row also keeps its rank, so that a batch can give it its user's
lower-ranked teacher items as negatives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from recs_pipeline.evaluation.metrics import topk_scored
from recs_pipeline.graph.bipartite import interaction_csr
from recs_pipeline.models import fit_training_free
from recs_pipeline.training.config import TrainConfig
from recs_pipeline.training.validation import FitGraph


@dataclasses.dataclass(frozen=True)
class LossPositives:
    """The (user, item) pairs a run's loss treats as positives, with their loss weights (None:
    every one 1)."""

    users: torch.Tensor
    items: torch.Tensor
    weights: torch.Tensor | None = None
    # distill_listwise: each positive's teacher rank (-1: an own edge) and each user's teacher
    # items by rank (n_users, distill_k; -1 where the teacher had fewer).
    rank: torch.Tensor | None = None
    teacher_lists: torch.Tensor | None = None


def loss_positives(config: TrainConfig, fit: FitGraph, log: Callable[[str], None]) -> LossPositives:
    """The fit edges, plus with ``config.distill`` the teacher's (module docstring)."""
    if not config.distill:
        return LossPositives(fit.users, fit.items, fit.weights)
    teacher_u, teacher_i, teacher_rank = teacher_edges(
        config.distill, fit.users, fit.items, fit.n_users, fit.n_items, config.distill_k,
        config.distill_params or {}, exclude=fit.exclude,
    )  # fmt: skip
    teacher_w = torch.full((teacher_u.numel(),), float(config.distill_weight))
    if config.distill_ranked:
        teacher_w /= torch.log2(teacher_rank.float() + 2)
    own_u, own_i = fit.users, fit.items
    own_w = torch.ones(fit.users.numel()) if fit.weights is None else fit.weights
    if config.distill_own_weight == 0:  # weight-0 positives would only lengthen the epoch
        own_u, own_i, own_w = own_u[:0], own_i[:0], own_w[:0]
    elif config.distill_own_weight is not None:
        own_w = own_w * config.distill_own_weight
    rank = teacher_lists = None
    if config.distill_listwise:
        rank = torch.cat([torch.full_like(own_u, -1), teacher_rank])
        teacher_lists = torch.full((fit.n_users, config.distill_k), -1, dtype=torch.long)
        teacher_lists[teacher_u, teacher_rank] = teacher_i
    log(
        f"distilling {config.distill}: {teacher_u.numel()} teacher edges beside {own_u.numel()} own"
    )
    return LossPositives(
        torch.cat([own_u, teacher_u]), torch.cat([own_i, teacher_i]),
        torch.cat([own_w, teacher_w]), rank, teacher_lists,
    )  # fmt: skip


def teacher_edges(
    teacher: str,
    users: torch.Tensor,
    items: torch.Tensor,
    n_users: int,
    n_items: int,
    k: int,
    params: dict | None = None,
    exclude: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Knowledge distillation from a training-free model: fit ``teacher`` on the edges and
    return its top-``k`` unseen items of every user with an edge, as extra (user, item)
    positives for the loss (never for the propagation graph). The teacher sees only the fit
    edges, so it knows no validation edge either. Returns (users, items, teacher ranks 0..k−1).
    ``exclude``: the edges' interaction matrix, where the caller has built it already.
    """
    model = fit_training_free(teacher, users, items, n_users, n_items, **(params or {}))
    active = torch.unique(users)
    if exclude is None:
        exclude = interaction_csr(users, items, n_users, n_items)
    scores, top = topk_scored(model.scores, active, exclude, k)
    keep = torch.isfinite(scores)
    rank = torch.arange(top.shape[1]).expand_as(top)
    return active.unsqueeze(1).expand_as(top)[keep], top[keep], rank[keep]
