"""A run's starting weights: day D-1's model (a warm start) or, without one, the spectral
initialisation (``init = "spectral"``) or the model's own random one (``"normal"``).

Warm starts: indices differ between days (each day's id map sorts that day's external ids), so
rows of the per-node tables are mapped by external id: a user or item known on both days starts
from its D-1 row, a new one keeps its fresh initialisation, and one that left the window is
dropped. Every other parameter (NGCF's weight matrices, for instance) is copied when its shape
matches; buffers are not (they hold the day's data, such as PinSAGE's item features).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch

from recs_pipeline.graph.bipartite import normalized_interactions, truncated_svd
from recs_pipeline.models import Recommender
from recs_pipeline.training.config import TrainConfig
from recs_pipeline.training.validation import FitGraph


def initialise(
    model: Recommender,
    config: TrainConfig,
    fit: FitGraph,
    warm_start: WarmStart | None,
    log: Callable[[str], None],
) -> dict | None:
    """Start ``model`` from ``warm_start`` when it fits the model (its counts of carried-over
    and new users and items), else from ``config.init`` (None); an incompatible warm start
    (another model or size) is logged and ignored."""
    reason = incompatibility(model, warm_start.state) if warm_start else "none given"
    if warm_start and reason:
        log(f"warm start from {warm_start.source or 'the previous model'} ignored: {reason}")
    if not reason:
        counts = apply_warm_start(model, warm_start)
        log(f"warm start from {warm_start.source or 'the previous model'}: {counts}")
        return counts
    if config.init == "spectral":
        spectral_init(model, fit.users, fit.items, config.init_std, config.seed)
    return None


@dataclasses.dataclass(frozen=True)
class WarmStart:
    """A previous checkpoint (:func:`recs_pipeline.models.checkpoint` form) and, per current
    user and item index, the previous index of the same external id (-1 if new)."""

    state: dict
    user_map: torch.Tensor
    item_map: torch.Tensor
    source: str = ""


def id_mapping(previous_ids: Sequence[str], current_ids: Sequence[str]) -> torch.Tensor:
    """For each current id, its index in ``previous_ids`` or -1 (vectorised, any order)."""
    previous = np.asarray(previous_ids, dtype=object).astype(str)
    current = np.asarray(current_ids, dtype=object).astype(str)
    if previous.size == 0:
        return torch.full((current.size,), -1, dtype=torch.long)
    order = np.argsort(previous, kind="stable")
    sorted_previous = previous[order]
    position = np.searchsorted(sorted_previous, current).clip(max=previous.size - 1)
    found = sorted_previous[position] == current
    return torch.from_numpy(np.where(found, order[position], -1).astype(np.int64))


def incompatibility(model: Recommender, state: dict) -> str | None:
    """Why ``state`` cannot warm-start ``model`` (None when it can)."""
    if state.get("model") != model.name:
        return f"previous model is {state.get('model')!r}, this one {model.name!r}"
    if "state_dict" not in state:
        return "previous checkpoint holds no weights"
    if state.get("init_params") != model.init_params():
        return f"previous model was built with {state.get('init_params')}, this one with {model.init_params()}"
    return None


def apply_warm_start(model: Recommender, warm: WarmStart) -> dict[str, int]:
    """Copy ``warm.state``'s weights into ``model`` as described in the module docstring.
    Returns how many users and items were carried over and how many start fresh."""
    reason = incompatibility(model, warm.state)
    if reason:
        raise ValueError(f"cannot warm-start: {reason}")
    previous = warm.state["state_dict"]
    prev_users = warm.state["n_users"]
    known_u = torch.nonzero(warm.user_map >= 0).squeeze(1)
    known_i = torch.nonzero(warm.item_map >= 0).squeeze(1)
    current = model.state_dict()
    parameters = {name for name, _ in model.named_parameters()}
    with torch.no_grad():
        for key, tensor in current.items():
            kind = model.node_tables.get(key)
            old = previous.get(key)
            if old is None or (kind is None and key not in parameters):
                continue  # buffers (e.g. today's item features) describe today's data
            if kind is None:
                if old.shape == tensor.shape:
                    tensor.copy_(old)
                continue
            if kind in ("user", "joint"):
                tensor[known_u] = old[warm.user_map[known_u]]
            if kind == "item":
                tensor[known_i] = old[warm.item_map[known_i]]
            if kind == "joint":
                tensor[model.n_users + known_i] = old[prev_users + warm.item_map[known_i]]
    model.load_state_dict(current)
    return {
        "warm_users": int(known_u.numel()),
        "new_users": model.n_users - int(known_u.numel()),
        "warm_items": int(known_i.numel()),
        "new_items": model.n_items - int(known_i.numel()),
    }


def spectral_init(
    model: Recommender, users: torch.Tensor, items: torch.Tensor, std: float, seed: int
) -> None:
    """Start from the truncated SVD of the normalised interaction matrix.

    With R̃ = D_U^{-1/2} R D_I^{-1/2} ≈ U S Vᵀ (top ``dim`` singular triplets), layer 0 is
    set to [U; V]·diag(w) with w = √σ / g(σ), where g is the model's spectral gain (LightGCN:
    Σₖ αₖ σᵏ, since [u; v] is an eigenvector of Â), so that the model's initial scores are the
    rank-``dim`` reconstruction of R̃. The weights are then scaled to standard deviation
    ``std`` (a uniform rescale changes no ranking) so that Adam's first steps refine the
    start instead of swamping it.
    """
    dim = model.init_params()["dim"]
    _, r_norm, _ = normalized_interactions(users, items, model.n_users, model.n_items)
    # At most min(shape) - 1 triplets; one (dense) for a log of one user or one item.
    u, sigma, vt = truncated_svd(r_norm, dim, seed)
    k = len(sigma)
    sigma = torch.from_numpy(sigma.copy()).float()
    weight = sigma.sqrt() / model.spectral_gain(sigma)
    user_w = torch.zeros(model.n_users, dim)
    item_w = torch.zeros(model.n_items, dim)
    user_w[:, :k] = torch.from_numpy(u.astype("float32")) * weight
    item_w[:, :k] = torch.from_numpy(vt.T.astype("float32")) * weight
    scale = std / torch.cat([user_w, item_w]).std()
    model.set_layer0(user_w * scale, item_w * scale)
