"""The training loop: BPR/binary loss with uniform and curriculum hard negatives, L2 on the
batch's layer-0 embeddings, early stopping on a validation slice carved from train.

Validation slice: for up to ``val_users`` users with at least two train edges, the user's most
recent train edge (by last event time) is held out of the fit graph. Validation Recall@K ranks
all items except the fit edges. The test fold is never seen here.

The loop reads top down in :func:`train_model`: :func:`set_up`, :func:`resume`, then per
epoch :func:`train_epoch` (:func:`sample_batch` and :func:`train_step` per mini-batch),
:func:`validate`, :func:`keep_best` and :func:`save_progress`. Data-parallel training
(:mod:`recs_pipeline.data_parallel`) runs this same loop on every rank through
:class:`Replicas`.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import hashlib
import inspect
import math
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

import torch

from recs_pipeline.config import SettingError, check_declared, setting
from recs_pipeline.graph import (
    interaction_csr,
    normalized_adjacency,
    normalized_interactions,
    truncated_svd,
)
from recs_pipeline.losses import LOSSES, l2_penalty
from recs_pipeline.metrics import ranking_metrics, topk_excluding, topk_scored
from recs_pipeline.models import (
    MODELS,
    TRAINING_FREE,
    Recommender,
    build_model,
    check_params,
    fit_training_free,
    model_names,
)
from recs_pipeline.sampling import curriculum_hard_count, edge_keys, uniform_negatives
from recs_pipeline.warmstart import WarmStart, apply_warm_start, incompatibility

# The --filter-* flags of earlier versions, kept as hidden aliases: dnfilter's parameters (k is
# GF-CF's too), by flag.
FILTER_FLAGS = {
    "--filter-user-exponent": ("user_exponent", float),
    "--filter-beta": ("beta", float),
    "--filter-gamma": ("gamma", float),
    "--filter-ideal-weight": ("weight", float),
    "--filter-ideal-k": ("k", int),
    "--filter-sharpen": ("sharpen", float),
}


def own_settings() -> str:
    """What each training-free model lets selection tune, by its parameter names, for help
    texts: "dnfilter: user_exponent, beta, ...; gfcf: alpha, k" (each takes every parameter of
    its constructor)."""
    return "; ".join(
        f"{name}: {', '.join(cls.search_space)}"
        for name, cls in sorted(TRAINING_FREE.items())
        if cls.search_space
    )


def parse_param(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` of a ``--param`` flag: VALUE an integer, else a number, else the text
    (TrainConfig checks it against the type the model declares for NAME)."""
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (e.g. sharpen=0.5), not {text!r}")
    for convert in (int, float):
        try:
            return name.strip(), convert(value)
        except ValueError:
            pass
    return name.strip(), value


