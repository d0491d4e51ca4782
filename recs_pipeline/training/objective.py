"""The loss objective of a training step: a mini-batch's loss terms (:class:`Batch`) and the
module that turns them into the loss (:class:`BatchObjective`).

The same objective serves one process and each data-parallel replica, which takes its part of
the batch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import torch

from recs_pipeline.models import Recommender
from recs_pipeline.training.config import TrainConfig
from recs_pipeline.training.losses import LOSSES, l2_penalty


def loss_function(config: TrainConfig) -> Callable:
    """``config.loss`` (the softmax at ``config.temperature``)."""
    loss_fn = LOSSES[config.loss]
    if config.loss == "softmax":
        loss_fn = functools.partial(loss_fn, temperature=config.temperature)
    return loss_fn


@dataclasses.dataclass
class Batch:
    """One mini-batch of loss terms: positives (users, items, loss weights or None) with each
    row's own negatives (uniform and hard, (rows, n) or None) and the negatives shared by every
    row ((S,) or None). ``total``: rows of the whole batch this one is a part of."""

    users: torch.Tensor
    items: torch.Tensor
    weights: torch.Tensor | None
    negatives: torch.Tensor | None
    shared: torch.Tensor | None
    total: int
    # Whether this part carries the shared negatives' L2 term (one part of a split batch).
    shared_l2: bool = True
    # distill_listwise: each row's further negatives among the teacher's items, (rows, k) with
    # a mask of the real ones (only a teacher row has any: its user's lower-ranked items).
    below: torch.Tensor | None = None
    below_mask: torch.Tensor | None = None

    def part(self, rank: int, world: int) -> Batch:
        """The rank's contiguous slice of the rows (the first ranks take one more when the rows
        do not divide evenly). Every part scores the shared negatives; rank 0's counts their L2
        term, which the whole batch counts once."""
        size, extra = divmod(self.users.numel(), world)
        start = rank * size + min(rank, extra)
        rows = slice(start, start + size + (rank < extra))

        def cut(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[rows]

        return Batch(
            self.users[rows],
            self.items[rows],
            cut(self.weights),
            cut(self.negatives),
            self.shared,
            self.total,
            shared_l2=rank == 0,
            below=cut(self.below),
            below_mask=cut(self.below_mask),
        )


class BatchObjective(torch.nn.Module):
    """A training step's objective as a module: propagate, score the batch's positives and
    negatives, loss plus L2 on the batch's layer-0 embeddings. A part of a batch split over
    ``world`` replicas returns its share of the whole batch's loss times ``world``, so that the
    replicas' mean gradient (what DistributedDataParallel all-reduces) is the whole batch's.

    Graph models propagate over the whole graph in every step, on every replica: each replica
    holds the full graph and all embedding tables; data parallelism splits only the batch."""

    def __init__(
        self,
        model: Recommender,
        adjacency: torch.Tensor,
        loss_fn: Callable,
        l2: float,
        world: int = 1,
    ) -> None:
        super().__init__()
        self.model = model
        self.adjacency = adjacency  # not a buffer: nothing for DDP to synchronise
        self.loss_fn, self.l2, self.world = loss_fn, l2, world

    def forward(self, batch: Batch) -> torch.Tensor:
        user_emb, item_emb = self.model.embed(self.adjacency)
        rows = batch.users.numel()
        if rows == 0:
            # A final batch smaller than the world leaves some replica no rows: it still joins
            # the gradient all-reduce, with zeros.
            return 0.0 * (user_emb.sum() + item_emb.sum())
        zu = user_emb[batch.users]
        pos = (zu * item_emb[batch.items]).sum(-1)
        negatives, neg_scores = [], []
        if batch.shared is not None:
            if batch.shared_l2:
                negatives.append(batch.shared)
            neg_scores.append(zu @ item_emb[batch.shared].T)
        if batch.negatives is not None:
            negatives.append(batch.negatives.reshape(-1))
            neg_scores.append(torch.einsum("bd,bnd->bn", zu, item_emb[batch.negatives]))
        if batch.below is not None:
            # Scored only on the rows that have any (own edges and a list's last item have
            # none); -inf drops a slot from the softmax's sum. No L2 term: they are positives.
            has = batch.below_mask.any(1).nonzero().squeeze(1)
            scored = torch.einsum("bd,bkd->bk", zu[has], item_emb[batch.below[has]])
            below = zu.new_full(batch.below.shape, -math.inf)
            below = below.index_put((has,), scored.masked_fill(~batch.below_mask[has], -math.inf))
            neg_scores.append(below)
        neg = torch.cat(neg_scores, dim=1)
        zu0, zp0 = self.model.layer0(batch.users, batch.items)
        _, zn0 = self.model.layer0(batch.users[:0], torch.cat(negatives or [batch.items[:0]]))
        loss = self.loss_fn(pos, neg, batch.weights)
        loss = loss + self.l2 * l2_penalty(zu0, zp0, zn0)
        share = self.world * rows / batch.total
        return loss if share == 1 else loss * share
