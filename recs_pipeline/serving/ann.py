"""Approximate top-K by inner product: an inverted-file (IVF) index over item embeddings.

Exact top-K lists score every user against every item, so publishing them costs
users × items; both grow with the log, and that product is what made publication grow
faster than the log in the scaling benchmark. The index clusters the items (k-means on their
embeddings, lists of about ``list_size`` items). Each user is then scored against the
centroids and against the items of its ``probes`` best lists only: ``probes × list_size``
items, however large the catalogue. The centroid scores still grow with the catalogue, but
at 1/``list_size`` of exact scoring.

What it costs is recall against the exact lists. :func:`list_overlap` measures it on a user
sample, and publication records that measurement beside every table it writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from recs_pipeline.evaluation.metrics import pad_to_k
from recs_pipeline.graph.bipartite import csr_rows


@dataclass(frozen=True)
class IVFIndex:
    centroids: torch.Tensor  # (n_lists, d)
    lists: torch.Tensor  # (n_lists, longest) item indices, −1 where a list is shorter
    list_of: torch.Tensor  # (n_items,) the list of each item
    slot_of: torch.Tensor  # (n_items,) its position in that list
    item_emb: torch.Tensor  # (n_items, d)

    @property
    def longest(self) -> int:
        return self.lists.shape[1]

    @classmethod
    def build(
        cls, item_emb: torch.Tensor, list_size: int = 256, iterations: int = 8, seed: int = 0
    ) -> IVFIndex:
        """k-means (``iterations`` Lloyd steps from random items) into ⌈n / list_size⌉ lists;
        a list longer than 2 × ``list_size`` is cut into equal pieces, each with its own mean as
        centroid, so no user's candidate block is padded to a giant popular cluster."""
        item_emb = item_emb.detach().float()
        n_items = item_emb.shape[0]
        if n_items == 0:
            raise ValueError("cannot index an empty catalogue")
        n_lists = max(1, math.ceil(n_items / list_size))
        generator = torch.Generator().manual_seed(seed)
        centroids = item_emb[torch.randperm(n_items, generator=generator)[:n_lists]].clone()
        for _ in range(iterations):
            assign = _nearest(item_emb, centroids)
            counts = torch.bincount(assign, minlength=n_lists)
            sums = torch.zeros_like(centroids).index_add_(0, assign, item_emb)
            centroids = sums / counts.clamp(min=1).unsqueeze(1).float()
            empty = torch.nonzero(counts == 0).squeeze(1)  # re-seed at distinct random items
            if empty.numel():
                reseed = torch.randperm(n_items, generator=generator)[: empty.numel()]
                centroids[empty] = item_emb[reseed]
        assign = _nearest(item_emb, centroids)
        # Order items by list; cut a list of c > 2 × list_size items into ⌈c / cap⌉ equal pieces.
        order = torch.argsort(assign, stable=True)
        sorted_lists = assign[order]
        counts = torch.bincount(sorted_lists, minlength=n_lists)
        rank_in_list = torch.arange(n_items) - (counts.cumsum(0) - counts)[sorted_lists]
        cap = 2 * list_size
        pieces_per_list = (counts + cap - 1) // cap
        piece = rank_in_list * pieces_per_list[sorted_lists] // counts[sorted_lists]
        first_piece = pieces_per_list.cumsum(0) - pieces_per_list
        piece_id = first_piece[sorted_lists] + piece  # non-decreasing along `order`
        n_pieces = int(pieces_per_list.sum())
        piece_counts = torch.bincount(piece_id, minlength=n_pieces)
        slot = torch.arange(n_items) - (piece_counts.cumsum(0) - piece_counts)[piece_id]
        lists = torch.full((n_pieces, int(piece_counts.max())), -1, dtype=torch.long)
        lists[piece_id, slot] = order
        list_of = torch.empty(n_items, dtype=torch.long)
        slot_of = torch.empty(n_items, dtype=torch.long)
        list_of[order], slot_of[order] = piece_id, slot
        piece_sums = torch.zeros(n_pieces, item_emb.shape[1]).index_add_(
            0, piece_id, item_emb[order]
        )
        piece_centroids = piece_sums / piece_counts.unsqueeze(1).float()
        return cls(piece_centroids, lists, list_of, slot_of, item_emb)

    def search(
        self,
        user_emb: torch.Tensor,
        k: int,
        probes: int,
        exclude: torch.Tensor | None = None,
        rows: torch.Tensor | None = None,
        chunk_users: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Approximate top-``k`` (scores, items) of every row of ``user_emb``, best first,
        among the items of its ``probes`` best lists. ``exclude`` (sparse CSR) rows
        ``rows[j]`` hold the items row j must not get; a row with fewer than ``k`` eligible
        candidates ends in −inf scores (the contract of ``metrics.topk_scored``)."""
        probes = min(probes, self.centroids.shape[0])
        if chunk_users is None:  # keep the (chunk, probes, longest) score block near 256 MiB
            chunk_users = max(64, (1 << 26) // max(1, probes * self.longest))
        out_scores, out_items = [], []
        with torch.no_grad():
            for start in range(0, user_emb.shape[0], chunk_users):
                emb = user_emb[start : start + chunk_users].float()
                chunk_rows = None if rows is None else rows[start : start + chunk_users]
                scores, items = self._search_chunk(emb, k, probes, exclude, chunk_rows)
                out_scores.append(scores)
                out_items.append(items)
        if not out_items:
            return torch.empty(0, k), torch.empty(0, k, dtype=torch.long)
        return torch.cat(out_scores), torch.cat(out_items)

    def _search_chunk(self, emb, k, probes, exclude, rows):
        n = emb.shape[0]
        probed = torch.topk(emb @ self.centroids.T, probes, dim=1).indices  # (n, probes)
        block = torch.full((n, probes, self.longest), -torch.inf)
        # Score each probed list against the users that probe it: one small GEMM per list.
        flat = probed.reshape(-1)
        order = torch.argsort(flat, stable=True)
        present, counts = torch.unique_consecutive(flat[order], return_counts=True)
        user_of, probe_of = order // probes, order % probes
        ends = counts.cumsum(0).tolist()
        begin = 0
        for lst, end in zip(present.tolist(), ends, strict=True):
            members = self.lists[lst]
            members = members[members >= 0]
            users, slots = user_of[begin:end], probe_of[begin:end]
            block[users, slots, : members.numel()] = emb[users] @ self.item_emb[members].T
            begin = end
        if exclude is not None and rows is not None:
            row_of, item = csr_rows(exclude, rows)
            # Which probe (if any) of its row holds each excluded item's list.
            probe_of_list = torch.full((n, self.centroids.shape[0]), -1, dtype=torch.int32)
            probe_of_list[torch.arange(n).unsqueeze(1), probed] = torch.arange(
                probes, dtype=torch.int32
            )
            probe = probe_of_list[row_of, self.list_of[item]].long()
            hit = probe >= 0
            block[row_of[hit], probe[hit], self.slot_of[item[hit]]] = -torch.inf
        scores, flat_top = torch.topk(block.reshape(n, -1), min(k, probes * self.longest), dim=1)
        probe, slot = flat_top // self.longest, flat_top % self.longest
        items = self.lists[probed.gather(1, probe), slot]
        items = torch.where(torch.isfinite(scores), items, torch.zeros_like(items))
        return pad_to_k(scores, items, k)  # fewer candidates than k


def _nearest(points: torch.Tensor, centroids: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """Index of the nearest centroid (Euclidean) of every point, by GEMM in row chunks."""
    half_norm = 0.5 * (centroids * centroids).sum(1)
    return torch.cat(
        [
            torch.argmax(points[s : s + chunk] @ centroids.T - half_norm, dim=1)
            for s in range(0, points.shape[0], chunk)
        ]
    )


def list_overlap(approx: torch.Tensor, exact: torch.Tensor, exact_scores: torch.Tensor) -> float:
    """Mean share of each exact top-K list (its finite entries) that the approximate list
    also holds: the recall of the index against exact ranking."""
    valid = torch.isfinite(exact_scores)
    found = (approx.unsqueeze(2) == exact.unsqueeze(1)).any(1) & valid
    per_row = found.sum(1).float() / valid.sum(1).clamp(min=1).float()
    return float(per_row[valid.any(1)].mean()) if valid.any() else math.nan