def add_param_flags(parser: argparse.ArgumentParser, distill: bool = True) -> None:
    """``--param NAME=VALUE`` (repeatable: the training-free model's own settings, TrainConfig's
    model_params) and, with ``distill``, ``--distill-param NAME=VALUE`` (the teacher's,
    distill_params); the ``--filter-*`` flags of earlier versions as hidden aliases
    (:func:`params_from_args`)."""
    parser.add_argument(
        "--param",
        action="append",
        type=parse_param,
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the training-free model, by its parameter name (repeatable; "
        + own_settings()
        + ")",
    )
    if distill:
        parser.add_argument(
            "--distill-param",
            action="append",
            type=parse_param,
            default=[],
            metavar="NAME=VALUE",
            help="a setting of the --distill teacher, by its parameter name (repeatable)",
        )
    for flag, (_, kind) in FILTER_FLAGS.items():
        parser.add_argument(
            flag, type=kind, default=None, action=_DeprecatedFilterFlag, help=argparse.SUPPRESS
        )


class _DeprecatedFilterFlag(argparse.Action):
    """A ``--filter-*`` flag: stores its value, and says once what replaces it."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        parameter = FILTER_FLAGS[option_string][0]
        print(
            f"warning: {option_string} is deprecated: use --param {parameter}={value} (the"
            f" model's setting) or --distill-param {parameter}={value} (the teacher's)",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, value)


def params_from_args(
    args: argparse.Namespace, model: str | None, distill: str | None
) -> dict[str, dict | None]:
    """TrainConfig's ``model_params`` and ``distill_params`` from the flags of
    :func:`add_param_flags`, for a run of ``model`` with the teacher ``distill``. A deprecated
    ``--filter-*`` flag sets the model's parameter when the model is training-free, else the
    teacher's (where the filter it named was); ``--param`` and ``--distill-param`` win over it."""
    model_params = dict(args.param)
    distill_params = dict(getattr(args, "distill_param", None) or [])
    aliases = {
        parameter: getattr(args, flag[2:].replace("-", "_"))
        for flag, (parameter, _) in FILTER_FLAGS.items()
        if getattr(args, flag[2:].replace("-", "_"), None) is not None
    }
    if model not in TRAINING_FREE and distill:
        distill_params = aliases | distill_params
    else:
        model_params = aliases | model_params
    return {"model_params": model_params or None, "distill_params": distill_params or None}


def takes(name: str, parameter: str) -> bool:
    """Whether the training-free model ``name``'s constructor has ``parameter``."""
    return parameter in inspect.signature(TRAINING_FREE[name]).parameters


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What a training run computes. Every field is declared with its description and allowed
    range (:func:`~recs_pipeline.config.setting`); the run config of ``trained_model`` is
    generated from these declarations (``assets/lib/settings.py``)."""

    model: str = setting(
        "lightgcn",
        "The model to train or fit; popularity and gfcf are training-free (fit, no epochs).",
        choices=model_names(),
    )
    model_params: dict[str, Any] | None = setting(
        None,
        "A training-free model's own settings, by its constructor's parameter names ("
        + own_settings()
        + "), each checked against the type and range the model declares; none: the model's"
        " defaults. A trained model's settings are the fields below.",
    )
    dim: int = setting(64, "Embedding dimension.", ge=1)
    layers: int = setting(3, "Propagation layers (graph models).", ge=1)
    epochs: int = setting(60, "Maximum epochs (early stopping may end sooner).", ge=1)
    batch_size: int = setting(4096, "Positive edges per mini-batch.", ge=1)
    max_steps_per_epoch: int | None = setting(
        None,
        "Cap on mini-batches per epoch (batches grow on larger graphs), so that an"
        " epoch of a graph model costs time linear in the edges.",
        ge=1,
    )
    lr: float = setting(1e-2, "Adam learning rate.", ge=0.0)
    l2: float = setting(1e-4, "L2 weight on the batch's layer-0 embeddings.", ge=0.0)
    loss: str = setting("bpr", "bpr, binary or softmax (sampled softmax).", choices=sorted(LOSSES))
    temperature: float = setting(1.0, "Softmax temperature.", gt=0.0)
    uniform_negatives: int = setting(1, "Uniform negatives per positive.", ge=0)
    shared_negatives: int = setting(
        0,
        "Negatives drawn once per mini-batch and shared by all its users"
        " (instead of uniform_negatives; set that to 0).",
        ge=0,
    )
    max_hard_negatives: int = setting(
        2,
        "Cap of the curriculum: epoch n adds min(n-1, cap) hard negatives per positive.",
        ge=0,
    )
    patience: int = setting(4, "Validation checks without gain before stopping.", ge=1)
    plateau_decay: float = setting(
        1.0,
        "A validation check without gain multiplies the learning rate by this and restarts"
        " from the best state so far (1: constant learning rate).",
        gt=0.0,
        le=1.0,
    )
    eval_every: int = setting(2, "Epochs between validation checks.", ge=1)
    val_users: int = setting(
        3000, "Users whose latest train edges are held out for validation (0: none).", ge=0
    )
    val_fraction: float = setting(
        0.0,
        "Fraction of each validation user's edges held out (0: the latest edge only).",
        ge=0.0,
        lt=1.0,
    )
    val_k: int = setting(20, "K of the validation Recall@K and NDCG@K.", ge=1)
    seed: int = setting(0, "Random seed.")
    threads: int | None = setting(None, "torch threads of the training process.", ge=1)
    time_budget_minutes: float | None = setting(
        None, "Stop training at the first epoch end past this many minutes.", gt=0.0
    )
    init: str = setting(
        "normal",
        "normal, or spectral (truncated SVD of the normalised interaction matrix).",
        choices=("normal", "spectral"),
    )
    init_std: float = setting(
        0.1, "Standard deviation of the initial (layer-0) embeddings.", gt=0.0
    )
    alphas: tuple[float, ...] | None = setting(
        None,
        "LightGCN's layer coefficients α₀..α_K (layers + 1 values); default 1/(K+1) each.",
    )
    distill: str | None = setting(
        None,
        "Training-free teacher (dnfilter, gfcf, popularity) whose top distill_k unseen items"
        " per user become extra loss positives (knowledge distillation); none by default.",
        choices=sorted(TRAINING_FREE),
    )
    distill_params: dict[str, Any] | None = setting(
        None,
        "The distill teacher's own settings, by its parameter names as for model_params;"
        " none: the teacher's defaults.",
    )
    distill_k: int = setting(20, "Teacher items per user.", ge=1)
    distill_weight: float = setting(1.0, "Loss weight of the teacher's positives.", ge=0.0)
    distill_ranked: bool = setting(
        False,
        "Scale the teacher's r-th item (r = 0, 1, ...) by the DCG discount"
        " 1/log2(r + 2), so the model learns the teacher's order, not only its set.",
    )
    distill_listwise: bool = setting(
        False,
        "Also contrast each teacher item with the teacher's lower-ranked items of its user, besides"
        " the negatives: with the softmax loss, the Plackett-Luce likelihood of the teacher's"
        " order (ranking distillation's listwise form).",
    )
    distill_own_weight: float | None = setting(
        None,
        "Loss weight of the user's own edges beside the teacher's (none: 1). 0 drops them from"
        " the loss: the teacher's items alone are the positives, and an epoch is that short.",
        ge=0.0,
    )
    weighted: bool = setting(
        False,
        "Scale each train edge's loss term by its weight (the split's summed event weights:"
        " ratings, say) over the mean weight, so the loss keeps its scale; off: every edge 1.",
    )

    def __post_init__(self) -> None:
        if self.model not in model_names():
            raise SettingError(
                "model", f"unknown model {self.model!r}; choose one of {model_names()}"
            )
        if self.loss not in LOSSES:
            raise SettingError(
                "loss", f"unknown loss {self.loss!r}; choose one of {sorted(LOSSES)}"
            )
        if self.distill is not None and self.distill not in TRAINING_FREE:
            raise SettingError(
                "distill",
                f"distill must name a training-free model ({sorted(TRAINING_FREE)}),"
                f" not {self.distill!r}",
            )
        check_declared(self)
        if self.uniform_negatives + self.shared_negatives < 1:
            raise SettingError(
                ("uniform_negatives", "shared_negatives"),
                "need uniform_negatives or shared_negatives >= 1 (hard ones start at epoch 2)",
            )
        if self.uniform_negatives and self.shared_negatives:
            raise SettingError(
                ("uniform_negatives", "shared_negatives"),
                "choose per-user uniform_negatives or shared_negatives, not both",
            )
        if self.alphas is not None:
            if len(self.alphas) != self.layers + 1:
                raise SettingError(
                    ("alphas", "layers"),
                    f"alphas needs layers + 1 = {self.layers + 1} values, not {len(self.alphas)}",
                )
            if not all(math.isfinite(a) for a in self.alphas):
                raise SettingError("alphas", f"alphas must be finite numbers, not {self.alphas}")
            if (
                self.model in MODELS
                and "alphas" not in inspect.signature(MODELS[self.model]).parameters
            ):
                raise SettingError(
                    ("alphas", "model"),
                    f"model {self.model!r} takes no layer coefficients (alphas)",
                )
        if self.distill_listwise and (self.distill is None or self.loss != "softmax"):
            raise SettingError(
                ("distill_listwise", "distill", "loss"),
                "distill_listwise ranks a teacher's items among themselves: set distill, and"
                " loss softmax (the only loss that takes a variable number of negatives per row)",
            )
        if self.distill_own_weight is not None and self.distill is None:
            raise SettingError(
                ("distill_own_weight", "distill"),
                "distill_own_weight weighs the own edges against a teacher's: set distill too",
            )
        self._check_params("model_params", "model")
        self._check_params("distill_params", "distill")

    def _check_params(self, field: str, owner: str) -> None:
        """``model_params`` (``distill_params``): the settings of the training-free model named
        by ``model`` (``distill``), checked against its declaration; stored sorted by name, so
        that the same settings make the same config (and fingerprint), and none when empty."""
        params, name = getattr(self, field), getattr(self, owner)
        if params is None:
            return
        if not isinstance(params, dict):
            raise SettingError(
                field, f"{field} must be a table of settings by name, not {params!r}"
            )
        if params and name is None:
            raise SettingError(
                (field, owner), f"{field} are a distill teacher's own settings: set distill too"
            )
        if params and name not in TRAINING_FREE:
            raise SettingError(
                (field, owner),
                f"{field} are a training-free model's own settings; {name}'s are this config's"
                " fields (dim, layers, lr, ...)",
            )
        try:
            checked = check_params(name, params) if params else {}
        except ValueError as error:
            raise SettingError((field, owner), f"{field}: {error}") from None
        object.__setattr__(self, field, checked or None)

    def network_params(self) -> dict:
        """The subset of (dim, layers, alphas) that the selected trained model's constructor
        takes."""
        if self.model not in MODELS:
            raise ValueError(
                f"model {self.model!r} is training-free: fit it (fit_training_free), not train it"
            )
        accepted = inspect.signature(MODELS[self.model]).parameters
        params = {"dim": self.dim, "layers": self.layers}
        if self.alphas is not None:
            if "alphas" not in accepted:
                raise ValueError(f"model {self.model!r} takes no layer coefficients (alphas)")
            params["alphas"] = list(self.alphas)
        return {k: v for k, v in params.items() if k in accepted}


@dataclasses.dataclass
class TrainResult:
    model: Recommender
    best_epoch: int
    best_val_recall: float
    history: list[dict]
    seconds: float
    resumed_from_epoch: int = 0
    warm_start: dict | None = None
    setup_seconds: float = 0.0  # graph, initialisation and teacher, before the first epoch


class ProgressStore(Protocol):
    """Where a training run keeps its in-progress state (see ``train_model``)."""

    def load(self) -> dict | None: ...

    def save(self, state: dict) -> None: ...


# Config fields that may change between a killed run and its resumption without invalidating it.
_RESUMABLE_CHANGES = {"threads", "time_budget_minutes", "epochs", "patience"}


def run_fingerprint(
    config: TrainConfig,
    users: torch.Tensor,
    items: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> str:
    """Identifies what a training run computes: its config (less the fields above), edges and
    (weighted training) edge weights."""
    digest = hashlib.sha256()
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in _RESUMABLE_CHANGES}
    digest.update(repr(sorted(fields.items())).encode())
    for tensor in (users, items) if weights is None else (users, items, weights.float()):
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def validation_split(
    users: torch.Tensor,
    last_ts: torch.Tensor,
    n_users: int,
    max_users: int,
    generator: torch.Generator,
    fraction: float = 0.0,
) -> torch.Tensor:
    """Boolean mask over edges: for up to ``max_users`` random users with at least two edges,
    their latest edges (ties in time broken by the larger edge index): one edge when
    ``fraction`` is 0, else ``fraction`` of the user's edges (at least one, never all)."""
    degree = torch.bincount(users, minlength=n_users)
    eligible = torch.nonzero(degree >= 2).squeeze(1)
    chosen = eligible[torch.randperm(eligible.numel(), generator=generator)[:max_users]]
    held_out = torch.zeros(n_users, dtype=torch.long)
    per_user = torch.ones_like(degree) if fraction <= 0 else (fraction * degree).long().clamp(min=1)
    held_out[chosen] = torch.minimum(per_user[chosen], degree[chosen] - 1)
    # Order edges by (user, ts); an edge's position from its user's end says how recent it is.
    order = torch.argsort(last_ts, stable=True)
    order = order[torch.argsort(users[order], stable=True)]
    sorted_users = users[order]
    end_of_user = torch.cumsum(degree, 0)[sorted_users]
    from_end = end_of_user - torch.arange(users.numel())  # 1 for the latest edge
    mask = torch.zeros(users.numel(), dtype=torch.bool)
    mask[order] = from_end <= held_out[sorted_users]
    return mask


class Replicas:
    """The copies of one training run that compute together: one per worker process in
    data-parallel training (:mod:`recs_pipeline.data_parallel`). This default is the single
    copy of a plain run, for which every collective is the identity."""

    rank: int = 0
    world: int = 1

    @property
    def leader(self) -> bool:
        """Rank 0: the copy that validates, logs and saves progress."""
        return self.rank == 0

    def wrap(self, objective: torch.nn.Module) -> torch.nn.Module:
        """``objective`` such that its backward pass leaves the replicas' mean gradient."""
        return objective

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every replica."""
        return obj

    def sum(self, value: float) -> float:
        """``value`` summed over the replicas."""
        return value


# The teacher settings that met the Gowalla trained target (docs/benchmarks/gowalla.md, "The
# targets and where they stand"): rank-weighted, list-wise, the teacher's items at weight 4.
# Needs the softmax loss.
LISTWISE_DISTILL = {"distill_ranked": True, "distill_listwise": True, "distill_weight": 4.0}


@dataclasses.dataclass
class Batch:
    """One mini-batch of loss terms: positives (users, items, loss weights or None) with each
    row's own negatives (uniform and hard, (rows, n) or None) and the negatives shared by every
    row ((S,) or None). ``total``: rows of the whole batch this one is a part of."""

    users: torch.Tensor
    items: torch.Tensor
    weights: torch.Tensor | None
    negatives: torch.Tensor | None
    shared: torch.Tensor | None
    total: int
    # Whether this part carries the shared negatives' L2 term (one part of a split batch).
    shared_l2: bool = True
    # distill_listwise: each row's further negatives among the teacher's items, (rows, k) with
    # a mask of the real ones (only a teacher row has any: its user's lower-ranked items).
    below: torch.Tensor | None = None
    below_mask: torch.Tensor | None = None

    def part(self, rank: int, world: int) -> Batch:
        """The rank's contiguous slice of the rows (the first ranks take one more when the rows
        do not divide evenly). Every part scores the shared negatives; rank 0's counts their L2
        term, which the whole batch counts once."""
        size, extra = divmod(self.users.numel(), world)
        start = rank * size + min(rank, extra)
        rows = slice(start, start + size + (rank < extra))

        def cut(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[rows]

        return Batch(
            self.users[rows],
            self.items[rows],
            cut(self.weights),
            cut(self.negatives),
            self.shared,
            self.total,
            shared_l2=rank == 0,
            below=cut(self.below),
            below_mask=cut(self.below_mask),
        )


class BatchObjective(torch.nn.Module):
    """A training step's objective as a module: propagate, score the batch's positives and
    negatives, loss plus L2 on the batch's layer-0 embeddings. A part of a batch split over
    ``world`` replicas returns its share of the whole batch's loss times ``world``, so that the
    replicas' mean gradient (what DistributedDataParallel all-reduces) is the whole batch's.

    Graph models propagate over the whole graph in every step, on every replica: each replica
    holds the full graph and all embedding tables; data parallelism splits only the batch."""

    def __init__(
        self,
        model: Recommender,
        adjacency: torch.Tensor,
        loss_fn: Callable,
        l2: float,
        world: int = 1,
    ) -> None:
        super().__init__()
        self.model = model
        self.adjacency = adjacency  # not a buffer: nothing for DDP to synchronise
        self.loss_fn, self.l2, self.world = loss_fn, l2, world

    def forward(self, batch: Batch) -> torch.Tensor:
        user_emb, item_emb = self.model.embed(self.adjacency)
        rows = batch.users.numel()
        if rows == 0:
            # A final batch smaller than the world leaves some replica no rows: it still joins
            # the gradient all-reduce, with zeros.
            return 0.0 * (user_emb.sum() + item_emb.sum())
        zu = user_emb[batch.users]
        pos = (zu * item_emb[batch.items]).sum(-1)
        negatives, neg_scores = [], []
        if batch.shared is not None:
            if batch.shared_l2:
                negatives.append(batch.shared)
            neg_scores.append(zu @ item_emb[batch.shared].T)
        if batch.negatives is not None:
            negatives.append(batch.negatives.reshape(-1))
            neg_scores.append(torch.einsum("bd,bnd->bn", zu, item_emb[batch.negatives]))
        if batch.below is not None:
            # Scored only on the rows that have any (own edges and a list's last item have
            # none); -inf drops a slot from the softmax's sum. No L2 term: they are positives.
            has = batch.below_mask.any(1).nonzero().squeeze(1)
            scored = torch.einsum("bd,bkd->bk", zu[has], item_emb[batch.below[has]])
            below = zu.new_full(batch.below.shape, -math.inf)
            below = below.index_put((has,), scored.masked_fill(~batch.below_mask[has], -math.inf))
            neg_scores.append(below)
        neg = torch.cat(neg_scores, dim=1)
        zu0, zp0 = self.model.layer0(batch.users, batch.items)
        _, zn0 = self.model.layer0(batch.users[:0], torch.cat(negatives or [batch.items[:0]]))
        loss = self.loss_fn(pos, neg, batch.weights)
        loss = loss + self.l2 * l2_penalty(zu0, zp0, zn0)
        share = self.world * rows / batch.total
        return loss if share == 1 else loss * share


@dataclasses.dataclass
class Run:
    """The state of one training run: what the set-up computes once and what the loop changes."""

    config: TrainConfig
    model: Recommender
    objective: torch.nn.Module
    optimiser: torch.optim.Optimizer
    generator: torch.Generator
    adjacency: torch.Tensor
    fit_csr: torch.Tensor
    positives: torch.Tensor  # edge keys of every train edge: never negatives
    hard_pools: torch.Tensor | None
    pos_u: torch.Tensor  # loss positives (fit edges, plus a teacher's with distill)
    pos_i: torch.Tensor
    pos_w: torch.Tensor | None
    # distill_listwise: each positive's teacher rank (-1: an own edge) and each user's teacher
    # items by rank (n_users, distill_k; -1 where the teacher had fewer).
    pos_rank: torch.Tensor | None
    teacher_lists: torch.Tensor | None
    val_users: torch.Tensor
    val_u: torch.Tensor
    val_i: torch.Tensor
    batch_size: int
    started: float
    best: tuple[float, int, dict]
    history: list[dict] = dataclasses.field(default_factory=list)
    stale: int = 0
    first_epoch: int = 1
    stop: bool = False
    warm_counts: dict | None = None

    @property
    def n_batches(self) -> int:
        return math.ceil(self.pos_u.numel() / self.batch_size)


def train_model(
    n_users: int,
    n_items: int,
    users: torch.Tensor,
    items: torch.Tensor,
    last_ts: torch.Tensor,
    config: TrainConfig,
    hard_pools: torch.Tensor | None = None,
    log: Callable[[str], None] = print,
    progress: ProgressStore | None = None,
    warm_start: WarmStart | None = None,
    item_features: torch.Tensor | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    weights: torch.Tensor | None = None,
    replicas: Replicas | None = None,
) -> TrainResult:
    """Train ``config.model`` on the edges (users, items) and keep the best validation state.

    Negatives per positive: ``uniform_negatives`` drawn per user, or ``shared_negatives``
    drawn once per mini-batch and scored against every user of the batch (one embedding
    lookup per negative instead of one per user and negative; a shared negative that happens to
    be some user's positive is not masked, as in in-batch softmax). ``hard_pools`` (n_users,
    pool) holds each user's hard negatives; epoch n adds ``min(n − 1, max_hard_negatives)`` of
    them per positive. A validation check without gain multiplies the learning rate by
    ``plateau_decay`` (1 = constant) and restarts from the best state so far; training stops
    after ``patience`` checks without gain, or at the first epoch end past ``time_budget_minutes``.

    With ``config.weighted``, ``weights`` (one per edge) scale each edge's loss term, divided
    by the mean weight of the fit edges (equal weights train exactly as unweighted ones).

    ``warm_start`` initialises the model from a previous day's checkpoint (see
    :mod:`recs_pipeline.warmstart`) instead of ``config.init``; an incompatible one (another
    model or size) is logged and ignored. ``progress`` makes the run resumable: after every
    validation check the whole loop state (weights, optimiser, best state, random generators,
    history) is saved there, and a later call with the same config and edges continues from
    the last check, giving the same result as an uninterrupted run. ``on_epoch`` sees each
    epoch's history record (a progress bar's hook).

    ``replicas``: this call is one of several data-parallel copies
    (:func:`recs_pipeline.data_parallel.train_data_parallel`). Every copy draws the same
    batches and negatives and trains on its slice of each; rank 0 validates and saves progress
    (pass ``progress`` to it only) and the others follow its verdicts.
    """
    if config.weighted and (weights is None or weights.numel() != users.numel()):
        raise ValueError(
            "weighted training needs one weight per train edge (weights): the graph has none;"
            " re-materialise interaction_graph"
        )
    replicas = replicas or Replicas()
    if config.threads:
        torch.set_num_threads(config.threads)
    run = set_up(
        n_users, n_items, users, items, last_ts, config, hard_pools, log, warm_start,
        item_features, weights, replicas,
    )  # fmt: skip
    fingerprint = (
        run_fingerprint(config, users, items, weights if config.weighted else None)
        if progress
        else ""
    )
    resume(run, progress, fingerprint, log, replicas)
    setup_seconds = time.perf_counter() - run.started
    for epoch in range(run.first_epoch, config.epochs + 1):
        if run.stop:
            break
        record = train_epoch(run, epoch, replicas)
        # The last epoch a time budget allows is validated too: its weights may be the best,
        # and a run stopped by its clock before a check would have no validation at all.
        due = epoch % config.eval_every == 0 or epoch == config.epochs
        due = due or (replicas.leader and out_of_time(run))
        checked = validate(run) if due and replicas.leader else {}
        # One message per epoch from rank 0: its validation and its clock decide for everyone.
        checked, time_up = replicas.broadcast((checked, replicas.leader and out_of_time(run)))
        record.update(checked)
        if checked:
            keep_best(run, record, epoch)
        run.history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        log(
            f"epoch {epoch}: loss {record['loss']:.4f}, hard negatives {record['hard_negatives']}"
            + (
                f", val recall@{config.val_k} {record['val_recall']:.4f}"
                f" ndcg@{config.val_k} {record['val_ndcg']:.4f}"
                if checked
                else ""
            )
        )
        if run.stale >= config.patience:
            log(f"early stop after epoch {epoch}: no gain in {config.patience} evaluations")
            run.stop = True
        elif time_up:
            log(f"time budget of {config.time_budget_minutes:g} min spent after epoch {epoch}")
            run.stop = True
        if progress and checked:
            save_progress(run, progress, fingerprint, epoch)
    run.model.load_state_dict(run.best[2])
    run.model.eval()
    return TrainResult(
        run.model,
        run.best[1],
        run.best[0],
        run.history,
        time.perf_counter() - run.started,
        resumed_from_epoch=run.first_epoch - 1,
        warm_start=run.warm_counts,
        setup_seconds=setup_seconds,
    )


def set_up(
    n_users: int,
    n_items: int,
    users: torch.Tensor,
    items: torch.Tensor,
    last_ts: torch.Tensor,
    config: TrainConfig,
    hard_pools: torch.Tensor | None,
    log: Callable[[str], None],
    warm_start: WarmStart | None,
    item_features: torch.Tensor | None,
    weights: torch.Tensor | None,
    replicas: Replicas,
) -> Run:
    """Validation slice, graph, model (warm start or initialisation), optimiser, objective and
    the loss positives: everything before the first epoch."""
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    val_mask = validation_split(
        users, last_ts, n_users, config.val_users, generator, config.val_fraction
    )
    fit_u, fit_i = users[~val_mask], items[~val_mask]
    val_u, val_i = users[val_mask], items[val_mask]
    adjacency = normalized_adjacency(fit_u, fit_i, n_users, n_items)

    params = config.network_params()
    if item_features is not None:  # (n_items, f) node features, for models that take them
        if "item_features" not in inspect.signature(MODELS[config.model]).parameters:
            raise ValueError(f"model {config.model!r} takes no item features")
        params["item_features"] = item_features
    model = build_model(config.model, n_users, n_items, **params)
    model.attach_graph(fit_u, fit_i)  # structure-building models (PinSAGE) only
    warm_counts = None
    reason = incompatibility(model, warm_start.state) if warm_start else "none given"
    if warm_start and reason:
        log(f"warm start from {warm_start.source or 'the previous model'} ignored: {reason}")
    if not reason:
        warm_counts = apply_warm_start(model, warm_start)
        log(f"warm start from {warm_start.source or 'the previous model'}: {warm_counts}")
    elif config.init == "spectral":
        spectral_init(model, fit_u, fit_i, config.init_std, config.seed)
    loss_fn = LOSSES[config.loss]
    if config.loss == "softmax":
        loss_fn = functools.partial(loss_fn, temperature=config.temperature)
    # DDP makes rank 0's initial weights everyone's (a spectral start may differ in the last bits).
    objective = replicas.wrap(
        BatchObjective(model, adjacency, loss_fn, config.l2, world=replicas.world)
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    # Every step of a graph model propagates over the whole graph, so an epoch costs
    # steps × edges: capping the steps (larger batches on larger graphs) keeps it linear.
    batch_size = config.batch_size
    if config.max_steps_per_epoch:
        batch_size = max(batch_size, math.ceil(fit_u.numel() / config.max_steps_per_epoch))
    # Loss positives: the fit edges, plus with ``distill`` the teacher's top items per user.
    # Each positive's loss weight: 1 for the user's own edges (times distill_own_weight when
    # set; 0 drops them); for a teacher item distill_weight, times the DCG discount
    # 1/log2(r + 2) of its teacher rank r with distill_ranked (the student then learns the
    # teacher's order, not only its set). With distill_listwise a teacher row also keeps its
    # rank, so that a batch can give it its user's lower-ranked teacher items as negatives.
    pos_u, pos_i, pos_w = fit_u, fit_i, None
    pos_rank = teacher_lists = None
    if config.weighted:
        fit_w = weights[~val_mask].float()
        pos_w = fit_w / fit_w.mean().clamp(min=torch.finfo(torch.float32).tiny)
    if config.distill:
        teacher_u, teacher_i, teacher_rank = teacher_edges(
            config.distill,
            fit_u,
            fit_i,
            n_users,
            n_items,
            config.distill_k,
            config.distill_params or {},
        )
        teacher_w = torch.full((teacher_u.numel(),), float(config.distill_weight))
        if config.distill_ranked:
            teacher_w /= torch.log2(teacher_rank.float() + 2)
        own_u, own_i = fit_u, fit_i
        own_w = torch.ones(fit_u.numel()) if pos_w is None else pos_w
        if config.distill_own_weight == 0:  # weight-0 positives would only lengthen the epoch
            own_u, own_i, own_w = own_u[:0], own_i[:0], own_w[:0]
        elif config.distill_own_weight is not None:
            own_w = own_w * config.distill_own_weight
        pos_u, pos_i = torch.cat([own_u, teacher_u]), torch.cat([own_i, teacher_i])
        pos_w = torch.cat([own_w, teacher_w])
        if config.distill_listwise:
            pos_rank = torch.cat([torch.full_like(own_u, -1), teacher_rank])
            teacher_lists = torch.full((n_users, config.distill_k), -1, dtype=torch.long)
            teacher_lists[teacher_u, teacher_rank] = teacher_i
        log(
            f"distilling {config.distill}: {teacher_u.numel()} teacher edges beside"
            f" {own_u.numel()} own"
        )
    return Run(
        config=config,
        model=model,
        objective=objective,
        optimiser=optimiser,
        generator=generator,
        adjacency=adjacency,
        fit_csr=interaction_csr(fit_u, fit_i, n_users, n_items),
        positives=edge_keys(users, items, n_items),  # validation items are never negatives
        hard_pools=hard_pools,
        pos_u=pos_u,
        pos_i=pos_i,
        pos_w=pos_w,
        pos_rank=pos_rank,
        teacher_lists=teacher_lists,
        val_users=torch.unique(val_u),
        val_u=val_u,
        val_i=val_i,
        batch_size=batch_size,
        started=started,
        best=(-1.0, 0, copy.deepcopy(model.state_dict())),
        warm_counts=warm_counts,
    )


def resume(
    run: Run,
    progress: ProgressStore | None,
    fingerprint: str,
    log: Callable[[str], None],
    replicas: Replicas,
) -> None:
    """Continue from the progress rank 0 finds saved for this config and these edges, if any."""
    saved = progress.load() if progress else None
    if saved is not None and saved.get("fingerprint") != fingerprint:
        log("saved training progress belongs to another config or graph: starting over")
        saved = None
    saved = replicas.broadcast(saved)
    if saved is None:
        return
    run.model.load_state_dict(saved["model"])
    run.optimiser.load_state_dict(saved["optimiser"])
    run.best, run.stale, run.history = saved["best"], saved["stale"], saved["history"]
    run.generator.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    run.started -= saved["seconds"]
    run.first_epoch, run.stop = saved["epoch"] + 1, saved["stop"]
    run.warm_counts = saved.get("warm_start")
    log(f"resumed from epoch {saved['epoch']} (best val recall {run.best[0]:.4f})")


def train_epoch(run: Run, epoch: int, replicas: Replicas) -> dict:
    """One pass over the loss positives in shuffled mini-batches; the epoch's history record."""
    epoch_started = time.perf_counter()
    run.model.train()
    n_hard = (
        curriculum_hard_count(epoch, run.config.max_hard_negatives)
        if run.hard_pools is not None
        else 0
    )
    epoch_loss = 0.0
    order = torch.randperm(run.pos_u.numel(), generator=run.generator)
    for b in range(run.n_batches):
        batch = sample_batch(run, order[b * run.batch_size : (b + 1) * run.batch_size], n_hard)
        epoch_loss += train_step(run, batch.part(replicas.rank, replicas.world))
    return {
        "epoch": epoch,
        "loss": replicas.sum(epoch_loss) / replicas.world / run.n_batches,
        "hard_negatives": n_hard,
        "step_seconds": time.perf_counter() - epoch_started,
    }


