"""NGCF: Neural Graph Collaborative Filtering (Wang et al., SIGIR 2019).

Layer k → k+1, with the symmetric normalised adjacency Â (entries 1/√(|N_u||N_i|)):

    E⁽ᵏ⁺¹⁾ = LeakyReLU( (Â + I) E⁽ᵏ⁾ W₁ + ((Â E⁽ᵏ⁾) ⊙ E⁽ᵏ⁾) W₂ + b )

that is, user u receives W₁eᵢ + W₂(eᵢ ⊙ eᵤ) from each neighbour i, normalised, plus the
self-connection W₁eᵤ. Message dropout drops entries of the aggregated messages during training.
As in the authors' implementation, each layer's output is L2-normalised before the layer
outputs are concatenated: the final embedding is [E⁽⁰⁾ ‖ E⁽¹⁾ ‖ … ‖ E⁽ᴷ⁾] and the score is the
inner product.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recs_pipeline.graph.bipartite import propagate
from recs_pipeline.models.base import JointEmbeddingRecommender, register
from recs_pipeline.models.declarations import NGCFDeclaration


@register("ngcf")
class NGCF(NGCFDeclaration, JointEmbeddingRecommender):
    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int = 64,
        layers: int = 3,
        message_dropout: float = 0.1,
        negative_slope: float = 0.2,
        init_std: float = 0.1,
    ) -> None:
        super().__init__(n_users, n_items, dim, init_std)
        self.dim, self.layers = dim, layers
        self.message_dropout, self.negative_slope = message_dropout, negative_slope
        self.w1 = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.w2 = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(layers))
        for linear in [*self.w1, *self.w2]:
            nn.init.xavier_uniform_(linear.weight)
        for linear in self.w1:
            nn.init.zeros_(linear.bias)

    def init_params(self) -> dict:
        return {
            "dim": self.dim,
            "layers": self.layers,
            "message_dropout": self.message_dropout,
            "negative_slope": self.negative_slope,
        }

    def layer(self, k: int, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One propagation layer (before normalisation): the formula of the module docstring."""
        neighbours = propagate(adjacency, x)
        # (Â + I) E W₁ + b  and  ((Â E) ⊙ E) W₂
        out = self.w1[k](neighbours + x) + self.w2[k](neighbours * x)
        out = F.leaky_relu(out, self.negative_slope)
        return F.dropout(out, self.message_dropout, self.training)

    def embed(self, adjacency: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if adjacency is None:
            raise ValueError("NGCF needs the normalised adjacency to propagate over")
        x = self.embedding.weight
        outputs = [x]
        for k in range(self.layers):
            x = self.layer(k, adjacency, x)
            outputs.append(F.normalize(x, p=2, dim=1))
        out = torch.cat(outputs, dim=1)
        return out[: self.n_users], out[self.n_users :]
