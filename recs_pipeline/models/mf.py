"""Matrix factorisation: a shallow encoder, score(u, i) = z_uᵀ z_i (no propagation)."""

from __future__ import annotations

import torch
from torch import nn

from recs_pipeline.models.base import Recommender, register
from recs_pipeline.models.declarations import MFDeclaration


@register("mf")
class MatrixFactorization(MFDeclaration, Recommender):
    node_tables = {"user.weight": "user", "item.weight": "item"}

    def __init__(self, n_users: int, n_items: int, dim: int = 64, init_std: float = 0.1) -> None:
        super().__init__(n_users, n_items)
        self.dim = dim
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user.weight, std=init_std)
        nn.init.normal_(self.item.weight, std=init_std)

    def init_params(self) -> dict:
        return {"dim": self.dim}

    def embed(self, adjacency: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user.weight, self.item.weight

    def set_layer0(self, user_weights: torch.Tensor, item_weights: torch.Tensor) -> None:
        with torch.no_grad():
            self.user.weight.copy_(user_weights)
            self.item.weight.copy_(item_weights)

    def layer0(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.user(users), self.item(items)
