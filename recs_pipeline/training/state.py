"""The state of a training run (:class:`Run`), its result, and its saved progress.

:class:`Run` holds what the set-up computes once and what the loop changes;
:class:`TrainResult` is what the run returns; :func:`save_progress` saves the whole loop state
after every validation check and :func:`resume` continues from it in a later call.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Callable
from typing import Protocol

import torch

from recs_pipeline.graph.bipartite import InteractionGraph
from recs_pipeline.models import Recommender
from recs_pipeline.training.config import TrainConfig
from recs_pipeline.training.replicas import Replicas
from recs_pipeline.training.teacher import LossPositives
from recs_pipeline.training.validation import FitGraph


@dataclasses.dataclass
class Run:
    """The state of one training run: what the set-up computes once and what the loop changes."""

    config: TrainConfig
    model: Recommender
    objective: torch.nn.Module
    optimiser: torch.optim.Optimizer
    generator: torch.Generator
    fit: FitGraph
    positives: LossPositives
    hard_pools: torch.Tensor | None
    batch_size: int
    started: float
    best: tuple[float, int, dict]
    history: list[dict] = dataclasses.field(default_factory=list)
    stale: int = 0
    first_epoch: int = 1
    stop: bool = False
    warm_counts: dict | None = None

    @property
    def n_batches(self) -> int:
        return math.ceil(self.positives.users.numel() / self.batch_size)


@dataclasses.dataclass
class TrainResult:
    """What ``train_model`` returns: the model at its best validation check, and the run's
    record."""

    model: Recommender
    best_epoch: int
    best_val_recall: float
    history: list[dict]
    seconds: float
    resumed_from_epoch: int = 0
    warm_start: dict | None = None
    setup_seconds: float = 0.0  # graph, initialisation and teacher, before the first epoch


def finish(run: Run, setup_seconds: float) -> TrainResult:
    """The run's result: its model at the best validation state, in eval mode."""
    run.model.load_state_dict(run.best[2])
    run.model.eval()
    return TrainResult(
        run.model,
        run.best[1],
        run.best[0],
        run.history,
        time.perf_counter() - run.started,
        resumed_from_epoch=run.first_epoch - 1,
        warm_start=run.warm_counts,
        setup_seconds=setup_seconds,
    )


class ProgressStore(Protocol):
    """Where a training run keeps its in-progress state (see ``train_model``)."""

    def load(self) -> dict | None: ...

    def save(self, state: dict) -> None: ...


# Config fields that may change between a killed run and its resumption without invalidating it.
_RESUMABLE_CHANGES = {"threads", "time_budget_minutes", "epochs", "patience"}


def run_fingerprint(config: TrainConfig, graph: InteractionGraph) -> str:
    """Identifies what a training run computes: its config (less the fields above), train
    edges and (weighted training) edge weights."""
    digest = hashlib.sha256()
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in _RESUMABLE_CHANGES}
    digest.update(repr(sorted(fields.items())).encode())
    tensors = [graph.train_users, graph.train_items]
    if config.weighted:
        tensors.append(graph.train_weight.float())
    for tensor in tensors:
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def resume(
    run: Run,
    progress: ProgressStore | None,
    fingerprint: str,
    log: Callable[[str], None],
    replicas: Replicas,
) -> None:
    """Continue from the progress rank 0 finds saved for this config and these edges, if any."""
    saved = progress.load() if progress else None
    if saved is not None and saved.get("fingerprint") != fingerprint:
        log("saved training progress belongs to another config or graph: starting over")
        saved = None
    saved = replicas.broadcast(saved)
    if saved is None:
        return
    run.model.load_state_dict(saved["model"])
    run.optimiser.load_state_dict(saved["optimiser"])
    run.best, run.stale, run.history = saved["best"], saved["stale"], saved["history"]
    run.generator.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    run.started -= saved["seconds"]
    run.first_epoch, run.stop = saved["epoch"] + 1, saved["stop"]
    run.warm_counts = saved.get("warm_start")
    log(f"resumed from epoch {saved['epoch']} (best val recall {run.best[0]:.4f})")


def save_progress(run: Run, progress: ProgressStore, fingerprint: str, epoch: int) -> None:
    """The whole loop state after a validation check (``train_model``'s ``progress``)."""
    progress.save(
        {
            "fingerprint": fingerprint,
            "epoch": epoch,
            "stop": run.stop,
            "model": run.model.state_dict(),
            "optimiser": run.optimiser.state_dict(),
            "best": run.best,
            "stale": run.stale,
            "history": run.history,
            "generator": run.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "seconds": time.perf_counter() - run.started,
            "warm_start": run.warm_counts,
        }
    )
