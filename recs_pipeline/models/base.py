"""The model interface and registry: the implementations by name, each a subclass of its
declaration (:mod:`recs_pipeline.models.declarations`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

from recs_pipeline.models import declarations
from recs_pipeline.models.declarations import (
    TrainedDeclaration,
    TrainingFreeDeclaration,
    model_names,
)

MODELS: dict[str, type[Recommender]] = {}
TRAINING_FREE: dict[str, type[TrainingFree]] = {}


def register(name: str) -> Callable[[type[Recommender]], type[Recommender]]:
    """Class decorator: make a model selectable by ``name`` in configs."""

    def decorate(cls: type[Recommender]) -> type[Recommender]:
        if name in MODELS:
            raise ValueError(f"model name {name!r} registered twice")
        check_declared_as(name, cls, declarations.MODELS)
        check_hyperparameters(name, cls)
        MODELS[name] = cls
        cls.name = name
        return cls

    return decorate


def register_training_free(name: str) -> Callable[[type[TrainingFree]], type[TrainingFree]]:
    """Class decorator: make a training-free model selectable by ``name`` in configs."""

    def decorate(cls: type[TrainingFree]) -> type[TrainingFree]:
        if name in MODELS or name in TRAINING_FREE:
            raise ValueError(f"model name {name!r} registered twice")
        check_declared_as(name, cls, declarations.TRAINING_FREE)
        TRAINING_FREE[name] = cls
        cls.name = name
        return cls

    return decorate


def check_declared_as(name: str, cls: type, declared: dict[str, type]) -> None:
    """``cls`` subclasses the declaration of ``name``: what configs are checked against (where
    torch is not loaded) is what the model is."""
    if name not in declared or not issubclass(cls, declared[name]):
        raise ValueError(
            f"model {name!r} ({cls.__name__}) must subclass its declaration in"
            " recs_pipeline/models/declarations.py (MODELS or TRAINING_FREE there)"
        )


def check_hyperparameters(name: str, cls: type[Recommender]) -> None:
    """A trained model's declared ``hyperparameters`` (and ``takes_item_features``) are
    parameters of its constructor: the declaration is what a training config passes it."""
    accepted = inspect.signature(cls).parameters
    declared = [*cls.hyperparameters, *(["item_features"] if cls.takes_item_features else [])]
    missing = [p for p in declared if p not in accepted]
    if missing:
        raise ValueError(f"model {name!r} declares {missing} but its constructor takes none")


def build_model(name: str, n_users: int, n_items: int, **params) -> Recommender:
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {model_names()}") from None
    return cls(n_users=n_users, n_items=n_items, **params)


class Recommender(TrainedDeclaration, nn.Module):
    """Embeddings for users and items; score(u, i) = ⟨z_u, z_i⟩. What a model declares
    (``search_space``, ``hyperparameters``, ``takes_item_features``) is its declaration's."""

    name: str = "base"
    #: state_dict keys of per-node tables and whose rows they hold: "user", "item" or "joint"
    #: (users 0..n_users-1, then items). Warm starts map these rows across days by external id.
    node_tables: dict[str, str] = {}

    def __init__(self, n_users: int, n_items: int) -> None:
        super().__init__()
        self.n_users = n_users
        self.n_items = n_items

    def attach_graph(self, users: torch.Tensor, items: torch.Tensor) -> None:
        """Hook for models whose structure is built from the edges themselves (PinSAGE's
        random-walk neighbourhoods): (re)build it from the edges (users, items) that
        :meth:`embed` should see. ``train_model`` calls it with the fit edges and
        :func:`recs_pipeline.evaluation.scoring.score_function` with the full train edges; call it again
        before embedding over another graph. Such state is never part of the checkpoint.
        Default: nothing (models that propagate over the ``adjacency`` given to :meth:`embed`)."""

    def embed(self, adjacency: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (user, item) embeddings, propagating over ``adjacency`` where the model does."""
        raise NotImplementedError

    def layer0(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The free parameters behind a batch (for L2 regularisation on the batch only)."""
        raise NotImplementedError

    def init_params(self) -> dict:
        """Constructor arguments beyond the sizes, stored with checkpoints."""
        return {}

    def spectral_gain(self, sigma: torch.Tensor) -> torch.Tensor:
        """How propagation scales a layer-0 eigenvector [u; v] of the normalised adjacency
        with eigenvalue σ (1 for models without propagation)."""
        return torch.ones_like(sigma)

    def set_layer0(self, user_weights: torch.Tensor, item_weights: torch.Tensor) -> None:
        """Overwrite the layer-0 embeddings (for initialisation)."""
        raise NotImplementedError


class JointEmbeddingRecommender(Recommender):
    """A graph model whose only free node parameters are one layer-0 table over the joint
    node space (users 0..n_users-1, then items), initialised N(0, init_std²)."""

    node_tables = {"embedding.weight": "joint"}

    def __init__(self, n_users: int, n_items: int, dim: int, init_std: float) -> None:
        super().__init__(n_users, n_items)
        self.embedding = nn.Embedding(n_users + n_items, dim)
        nn.init.normal_(self.embedding.weight, std=init_std)

    def set_layer0(self, user_weights: torch.Tensor, item_weights: torch.Tensor) -> None:
        with torch.no_grad():
            self.embedding.weight.copy_(torch.cat([user_weights, item_weights]))

    def layer0(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.embedding(users), self.embedding(items + self.n_users)


class TrainingFree(TrainingFreeDeclaration):
    """A model with nothing to train: :meth:`fit` computes it from the train edges.

    Its constructor, :meth:`params` and ``search_space`` are its declaration's. Its checkpoint
    holds the constructor arguments and the expensive part of the fit (:meth:`state`);
    :meth:`restore` rebuilds the model from the same edges and that state.
    """

    name: str = "training_free"

    def fit(
        self, users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int
    ) -> TrainingFree:
        raise NotImplementedError

    def state(self) -> dict:
        return {}

    def restore(
        self, users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int, state: dict
    ) -> TrainingFree:
        return self.fit(users, items, n_users, n_items)

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        """Dense (len(users), n_items) scores."""
        raise NotImplementedError


def fit_training_free(
    name: str, users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int, **params
) -> TrainingFree:
    try:
        cls = TRAINING_FREE[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {model_names()}") from None
    return cls(**params).fit(users, items, n_users, n_items)


def checkpoint(model: Recommender | TrainingFree) -> dict:
    """Everything needed to rebuild ``model``: its registry name, sizes, constructor
    arguments and weights (training-free: its parameters and the costly part of its fit)."""
    if isinstance(model, TrainingFree):
        return {"model": model.name, "params": model.params(), "state": model.state()}
    return {
        "model": model.name,
        "n_users": model.n_users,
        "n_items": model.n_items,
        "init_params": model.init_params(),
        "state_dict": model.state_dict(),
    }


def restore(state: dict) -> Recommender:
    """Inverse of :func:`checkpoint`; the model comes back in eval mode."""
    model = build_model(state["model"], state["n_users"], state["n_items"], **state["init_params"])
    model.load_state_dict(state["state_dict"])
    return model.eval()
