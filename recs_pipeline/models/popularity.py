"""Popularity: every user gets the items with the most train interactions (the baseline)."""

from __future__ import annotations

import torch

from recs_pipeline.models.base import TrainingFree, register_training_free
from recs_pipeline.models.declarations import PopularityDeclaration


@register_training_free("popularity")
class Popularity(PopularityDeclaration, TrainingFree):
    def fit(self, users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int):
        key = torch.unique(users.long() * n_items + items.long())
        self.degree = torch.bincount(key % n_items, minlength=n_items).float()
        return self

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        return self.degree.expand(users.numel(), -1).clone()