def sample_batch(run: Run, idx: torch.Tensor, n_hard: int) -> Batch:
    """The positives ``idx`` with their negatives, drawn from the run's generator (the same
    draws on every replica: each then takes its part)."""
    config, u = run.config, run.pos_u[idx]
    shared = negatives = None
    if config.shared_negatives:
        shared = torch.randint(
            0, run.model.n_items, (config.shared_negatives,), generator=run.generator
        )
    per_user = []
    if config.uniform_negatives:
        per_user.append(
            uniform_negatives(
                u, run.model.n_items, config.uniform_negatives, run.positives, run.generator
            )
        )
    if n_hard:
        pick = torch.randint(
            0, run.hard_pools.shape[1], (u.numel(), n_hard), generator=run.generator
        )
        per_user.append(run.hard_pools[u.unsqueeze(1), pick])
    if per_user:
        negatives = torch.cat(per_user, dim=1)
    weights = None if run.pos_w is None else run.pos_w[idx]
    below = below_mask = None
    if run.teacher_lists is not None:
        # A teacher row of rank r: its user's teacher items of rank > r (Plackett-Luce's step r).
        below = run.teacher_lists[u]
        rank = run.pos_rank[idx].unsqueeze(1)  # -1 for an own edge: nothing below it
        below_mask = (torch.arange(below.shape[1]) > rank) & (rank >= 0) & (below >= 0)
        below = below.clamp(min=0)
    return Batch(
        u, run.pos_i[idx], weights, negatives, shared, total=u.numel(), below=below,
        below_mask=below_mask,
    )  # fmt: skip


