"""The training loop: :func:`train_model` trains ``config.model`` on a graph's train edges and
keeps its best validation state.

It reads top down: :func:`~recs_pipeline.training.setup.set_up`,
:func:`~recs_pipeline.training.state.resume`, then per epoch :func:`train_epoch`
(:func:`sample_batch` and :func:`train_step` per mini-batch), :func:`check` (validation when
due), :func:`keep_best`, :func:`stop_if_done` and
:func:`~recs_pipeline.training.state.save_progress`. Data-parallel training
(:mod:`recs_pipeline.training.data_parallel`) runs this same loop on every rank through its
:class:`~recs_pipeline.training.replicas.Replicas`.

The loss: BPR, binary or sampled softmax with L2 on the batch's layer-0 embeddings. Negatives
per positive: ``uniform_negatives`` drawn per user, or ``shared_negatives`` drawn once per
mini-batch and scored against every user of the batch (one embedding lookup per negative
instead of one per user and negative; a shared negative that happens to be some user's positive
is not masked, as in in-batch softmax). ``hard_pools`` (n_users, pool) holds each user's hard
negatives; epoch n adds ``min(n − 1, max_hard_negatives)`` of them per positive. With
``weighted``, each train edge's loss term is scaled by its weight over the mean weight of the
fit edges (equal weights train exactly as unweighted ones).

Early stopping on the validation slice (:mod:`recs_pipeline.training.validation`): a check
without gain multiplies the learning rate by ``plateau_decay`` (1 = constant) and restarts from
the best state so far; training stops after ``patience`` checks without gain, or once past
``time_budget_minutes``: at the end of the epoch for data-parallel copies, at the next
mini-batch for a single one (an epoch of a large graph can outlast a short budget).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch

from recs_pipeline.graph.bipartite import InteractionGraph
from recs_pipeline.graph.negatives import curriculum_hard_count, uniform_negatives
from recs_pipeline.training.config import TrainConfig
from recs_pipeline.training.init import WarmStart
from recs_pipeline.training.objective import Batch
from recs_pipeline.training.replicas import Replicas
from recs_pipeline.training.setup import set_up
from recs_pipeline.training.state import (
    ProgressStore,
    Run,
    TrainResult,
    finish,
    resume,
    run_fingerprint,
    save_progress,
)
from recs_pipeline.training.validation import validation_metrics


def train_model(
    graph: InteractionGraph,
    config: TrainConfig,
    *,
    log: Callable[[str], None] = print,
    on_epoch: Callable[[dict], None] | None = None,
    hard_pools: torch.Tensor | None = None,
    item_features: torch.Tensor | None = None,
    warm_start: WarmStart | None = None,
    progress: ProgressStore | None = None,
    replicas: Replicas | None = None,
) -> TrainResult:
    """Train ``config.model`` on ``graph``'s train edges (its ``train_weight`` with
    ``weighted``); the model at its best validation check.

    ``on_epoch`` sees each epoch's history record (a progress bar's hook). ``hard_pools``:
    each user's hard negatives; ``item_features``: (n_items, f) for a model that takes them.
    ``warm_start`` initialises the model from a previous day's checkpoint instead of
    ``config.init`` (:mod:`recs_pipeline.training.init`). ``progress`` makes the run resumable:
    after every validation check the whole loop state is saved there, and a later call with the
    same config and edges continues from the last check, giving the same result as an
    uninterrupted run. ``replicas``: this call is one of several data-parallel copies, which
    draw the same batches and train on their slices of each; rank 0 validates and saves
    progress (pass ``progress`` to it only) and the others follow its verdicts.
    """
    replicas = replicas or Replicas()
    run = set_up(
        graph, config, hard_pools=hard_pools, item_features=item_features,
        warm_start=warm_start, log=log, replicas=replicas,
    )  # fmt: skip
    fingerprint = run_fingerprint(config, graph) if progress else ""
    resume(run, progress, fingerprint, log, replicas)
    setup_seconds = time.perf_counter() - run.started
    for epoch in range(run.first_epoch, config.epochs + 1):
        if run.stop:
            break
        record = train_epoch(run, epoch, replicas)
        checked, time_up = check(run, epoch, replicas)
        record.update(checked)
        if checked:
            keep_best(run, record, epoch)
        run.history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        log(epoch_line(record, config))
        stop_if_done(run, epoch, time_up, log)
        if progress and checked:
            save_progress(run, progress, fingerprint, epoch)
    return finish(run, setup_seconds)


def train_epoch(run: Run, epoch: int, replicas: Replicas) -> dict:
    """One pass over the loss positives in shuffled mini-batches; the epoch's history record."""
    epoch_started = time.perf_counter()
    lr = run.optimiser.param_groups[0]["lr"]  # what this epoch's steps use
    run.model.train()
    n_hard = (
        curriculum_hard_count(epoch, run.config.max_hard_negatives)
        if run.hard_pools is not None
        else 0
    )
    epoch_loss, done = 0.0, 0
    order = torch.randperm(run.positives.users.numel(), generator=run.generator)
    for b in range(run.n_batches):
        batch = sample_batch(run, order[b * run.batch_size : (b + 1) * run.batch_size], n_hard)
        epoch_loss += train_step(run, batch.part(replicas.rank, replicas.world))
        done += 1
        # A time budget ends a single copy's epoch part-way: on a large graph one epoch can
        # outlast the whole budget (a selection's trial gets a quarter of it). Replicas keep
        # whole epochs: their batches must stay in step, and only rank 0 keeps the clock.
        if replicas.world == 1 and out_of_time(run) and done < run.n_batches:
            break
    record = {
        "epoch": epoch,
        "loss": replicas.sum(epoch_loss) / replicas.world / done,
        "hard_negatives": n_hard,
        "lr": lr,
        "step_seconds": time.perf_counter() - epoch_started,
    }
    if done < run.n_batches:
        record["batches"] = f"{done} of {run.n_batches} (time budget spent)"
    return record


