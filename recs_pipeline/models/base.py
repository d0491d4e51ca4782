"""The model interface and registry."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

import torch
from pydantic import TypeAdapter, ValidationError
from torch import nn

from recs_pipeline.infra.project_config import describe_type
from recs_pipeline.models.space import Float, Range, check_space

MODELS: dict[str, type[Recommender]] = {}
TRAINING_FREE: dict[str, type[TrainingFree]] = {}


def register(name: str) -> Callable[[type[Recommender]], type[Recommender]]:
    """Class decorator: make a model selectable by ``name`` in configs."""

    def decorate(cls: type[Recommender]) -> type[Recommender]:
        if name in MODELS:
            raise ValueError(f"model name {name!r} registered twice")
        check_space(name, cls.search_space)
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
        check_space(name, cls.search_space)
        TRAINING_FREE[name] = cls
        cls.name = name
        return cls

    return decorate


def check_hyperparameters(name: str, cls: type[Recommender]) -> None:
    """A trained model's declared ``hyperparameters`` (and ``takes_item_features``) are
    parameters of its constructor: the declaration is what a training config passes it."""
    accepted = inspect.signature(cls).parameters
    declared = [*cls.hyperparameters, *(["item_features"] if cls.takes_item_features else [])]
    missing = [p for p in declared if p not in accepted]
    if missing:
        raise ValueError(f"model {name!r} declares {missing} but its constructor takes none")


def model_names() -> list[str]:
    """Every selectable model: trained ones and training-free ones."""
    return sorted(MODELS) + sorted(TRAINING_FREE)


def build_model(name: str, n_users: int, n_items: int, **params) -> Recommender:
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {model_names()}") from None
    return cls(n_users=n_users, n_items=n_items, **params)


class Recommender(nn.Module):
    """Embeddings for users and items; score(u, i) = ⟨z_u, z_i⟩."""

    name: str = "base"
    #: What model selection tunes: TrainConfig fields (the training's, which the model owns
    #: here) by range. Learning rate and L2 matter for every trained model, over decades.
    search_space: dict[str, Range] = {
        "lr": Float(1e-3, 5e-2, log=True),
        "l2": Float(1e-6, 1e-3, log=True),
    }
    #: The TrainConfig fields that shape the network, passed to the constructor by name
    #: (:meth:`recs_pipeline.training.config.TrainConfig.network_params`); the training's own
    #: fields (lr, l2, loss, ...) apply to every trained model.
    hyperparameters: tuple[str, ...] = ("dim",)
    #: Whether the constructor takes (n_items, f) item features (``item_features``).
    takes_item_features: bool = False
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


class TrainingFree:
    """A model with nothing to train: :meth:`fit` computes it from the train edges.

    Its checkpoint holds the constructor arguments and the expensive part of the fit
    (:meth:`state`); :meth:`restore` rebuilds the model from the same edges and that state.
    """

    name: str = "training_free"
    #: What model selection tunes: constructor parameters by range (none: nothing to tune).
    search_space: dict[str, Range] = {}

    def params(self) -> dict:
        raise NotImplementedError

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


def declared_params(name: str) -> dict[str, Any]:
    """The training-free model ``name``'s own settings: its constructor's parameters, each with
    the type it declares (with its range where declared, ``Annotated``), in signature order."""
    cls = TRAINING_FREE[name]
    hints = typing.get_type_hints(cls.__init__, include_extras=True)
    return {p: hints.get(p, Any) for p in inspect.signature(cls).parameters}


def check_params(name: str, params: dict) -> dict:
    """``params`` as the training-free model ``name`` takes them, sorted by name: each one of
    its constructor's parameters, of the type and range that parameter declares (an integer
    given for a number becomes that number). ValueError naming the model and its parameters, or
    the parameter and what it allows."""
    declared = declared_params(name)
    unknown = sorted(set(params) - set(declared))
    if unknown:
        has = f"its parameters: {', '.join(declared)}" if declared else "it takes none"
        raise ValueError(f"{name} has no parameter {unknown[0]!r}; {has}")
    checked = {}
    for key in sorted(params):
        hint = declared[key]
        try:
            checked[key] = TypeAdapter(hint).validate_python(params[key], strict=True)
        except ValidationError:
            if typing.get_origin(hint) is typing.Annotated:
                allowed = describe_type(*typing.get_args(hint)[:1], typing.get_args(hint)[1:])
            else:
                allowed = describe_type(hint)
            raise ValueError(f"{name}'s {key} must be {allowed}, not {params[key]!r}") from None
    return checked


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