def train_step(run: Run, batch: Batch) -> float:
    """One optimiser step on ``batch``; its loss (this replica's share)."""
    loss = run.objective(batch)
    run.optimiser.zero_grad(set_to_none=True)
    loss.backward()
    run.optimiser.step()
    return loss.item()


def validate(run: Run) -> dict:
    """Validation Recall and NDCG at ``val_k`` of the current weights, with their time."""
    started = time.perf_counter()
    recall, ndcg = validation_metrics(
        run.model, run.adjacency, run.fit_csr, run.val_users, run.val_u, run.val_i,
        run.config.val_k,
    )  # fmt: skip
    return {"val_recall": recall, "val_ndcg": ndcg, "val_seconds": time.perf_counter() - started}


def keep_best(run: Run, record: dict, epoch: int) -> None:
    """Keep the weights of a validation gain; after a check without gain, count it and (with
    ``plateau_decay``) go back to the best weights at a lower learning rate."""
    if record["val_recall"] > run.best[0]:
        run.best, run.stale = (
            (record["val_recall"], epoch, copy.deepcopy(run.model.state_dict())),
            0,
        )
        return
    run.stale += 1
    if run.config.plateau_decay != 1.0:
        run.model.load_state_dict(run.best[2])
        for group in run.optimiser.param_groups:
            group["lr"] *= run.config.plateau_decay
        record["lr"] = run.optimiser.param_groups[0]["lr"]


