"""Every model by name, with what it declares: what a config may set of it and what model
selection tunes. No torch here, so that the settings that name a model (``TrainConfig``,
``EvaluationConfig``, ``SelectionConfig``) are checked where no step runs: the code location,
which every Dagster process loads, and the ``recs`` command.

A model's declaration is a class, which its implementation subclasses (``class
LightGCN(LightGCNDeclaration, JointEmbeddingRecommender)``), so each is stated once:

- a trained model (:class:`TrainedDeclaration`): what model selection tunes (``search_space``,
  TrainConfig fields by range), the TrainConfig fields that shape its network
  (``hyperparameters``, passed to its constructor by name) and whether its constructor takes
  item features (``takes_item_features``);
- a training-free model (:class:`TrainingFreeDeclaration`): its own settings, the parameters of
  its constructor with the type and range each declares (``model_params``,
  :func:`check_params`), and which of them model selection tunes (``search_space``).

:data:`MODELS` and :data:`TRAINING_FREE` hold the declarations by name; the registries of the
same names in :mod:`recs_pipeline.models` hold the implementations, and registering one
(:func:`recs_pipeline.models.base.register`) checks that it subclasses its name's declaration.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

from pydantic import TypeAdapter, ValidationError

from recs_pipeline.infra.project_config import describe_type
from recs_pipeline.models.space import (
    AtLeastOne,
    Choice,
    Float,
    Int,
    NonNegative,
    Range,
    check_space,
)


class TrainedDeclaration:
    """What a trained model declares; its implementation is a :class:`Recommender`."""

    #: What model selection tunes: TrainConfig fields (the training's, which the model owns
    #: here) by range. Learning rate and L2 matter for every trained model, over decades.
    search_space: dict[str, Range] = {
        "lr": Float(1e-3, 5e-2, log=True),
        "l2": Float(1e-6, 1e-3, log=True),
    }
    #: The TrainConfig fields that shape the network, passed to the constructor by name
    #: (:meth:`recs_pipeline.training.config.TrainConfig.network_params`); the training's own
    #: fields (lr, l2, loss, ...) apply to every trained model.
    hyperparameters: tuple[str, ...] = ("dim",)
    #: Whether the constructor takes (n_items, f) item features (``item_features``).
    takes_item_features: bool = False


class TrainingFreeDeclaration:
    """What a training-free model declares: its constructor's parameters are its own settings.
    Its implementation is a :class:`TrainingFree`."""

    #: What model selection tunes: constructor parameters by range (none: nothing to tune).
    search_space: dict[str, Range] = {}

    def params(self) -> dict:
        """The constructor's arguments, by name: what a checkpoint stores to rebuild the model
        (each declaration keeps every parameter as the attribute of the same name)."""
        return {name: getattr(self, name) for name in inspect.signature(type(self)).parameters}


# --- the trained models --------------------------------------------------------------------


class LightGCNDeclaration(TrainedDeclaration):
    search_space = {**TrainedDeclaration.search_space, "layers": Int(1, 4)}
    hyperparameters = ("dim", "layers", "alphas")


class MFDeclaration(TrainedDeclaration):
    pass


class NGCFDeclaration(TrainedDeclaration):
    search_space = {**TrainedDeclaration.search_space, "layers": Int(1, 3)}
    hyperparameters = ("dim", "layers")


class PinSAGEDeclaration(TrainedDeclaration):
    hyperparameters = ("dim", "layers")
    takes_item_features = True


# --- the training-free models --------------------------------------------------------------


class PopularityDeclaration(TrainingFreeDeclaration):
    pass


class GFCFDeclaration(TrainingFreeDeclaration):
    # The ideal filter's weight, and its width (log: small catalogues need few vectors).
    search_space = {"alpha": Float(0.0, 1.0), "k": Int(16, 512, log=True)}

    def __init__(self, alpha: float = 0.3, k: AtLeastOne = 256, seed: int = 0) -> None:
        self.alpha, self.k, self.seed = alpha, k, seed


class DNFilterDeclaration(TrainingFreeDeclaration):
    # Around the points the Gowalla grids chose (recs_pipeline.models.dnfilter's docstring),
    # wide enough for logs of other shapes: every setting the filter has, the basis width on a
    # log scale.
    search_space = {
        # A few values: each needs its own item graph and basis, the costly part of a fit,
        # which selection computes once per value and re-weights for the other settings.
        "user_exponent": Choice((0.3, 0.4, 0.5)),
        "beta": Float(0.0, 0.5),
        "gamma": Float(0.0, 0.6),
        "weight": Float(0.0, 0.5),
        "sharpen": Float(0.0, 1.0),
        "k": Int(32, 1024, log=True),
    }

    def __init__(
        self,
        beta: float = 0.2,
        gamma: float | None = 0.3,
        weight: NonNegative = 0.1,
        sharpen: NonNegative = 0.0,
        k: AtLeastOne = 768,
        oversample: int = 64,
        iterations: int = 4,
        seed: int = 0,
        user_exponent: NonNegative = 0.5,
    ) -> None:
        self.beta, self.gamma, self.weight, self.sharpen, self.k = beta, gamma, weight, sharpen, k
        self.user_exponent = user_exponent
        self.oversample, self.iterations, self.seed = oversample, iterations, seed


MODELS: dict[str, type[TrainedDeclaration]] = {
    "lightgcn": LightGCNDeclaration,
    "mf": MFDeclaration,
    "ngcf": NGCFDeclaration,
    "pinsage": PinSAGEDeclaration,
}
TRAINING_FREE: dict[str, type[TrainingFreeDeclaration]] = {
    "dnfilter": DNFilterDeclaration,
    "gfcf": GFCFDeclaration,
    "popularity": PopularityDeclaration,
}
for _name, _declaration in {**MODELS, **TRAINING_FREE}.items():
    check_space(_name, _declaration.search_space)


def model_names() -> list[str]:
    """Every selectable model: trained ones and training-free ones."""
    return sorted(MODELS) + sorted(TRAINING_FREE)


def declared_params(name: str) -> dict[str, Any]:
    """The training-free model ``name``'s own settings: its constructor's parameters, each with
    the type it declares (with its range where declared, ``Annotated``), in signature order."""
    cls = TRAINING_FREE[name]
    hints = typing.get_type_hints(cls.__init__, include_extras=True)
    return {p: hints.get(p, Any) for p in inspect.signature(cls).parameters}


def check_params(name: str, params: dict) -> dict:
    """``params`` as the training-free model ``name`` takes them, sorted by name: each one of
    its constructor's parameters, of the type and range that parameter declares (an integer
    given for a number becomes that number). ValueError naming the model and its parameters, or
    the parameter and what it allows."""
    declared = declared_params(name)
    unknown = sorted(set(params) - set(declared))
    if unknown:
        has = f"its parameters: {', '.join(declared)}" if declared else "it takes none"
        raise ValueError(f"{name} has no parameter {unknown[0]!r}; {has}")
    checked = {}
    for key in sorted(params):
        hint = declared[key]
        try:
            checked[key] = TypeAdapter(hint).validate_python(params[key], strict=True)
        except ValidationError:
            if typing.get_origin(hint) is typing.Annotated:
                allowed = describe_type(*typing.get_args(hint)[:1], typing.get_args(hint)[1:])
            else:
                allowed = describe_type(hint)
            raise ValueError(f"{name}'s {key} must be {allowed}, not {params[key]!r}") from None
    return checked
