"""Search spaces: the hyperparameters a model lets model selection tune, declared with the
model's other settings (``search_space`` on its declaration, which its class subclasses:
:mod:`recs_pipeline.models.declarations`) as RecBole lets each model own its hyperparameters.

A space maps a parameter name to its range. For a training-free model the names are its
constructor's parameters; for a trained one they are ``TrainConfig`` fields (learning rate,
L2, depth), since those are what its training takes. A range is checked where it is declared:
an empty one is refused before any search starts.

A search range is where selection looks, not what a parameter allows: a training-free model
declares that in its constructor's annotations (``NonNegative``, ``AtLeastOne`` below), which
:func:`recs_pipeline.models.base.check_params` checks a configured value against.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated

from annotated_types import Ge

NonNegative = Annotated[float, Ge(0)]
"""A constructor parameter's declared type: a number >= 0."""
AtLeastOne = Annotated[int, Ge(1)]
"""A constructor parameter's declared type: an integer >= 1."""


@dataclasses.dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        _check_bounds(self.low, self.high, self.log)


@dataclasses.dataclass(frozen=True)
class Int:
    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        _check_bounds(self.low, self.high, self.log)


def _check_bounds(low: float, high: float, log: bool) -> None:
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(f"empty range: low {low} > high {high}")
    if log and low <= 0:
        raise ValueError(f"a log range needs low > 0, not {low}")


@dataclasses.dataclass(frozen=True)
class Choice:
    options: tuple

    def __post_init__(self) -> None:
        if not self.options:
            raise ValueError("empty range: no options to choose from")


Range = Float | Int | Choice


def check_space(owner: str, space: dict[str, Range]) -> dict[str, Range]:
    """``space`` after checking every range is one of this module's (a typo'd range type or a
    bare number is a declaration error, named with its owner)."""
    for name, spec in space.items():
        if not isinstance(spec, Float | Int | Choice):
            raise ValueError(f"{owner}.search_space[{name!r}] is not a Float, Int or Choice range")
    return space