def out_of_time(run: Run) -> bool:
    budget = run.config.time_budget_minutes
    return bool(budget) and time.perf_counter() - run.started > 60 * budget


def save_progress(run: Run, progress: ProgressStore, fingerprint: str, epoch: int) -> None:
    """The whole loop state after a validation check (``train_model``'s ``progress``)."""
    progress.save(
        {
            "fingerprint": fingerprint,
            "epoch": epoch,
            "stop": run.stop,
            "model": run.model.state_dict(),
            "optimiser": run.optimiser.state_dict(),
            "best": run.best,
            "stale": run.stale,
            "history": run.history,
            "generator": run.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "seconds": time.perf_counter() - run.started,
            "warm_start": run.warm_counts,
        }
    )


def teacher_edges(
    teacher: str,
    users: torch.Tensor,
    items: torch.Tensor,
    n_users: int,
    n_items: int,
    k: int,
    params: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Knowledge distillation from a training-free model: fit ``teacher`` on the edges and
    return its top-``k`` unseen items of every user with an edge, as extra (user, item)
    positives for the loss (never for the propagation graph). The teacher sees only the fit
    edges, so it knows no validation edge either. Returns (users, items, teacher ranks 0..k−1).
    """
    model = fit_training_free(teacher, users, items, n_users, n_items, **(params or {}))
    active = torch.unique(users)
    exclude = interaction_csr(users, items, n_users, n_items)
    scores, top = topk_scored(model.scores, active, exclude, k)
    keep = torch.isfinite(scores)
    rank = torch.arange(top.shape[1]).expand_as(top)
    return active.unsqueeze(1).expand_as(top)[keep], top[keep], rank[keep]


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


def validation_metrics(
    model: Recommender,
    adjacency: torch.Tensor,
    exclude: torch.Tensor,
    users: torch.Tensor,
    val_users: torch.Tensor,
    val_items: torch.Tensor,
    k: int,
) -> tuple[float, float]:
    """(Recall@k, NDCG@k) on the validation edges, fit items excluded."""
    model.eval()
    with torch.no_grad():
        user_emb, item_emb = model.embed(adjacency)
        _, top = topk_excluding(user_emb, item_emb, users, exclude, k)
    metrics = ranking_metrics(top, users, val_users, val_items, item_emb.shape[0], (k,))
    return metrics[("recall", k)], metrics[("ndcg", k)]