def sample_batch(run: Run, idx: torch.Tensor, n_hard: int) -> Batch:
    """The positives ``idx`` with their negatives, drawn from the run's generator (the same
    draws on every replica: each then takes its part)."""
    config, positives = run.config, run.positives
    u = positives.users[idx]
    shared = negatives = None
    if config.shared_negatives:
        shared = torch.randint(
            0, run.model.n_items, (config.shared_negatives,), generator=run.generator
        )
    per_user = []
    if config.uniform_negatives:
        per_user.append(
            uniform_negatives(
                u, run.model.n_items, config.uniform_negatives, run.fit.train_keys, run.generator
            )
        )
    if n_hard:
        pick = torch.randint(
            0, run.hard_pools.shape[1], (u.numel(), n_hard), generator=run.generator
        )
        per_user.append(run.hard_pools[u.unsqueeze(1), pick])
    if per_user:
        negatives = torch.cat(per_user, dim=1)
    weights = None if positives.weights is None else positives.weights[idx]
    below = below_mask = None
    if positives.teacher_lists is not None:
        # A teacher row of rank r: its user's teacher items of rank > r (Plackett-Luce's step r).
        below = positives.teacher_lists[u]
        rank = positives.rank[idx].unsqueeze(1)  # -1 for an own edge: nothing below it
        below_mask = (torch.arange(below.shape[1]) > rank) & (rank >= 0) & (below >= 0)
        below = below.clamp(min=0)
    return Batch(
        u, positives.items[idx], weights, negatives, shared, total=u.numel(), below=below,
        below_mask=below_mask,
    )  # fmt: skip


def train_step(run: Run, batch: Batch) -> float:
    """One optimiser step on ``batch``; its loss (this replica's share)."""
    loss = run.objective(batch)
    run.optimiser.zero_grad(set_to_none=True)
    loss.backward()
    run.optimiser.step()
    return loss.item()


def check(run: Run, epoch: int, replicas: Replicas) -> tuple[dict, bool]:
    """Rank 0's validation record of ``epoch`` (empty when no check is due) and whether the
    time budget is spent, on every replica: one message per epoch from rank 0, whose
    validation and clock decide for everyone. The last epoch a time budget allows is validated
    too: its weights may be the best, and a run stopped by its clock before a check would have
    no validation at all."""
    config = run.config
    due = epoch % config.eval_every == 0 or epoch == config.epochs
    due = due or (replicas.leader and out_of_time(run))
    checked = validate(run) if due and replicas.leader else {}
    return replicas.broadcast((checked, replicas.leader and out_of_time(run)))


def validate(run: Run) -> dict:
    """Validation Recall and NDCG at ``val_k`` of the current weights, with their time."""
    started, fit = time.perf_counter(), run.fit
    recall, ndcg = validation_metrics(
        run.model, fit.adjacency, fit.exclude, fit.val_users, fit.val_u, fit.val_i,
        run.config.val_k,
    )  # fmt: skip
    return {"val_recall": recall, "val_ndcg": ndcg, "val_seconds": time.perf_counter() - started}


def keep_best(run: Run, record: dict, epoch: int) -> None:
    """Keep the weights of a validation gain; after a check without gain, count it and (with
    ``plateau_decay``) go back to the best weights at a lower learning rate, which the next
    epoch's record shows (each record's ``lr`` is the rate its steps used)."""
    if record["val_recall"] > run.best[0]:
        run.best, run.stale = (
            (record["val_recall"], epoch, copy.deepcopy(run.model.state_dict())),
            0,
        )
        return
    run.stale += 1
    if run.config.plateau_decay != 1.0:
        run.model.load_state_dict(run.best[2])
        for group in run.optimiser.param_groups:
            group["lr"] *= run.config.plateau_decay


def epoch_line(record: dict, config: TrainConfig) -> str:
    """The epoch's log line: its loss, hard negatives and (when checked) validation."""
    line = f"epoch {record['epoch']}: loss {record['loss']:.4f}"
    line += f", hard negatives {record['hard_negatives']}"
    if "val_recall" in record:
        line += f", val recall@{config.val_k} {record['val_recall']:.4f}"
        line += f" ndcg@{config.val_k} {record['val_ndcg']:.4f}"
    return line


def stop_if_done(run: Run, epoch: int, time_up: bool, log: Callable[[str], None]) -> None:
    """Stop after ``patience`` checks without gain, or once the time budget is spent."""
    config = run.config
    if run.stale >= config.patience:
        log(f"early stop after epoch {epoch}: no gain in {config.patience} evaluations")
        run.stop = True
    elif time_up:
        log(f"time budget of {config.time_budget_minutes:g} min spent after epoch {epoch}")
        run.stop = True


def out_of_time(run: Run) -> bool:
    budget = run.config.time_budget_minutes
    return bool(budget) and time.perf_counter() - run.started > 60 * budget
