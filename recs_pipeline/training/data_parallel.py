"""Data-parallel training: ``engine.workers`` processes train one model together.

:func:`train_data_parallel` runs :func:`recs_pipeline.training.loop.train_model` once per rank
through :meth:`Engine.gang <recs_pipeline.infra.engine.Engine.gang>` (spawned processes on this
machine, or Ray actors reserved together in a placement group). The ranks form one
``torch.distributed`` process group (gloo: training runs on CPU tensors) and compute exactly
what one process computes:

- every rank draws the same global batch and the same negatives from the shared seed and
  trains on its contiguous slice of the rows (same global batch size as one process);
- the step is the single-process step
  (:class:`~recs_pipeline.training.objective.BatchObjective`) wrapped in
  DistributedDataParallel, which all-reduces the gradients; each slice's loss is scaled to
  its share of the global batch, so the averaged gradient is the global batch's. DDP fits
  although the models propagate over the whole graph outside any ``forward`` of their own:
  the step module's forward does the propagation, scoring and loss, so every parameter gets
  its gradient inside one DDP forward/backward (checked for LightGCN, NGCF, MF and PinSAGE);
- rank 0 validates, logs and saves progress; the others receive its verdict (gains, early
  stop, plateau restarts, time budget) by broadcast, which is where they wait for it.

Each rank holds the whole graph and every embedding table, and graph models propagate over the
whole graph on every rank: data parallelism divides the batch work (scores, losses, their
gradients, negative lookups), not the propagation. Tables too big for one worker need them
sharded, which this module does not do.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from recs_pipeline.graph.bipartite import InteractionGraph
from recs_pipeline.infra.engine import Engine
from recs_pipeline.training.config import TrainConfig
from recs_pipeline.training.loop import train_model
from recs_pipeline.training.replicas import Replicas
from recs_pipeline.training.state import TrainResult

logger = logging.getLogger(__name__)

# How long a rank waits in a collective for its peers (rank 0's validation included).
COLLECTIVE_TIMEOUT = dt.timedelta(minutes=30)


class ProcessGroupReplicas(Replicas):
    """The replicas of a ``torch.distributed`` process group (initialised by the caller)."""

    def __init__(self) -> None:
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def wrap(self, objective: torch.nn.Module) -> torch.nn.Module:
        # No model changes a buffer while training: nothing to re-broadcast before each step
        # beyond what DDP's construction synchronises (rank 0's parameters and buffers).
        return DistributedDataParallel(objective, forward_sync_buffers=False)

    def broadcast(self, obj):
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, value: float) -> float:
        total = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(total)
        return float(total)


@dataclasses.dataclass(frozen=True)
class TrainJob:
    """``train_model``'s inputs, shipped once to every rank."""

    graph: InteractionGraph
    config: TrainConfig
    kwargs: dict


def train_replica(rank: int, world: int, rendezvous: str | None, job: TrainJob):
    """One rank of :func:`train_data_parallel` (an :meth:`Engine.gang` function): rank 0
    returns the result and its log lines, the others None."""
    lines: list[str] = []
    kwargs = dict(job.kwargs)
    if rank != 0:  # only rank 0 resumes from and saves progress
        kwargs["progress"] = None
    config = job.config
    if world == 1:
        result = train_model(job.graph, config, log=lines.append, **kwargs)
        return result, lines
    if not config.threads:
        # The ranks share what their launcher had: a spawned rank starts with the step's
        # OMP_NUM_THREADS (its share of the machine) or every core; a Ray actor with its CPUs.
        torch.set_num_threads(max(1, torch.get_num_threads() // world))
    dist.init_process_group(
        "gloo", init_method=rendezvous, rank=rank, world_size=world, timeout=COLLECTIVE_TIMEOUT
    )
    try:
        result = train_model(
            job.graph,
            config,
            log=lines.append if rank == 0 else _quiet,
            replicas=ProcessGroupReplicas(),
            **kwargs,
        )
    finally:
        dist.destroy_process_group()
    return (result, lines) if rank == 0 else None


def train_data_parallel(
    engine: Engine,
    graph: InteractionGraph,
    config: TrainConfig,
    log: Callable[[str], None] = print,
    **kwargs,
) -> TrainResult:
    """:func:`~recs_pipeline.training.loop.train_model` on ``engine.workers`` ranks
    (``kwargs``: its keyword inputs but ``on_epoch``). Rank 0's log lines reach ``log`` when
    training ends."""
    job = TrainJob(graph, config, kwargs)
    with engine.session():
        result, lines = engine.gang(train_replica, engine.share(job))[0]
    for line in lines:
        log(line)
    return result


def rank_log(message: str) -> None:
    """Where a rank's helpers without a Dagster log write (a progress store refusing its
    file): Python logging, on a spawned rank's stderr, forwarded to the driver by Ray. A
    module-level function, so that it travels to the ranks by name (``print`` may not: the
    step's ``builtins.print`` can be a replacement that does not pickle)."""
    logger.warning(message)


def _quiet(_: str) -> None:
    pass
