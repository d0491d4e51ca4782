"""LightGCN (He et al., SIGIR 2020).

Only the layer-0 embeddings E⁽⁰⁾ are parameters. Propagation has no weights and no
nonlinearity: E⁽ᵏ⁺¹⁾ = Â E⁽ᵏ⁾ with the symmetric normalised adjacency Â, and the final
embedding is the multi-scale combination Σₖ αₖ E⁽ᵏ⁾ = (Σₖ αₖ Âᵏ) E⁽⁰⁾, αₖ = 1/(K+1) by default.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from recs_pipeline.graph.bipartite import propagate
from recs_pipeline.models.base import JointEmbeddingRecommender, register
from recs_pipeline.models.declarations import LightGCNDeclaration


@register("lightgcn")
class LightGCN(LightGCNDeclaration, JointEmbeddingRecommender):
    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int = 64,
        layers: int = 3,
        alphas: Sequence[float] | None = None,
        init_std: float = 0.1,
    ) -> None:
        super().__init__(n_users, n_items, dim, init_std)
        if alphas is None:
            alphas = [1.0 / (layers + 1)] * (layers + 1)
        if len(alphas) != layers + 1:
            raise ValueError(f"need layers + 1 = {layers + 1} alphas, got {len(alphas)}")
        self.dim, self.layers, self.alphas = dim, layers, [float(a) for a in alphas]

    def init_params(self) -> dict:
        return {"dim": self.dim, "layers": self.layers, "alphas": self.alphas}

    def embed(self, adjacency: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if adjacency is None:
            raise ValueError("LightGCN needs the normalised adjacency to propagate over")
        x = self.embedding.weight
        out = self.alphas[0] * x
        for alpha in self.alphas[1:]:
            x = propagate(adjacency, x)
            out = out + alpha * x
        return out[: self.n_users], out[self.n_users :]

    def spectral_gain(self, sigma: torch.Tensor) -> torch.Tensor:
        # [u; v] with R̃v = σu, R̃ᵀu = σv is an eigenvector of Â: Âᵏ scales it by σᵏ.
        return sum(alpha * sigma**k for k, alpha in enumerate(self.alphas))
