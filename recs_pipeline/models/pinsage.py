"""PinSAGE (Ying et al., KDD 2018) on the user–item graph, with optional item features.

Importance-based neighbourhoods. From every node v of the joint node space (users
0..n_users-1, then items) ``walks`` random walks with restart (probability ``restart``, each
``walk_length`` steps) run over the bipartite graph; the ``neighbours`` nodes other than v with
the most visits form N(v), and their visit counts, normalised to sum to 1 over N(v), are the
importance weights α_vu. Ties in visits are broken at random (seeded). A node without edges has
an empty neighbourhood. The walks run on CSR tensors, all seeds of a batch at once
(:func:`recs_pipeline.graph.negatives.random_walk_visits`); :meth:`PinSAGE.attach_graph` builds
them from a set of edges.

Input features. h⁽⁰⁾_v = 1[deg v > 0]·e_v + P x_v: a learnable id embedding e_v, used only
for nodes with edges in the attached graph (an edge-less node's id is never trained, so it
would only add noise), plus, for items when a feature matrix X (n_items × f) is given, a
learned projection of the item's features. An item with features and no interactions (a cold
item) therefore still gets an embedding computed from its features. X is a buffer: it travels
in the checkpoint's state_dict. Cold-start dropout (as in DropoutNet, Volkovs et al. 2017):
with features, each training forward pass treats a random ``cold_dropout`` fraction of the
items as cold (no id, nothing pooled), so that the feature projection learns to stand in for
the id; evaluation and scoring (eval mode) never drop.

Convolution k (the paper's CONVOLVE, importance pooling):

    n_v = Σ_{u ∈ N(v)} α_vu · ReLU(Q_k h_u + q_k)
    h'_v = ReLU(W_k [h_v ‖ n_v] + w_k) / ‖ReLU(W_k [h_v ‖ n_v] + w_k)‖₂

After K convolutions the final embedding is z_v = G₂ ReLU(G₁ h_v + g₁) + g₂ and
score(u, i) = ⟨z_u, z_i⟩. All nodes are convolved at every step (full batch, as LightGCN here):
the aggregation is one sparse (N × N, ``neighbours`` entries a row) product per layer.

Checkpoints hold the weights and X; the neighbourhoods and the id mask are rebuilt from edges
by :meth:`PinSAGE.attach_graph` (the :meth:`Recommender.attach_graph` hook, called by
``train_model`` with the fit edges and by ``score_function`` with the full train edges). The
walks are seeded by ``walk_seed`` (in the checkpoint), so the same edges give the same
neighbourhoods and the same scores. Defaults (top 100 of 128 walks × 8 steps, restart 0.5)
build Gowalla's 70,839 neighbourhoods in about 16 s on one thread.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from recs_pipeline.graph.bipartite import bipartite_csr
from recs_pipeline.graph.negatives import random_walk_visits
from recs_pipeline.models.base import JointEmbeddingRecommender, register
from recs_pipeline.models.declarations import PinSAGEDeclaration


@dataclasses.dataclass
class Neighbourhoods:
    """Top-T neighbourhoods: ``nodes[v]`` the neighbours of v, most visited first (−1 pads a
    neighbourhood with fewer than T visited nodes), ``weights[v]`` their visit counts
    normalised to sum to 1 over the row (0 on padding; an empty row is all 0), ``visits[v]``
    the raw counts."""

    nodes: torch.Tensor
    weights: torch.Tensor
    visits: torch.Tensor

    def aggregation_matrix(self) -> torch.Tensor:
        """The N × N sparse CSR matrix M with M[v, u] = α_vu, so that n = M · messages."""
        n = self.nodes.shape[0]
        keep = self.nodes >= 0
        rows = torch.arange(n).unsqueeze(1).expand_as(self.nodes)[keep]
        coo = torch.sparse_coo_tensor(
            torch.stack([rows, self.nodes[keep]]),
            self.weights[keep],
            (n, n),
            check_invariants=False,
        )
        return coo.coalesce().to_sparse_csr()


def top_visited(
    visits: torch.Tensor, seeds: torch.Tensor, size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """From visit counts (sparse COO, len(seeds) × N), each seed's ``size`` most visited nodes
    other than itself, ties broken at random: (nodes, counts), both (len(seeds), size),
    most visited first, padded with −1 and 0."""
    visits = visits.coalesce()
    row, node = visits.indices()
    count = visits.values()
    keep = node != seeds[row]
    row, node, count = row[keep], node[keep], count[keep]
    # One sort: by row, then most visited first, ties in random order (jitter < 1 visit).
    span = float(count.max()) + 1.0 if count.numel() else 1.0
    jitter = 0.5 * torch.rand(count.numel(), generator=generator, dtype=torch.float64)
    order = torch.argsort(row.double() * span - count.double() - jitter)
    row, node, count = row[order], node[order], count[order]
    per_row = torch.bincount(row, minlength=seeds.numel())
    rank = torch.arange(row.numel()) - (torch.cumsum(per_row, 0) - per_row)[row]
    top = rank < size
    nodes = torch.full((seeds.numel(), size), -1, dtype=torch.long)
    counts = torch.zeros(seeds.numel(), size)
    nodes[row[top], rank[top]] = node[top]
    counts[row[top], rank[top]] = count[top]
    return nodes, counts


def importance_neighbourhoods(
    users: torch.Tensor,
    items: torch.Tensor,
    n_users: int,
    n_items: int,
    size: int,
    walks: int,
    length: int,
    restart: float,
    generator: torch.Generator,
    batch_nodes: int = 4096,
) -> Neighbourhoods:
    """Top-``size`` random-walk neighbourhoods of every node of the joint node space (module
    docstring). Cost ∝ nodes × walks × length, in batches of ``batch_nodes`` seeds."""
    adjacency = bipartite_csr(users, items, n_users, n_items)
    n = n_users + n_items
    nodes = torch.empty(n, size, dtype=torch.long)
    counts = torch.empty(n, size)
    for start in range(0, n, batch_nodes):
        seeds = torch.arange(start, min(start + batch_nodes, n))
        visits = random_walk_visits(
            adjacency, seeds, walks, length, restart, generator, slice(0, n)
        )
        nodes[seeds], counts[seeds] = top_visited(visits, seeds, size, generator)
    total = counts.sum(1, keepdim=True)
    weights = torch.where(total > 0, counts / total.clamp(min=1.0), torch.zeros_like(counts))
    return Neighbourhoods(nodes, weights, counts)


class _SparseProduct(torch.autograd.Function):
    """y = M x for a fixed sparse CSR M, backward Mᵀ·∂y with a precomputed Mᵀ (torch's own
    backward would transpose M on every call)."""

    @staticmethod
    def forward(ctx, matrix: torch.Tensor, transpose: torch.Tensor, x: torch.Tensor):
        ctx.transpose = transpose
        return matrix @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, None, ctx.transpose @ grad


@register("pinsage")
class PinSAGE(PinSAGEDeclaration, JointEmbeddingRecommender):
    # Warm starts map id-embedding rows by external id; the item features are a buffer and
    # stay today's.
    node_tables = {"embedding.weight": "joint"}

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int = 64,
        layers: int = 2,
        n_features: int = 0,
        neighbours: int = 100,
        walks: int = 128,
        walk_length: int = 8,
        restart: float = 0.5,
        walk_seed: int = 0,
        cold_dropout: float = 0.3,
        init_std: float = 0.1,
        item_features: torch.Tensor | None = None,
    ) -> None:
        super().__init__(n_users, n_items, dim, init_std)
        if item_features is not None:
            if item_features.dim() != 2 or item_features.shape[0] != n_items:
                raise ValueError(
                    f"item_features must be (n_items={n_items}, f), got {tuple(item_features.shape)}"
                )
            if n_features not in (0, item_features.shape[1]):
                raise ValueError(
                    f"n_features={n_features} but item_features has {item_features.shape[1]}"
                )
            n_features = item_features.shape[1]
        self.dim, self.layers, self.n_features = dim, layers, n_features
        self.neighbours, self.walks, self.walk_length = neighbours, walks, walk_length
        self.restart, self.walk_seed, self.cold_dropout = restart, walk_seed, cold_dropout
        self.q = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.w = nn.ModuleList(nn.Linear(2 * dim, dim) for _ in range(layers))
        self.g1, self.g2 = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.feature = nn.Linear(n_features, dim) if n_features else None
        for linear in [*self.q, *self.w, self.g1, self.g2, *([self.feature] if n_features else [])]:
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)
        if n_features:
            features = torch.zeros(n_items, n_features)
            if item_features is not None:
                features.copy_(item_features)
            self.register_buffer("item_features", features)
        else:
            self.item_features = None
        # Built from edges by attach_graph, never stored: a checkpoint rebuilds them.
        self.neighbourhoods: Neighbourhoods | None = None
        self.register_buffer("has_edges", torch.zeros(n_users + n_items, 1), persistent=False)
        self._aggregate: tuple[torch.Tensor, torch.Tensor] | None = None

    def init_params(self) -> dict:
        return {
            "dim": self.dim,
            "layers": self.layers,
            "n_features": self.n_features,
            "neighbours": self.neighbours,
            "walks": self.walks,
            "walk_length": self.walk_length,
            "restart": self.restart,
            "walk_seed": self.walk_seed,
            "cold_dropout": self.cold_dropout,
        }

    def attach_graph(self, users: torch.Tensor, items: torch.Tensor) -> None:
        """(Re)build the random-walk neighbourhoods and the id mask from these edges; the walks
        are seeded by ``walk_seed``, so the same edges give the same neighbourhoods."""
        generator = torch.Generator().manual_seed(self.walk_seed)
        graph = importance_neighbourhoods(
            users,
            items,
            self.n_users,
            self.n_items,
            self.neighbours,
            self.walks,
            self.walk_length,
            self.restart,
            generator,
        )
        degree = torch.bincount(
            torch.cat([users.long(), items.long() + self.n_users]),
            minlength=self.n_users + self.n_items,
        )
        self.set_neighbourhoods(graph, degree > 0)

    def set_neighbourhoods(self, graph: Neighbourhoods, has_edges: torch.Tensor) -> None:
        """Use these neighbourhoods, and id embeddings only where ``has_edges`` (N,) is true."""
        self.neighbourhoods = graph
        matrix = graph.aggregation_matrix()
        self._aggregate = (matrix, matrix.t().to_sparse_csr())
        self.has_edges = has_edges.float().unsqueeze(1)

    def inputs(self, warm: torch.Tensor | None = None) -> torch.Tensor:
        """h⁽⁰⁾ over the joint node space: masked id embeddings plus projected item features
        (ids also masked where ``warm``, (N, 1), is 0)."""
        h = self.embedding.weight * (self.has_edges if warm is None else self.has_edges * warm)
        if self.feature is not None:
            projected = self.feature(self.item_features)
            h = h + torch.cat([projected.new_zeros(self.n_users, self.dim), projected])
        return h

    def convolve(self, k: int, h: torch.Tensor, warm: torch.Tensor | None = None) -> torch.Tensor:
        """Convolution k over the attached neighbourhoods: the formula of the module docstring
        (nodes where ``warm``, (N, 1), is 0 pool nothing, as if they had no neighbours)."""
        if self._aggregate is None:
            raise ValueError("PinSAGE needs attach_graph(users, items) before embedding")
        messages = F.relu(self.q[k](h))
        pooled = _SparseProduct.apply(*self._aggregate, messages)
        if warm is not None:
            pooled = pooled * warm
        out = F.relu(self.w[k](torch.cat([h, pooled], dim=1)))
        return F.normalize(out, p=2, dim=1)

    def embed(self, adjacency: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Final embeddings; ``adjacency`` is unused (the neighbourhoods come from
        :meth:`attach_graph`)."""
        warm = None
        if self.training and self.feature is not None and self.cold_dropout > 0:
            # Cold-start dropout: these items see only their features in this step.
            cold = torch.rand(self.n_items, 1) < self.cold_dropout
            warm = torch.cat([torch.ones(self.n_users, 1), (~cold).float()])
        h = self.inputs(warm)
        for k in range(self.layers):
            h = self.convolve(k, h, warm)
        z = self.g2(F.relu(self.g1(h)))
        return z[: self.n_users], z[self.n_users :]
