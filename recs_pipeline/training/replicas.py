"""The data-parallel protocol of the training loop: the copies of one run that compute
together. :class:`Replicas` is the single copy of a plain run;
:class:`~recs_pipeline.training.data_parallel.ProcessGroupReplicas` the ranks of a
``torch.distributed`` process group. The loop calls the same methods on either, so one code
path trains both.
"""

from __future__ import annotations

import torch


class Replicas:
    """The copies of one training run that compute together: one per worker process in
    data-parallel training (:mod:`recs_pipeline.training.data_parallel`). This default is the single
    copy of a plain run, for which every collective is the identity."""

    rank: int = 0
    world: int = 1

    @property
    def leader(self) -> bool:
        """Rank 0: the copy that validates, logs and saves progress."""
        return self.rank == 0

    def wrap(self, objective: torch.nn.Module) -> torch.nn.Module:
        """``objective`` such that its backward pass leaves the replicas' mean gradient."""
        return objective

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every replica."""
        return obj

    def sum(self, value: float) -> float:
        """``value`` summed over the replicas."""
        return value
