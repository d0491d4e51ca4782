"""The model interface and registry."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

MODELS: dict[str, type[Recommender]] = {}


def register(name: str) -> Callable[[type[Recommender]], type[Recommender]]:
    """Class decorator: make a model selectable by ``name`` in configs."""

    def decorate(cls: type[Recommender]) -> type[Recommender]:
        if name in MODELS:
            raise ValueError(f"model name {name!r} registered twice")
        MODELS[name] = cls
        cls.name = name
        return cls

    return decorate


def build_model(name: str, n_users: int, n_items: int, **params) -> Recommender:
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
    return cls(n_users=n_users, n_items=n_items, **params)


class Recommender(nn.Module):
    """Embeddings for users and items; score(u, i) = ⟨z_u, z_i⟩."""

    name: str = "base"

    def __init__(self, n_users: int, n_items: int) -> None:
        super().__init__()
        self.n_users = n_users
        self.n_items = n_items

    def embed(self, adjacency: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (user, item) embeddings, propagating over ``adjacency`` where the model does."""
        raise NotImplementedError

    def layer0(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The free parameters behind a batch (for L2 regularisation on the batch only)."""
        raise NotImplementedError

    def init_params(self) -> dict:
        """Constructor arguments beyond the sizes, stored with checkpoints."""
        return {}


def checkpoint(model: Recommender) -> dict:
    """Everything needed to rebuild ``model``: its registry name, sizes, constructor
    arguments and weights."""
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
