"""Everything a training run does before its first epoch, as named steps.

:func:`set_up` takes them in order: :func:`fit_graph` (the validation slice and the fit graph,
built once for the whole run), :func:`build_network`,
:func:`~recs_pipeline.training.init.initialise` (warm start or initialisation),
:func:`batch_objective`, the optimiser, :func:`~recs_pipeline.training.teacher.loss_positives`
(a teacher's too with distillation) and :func:`batch_size`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import torch

from recs_pipeline.graph.bipartite import InteractionGraph, interaction_csr, normalized_adjacency
from recs_pipeline.graph.negatives import edge_keys
from recs_pipeline.models import MODELS, Recommender, build_model
from recs_pipeline.training.config import TrainConfig
from recs_pipeline.training.init import WarmStart, initialise
from recs_pipeline.training.objective import BatchObjective, loss_function
from recs_pipeline.training.replicas import Replicas
from recs_pipeline.training.state import Run
from recs_pipeline.training.teacher import loss_positives
from recs_pipeline.training.validation import FitGraph, validation_split


def set_up(
    graph: InteractionGraph,
    config: TrainConfig,
    *,
    hard_pools: torch.Tensor | None = None,
    item_features: torch.Tensor | None = None,
    warm_start: WarmStart | None = None,
    log: Callable[[str], None] = print,
    replicas: Replicas | None = None,
) -> Run:
    """The run's state before its first epoch (the module docstring's steps, in that order:
    the seeded draws of the validation slice and the model's initialisation come first)."""
    check_weights(graph, config)
    replicas = replicas or Replicas()
    if config.threads:
        torch.set_num_threads(config.threads)
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    fit = fit_graph(graph, config, generator)
    model = build_network(config, fit, item_features)
    warm_counts = initialise(model, config, fit, warm_start, log)
    objective = batch_objective(config, model, fit, replicas)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    return Run(
        config=config,
        model=model,
        objective=objective,
        optimiser=optimiser,
        generator=generator,
        fit=fit,
        positives=loss_positives(config, fit, log),
        hard_pools=hard_pools,
        batch_size=batch_size(config, fit),
        started=started,
        best=(-1.0, 0, copy.deepcopy(model.state_dict())),
        warm_counts=warm_counts,
    )


def check_weights(graph: InteractionGraph, config: TrainConfig) -> None:
    """Weighted training needs one weight per train edge."""
    weights = graph.train_weight
    if config.weighted and (weights is None or weights.numel() != graph.train_users.numel()):
        raise ValueError(
            "weighted training needs one weight per train edge (weights): the graph has none;"
            " re-materialise interaction_graph"
        )


def fit_graph(graph: InteractionGraph, config: TrainConfig, generator: torch.Generator) -> FitGraph:
    """The validation slice drawn from ``generator`` (:func:`validation_split`), and the graph
    of the remaining train edges, built once for the whole run."""
    users, items, n_users, n_items = (
        graph.train_users, graph.train_items, graph.n_users, graph.n_items
    )  # fmt: skip
    val_mask = validation_split(
        users, graph.train_last_ts, n_users, config.val_users, generator, config.val_fraction
    )
    fit_u, fit_i = users[~val_mask], items[~val_mask]
    weights = None
    if config.weighted:
        fit_w = graph.train_weight[~val_mask].float()
        weights = fit_w / fit_w.mean().clamp(min=torch.finfo(torch.float32).tiny)
    return FitGraph(
        n_users=n_users,
        n_items=n_items,
        users=fit_u,
        items=fit_i,
        weights=weights,
        val_u=users[val_mask],
        val_i=items[val_mask],
        adjacency=normalized_adjacency(fit_u, fit_i, n_users, n_items),
        exclude=interaction_csr(fit_u, fit_i, n_users, n_items),
        train_keys=edge_keys(users, items, n_items),  # validation items are never negatives
    )


def build_network(
    config: TrainConfig, fit: FitGraph, item_features: torch.Tensor | None
) -> Recommender:
    """``config.model`` with the hyperparameters it declares, and (n_items, f) item features
    for a model that takes them; a model that builds structure from the edges (PinSAGE) builds
    it from the fit edges."""
    params = config.network_params()
    if item_features is not None:
        if not MODELS[config.model].takes_item_features:
            raise ValueError(f"model {config.model!r} takes no item features")
        params["item_features"] = item_features
    model = build_model(config.model, fit.n_users, fit.n_items, **params)
    model.attach_graph(fit.users, fit.items)
    return model


def batch_objective(
    config: TrainConfig, model: Recommender, fit: FitGraph, replicas: Replicas
) -> torch.nn.Module:
    """The step's objective over the fit graph, wrapped for the replicas (DDP makes rank 0's
    initial weights everyone's: a spectral start may differ in the last bits)."""
    objective = BatchObjective(
        model, fit.adjacency, loss_function(config), config.l2, world=replicas.world
    )
    return replicas.wrap(objective)


def batch_size(config: TrainConfig, fit: FitGraph) -> int:
    """``config.batch_size``, grown to keep at most ``max_steps_per_epoch`` steps: every step
    of a graph model propagates over the whole graph, so an epoch costs steps × edges, and
    capping the steps (larger batches on larger graphs) keeps it linear."""
    if not config.max_steps_per_epoch:
        return config.batch_size
    return max(config.batch_size, math.ceil(fit.users.numel() / config.max_steps_per_epoch))
