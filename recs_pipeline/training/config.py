"""What a training run computes: :class:`TrainConfig`, every field declared once with its
description and range, and the presets (tuned regimes) that set several fields together.

A trained model owns the fields that shape its network (``hyperparameters`` on its class,
:meth:`TrainConfig.network_params`) and what model selection tunes (``search_space``); a
training-free model owns its settings (``model_params``, checked against its constructor).
Those are read from the models' declarations (:mod:`recs_pipeline.models.declarations`), so
that a config is checked without torch: the code location builds one at load.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from recs_pipeline.config import SettingError, check_declared, setting
from recs_pipeline.models.declarations import MODELS, TRAINING_FREE, check_params, model_names

# The losses by name: recs_pipeline.training.losses.LOSSES holds their functions (torch) under
# these names.
LOSSES = ("binary", "bpr", "softmax")


def own_settings() -> str:
    """What each training-free model lets selection tune, by its parameter names, for help
    texts: "dnfilter: user_exponent, beta, ...; gfcf: alpha, k" (each takes every parameter of
    its constructor)."""
    return "; ".join(
        f"{name}: {', '.join(cls.search_space)}"
        for name, cls in sorted(TRAINING_FREE.items())
        if cls.search_space
    )


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
        self._check_negatives()
        self._check_alphas()
        self._check_distill()
        self._check_params("model_params", "model")
        self._check_params("distill_params", "distill")

    def _check_negatives(self) -> None:
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

    def _check_alphas(self) -> None:
        if self.alphas is None:
            return
        if len(self.alphas) != self.layers + 1:
            raise SettingError(
                ("alphas", "layers"),
                f"alphas needs layers + 1 = {self.layers + 1} values, not {len(self.alphas)}",
            )
        if not all(math.isfinite(a) for a in self.alphas):
            raise SettingError("alphas", f"alphas must be finite numbers, not {self.alphas}")
        if self.model in MODELS and "alphas" not in MODELS[self.model].hyperparameters:
            raise SettingError(
                ("alphas", "model"),
                f"model {self.model!r} takes no layer coefficients (alphas)",
            )

    def _check_distill(self) -> None:
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
        """The fields the selected trained model declares as its ``hyperparameters`` (of dim,
        layers, alphas), as its constructor takes them."""
        if self.model not in MODELS:
            raise ValueError(
                f"model {self.model!r} is training-free: fit it (fit_training_free), not train it"
            )
        accepted = MODELS[self.model].hyperparameters
        if self.alphas is not None and "alphas" not in accepted:
            raise ValueError(f"model {self.model!r} takes no layer coefficients (alphas)")
        params = {"dim": self.dim, "layers": self.layers}
        if self.alphas is not None:
            params["alphas"] = list(self.alphas)
        return {k: v for k, v in params.items() if k in accepted}


# Presets: tuned regimes, each a few fields set together (``dataclasses.replace(config,
# **preset)`` or a run config's fields).

# The teacher settings that met the Gowalla trained target (docs/benchmarks/gowalla.md, "The
# targets and where they stand"): rank-weighted, list-wise, the teacher's items at weight 4.
# Needs the softmax loss.
LISTWISE_DISTILL = {"distill_ranked": True, "distill_listwise": True, "distill_weight": 4.0}

# The softmax regime LISTWISE_DISTILL met that target under (the demo's --distill-listwise).
LISTWISE_SOFTMAX = {
    "loss": "softmax",
    "temperature": 0.1,
    "uniform_negatives": 0,
    "shared_negatives": 2048,
}
