"""Settings of the full-ranking evaluation of ``model_evaluation`` (:mod:`recs_pipeline.steps.evaluate`)
and of model selection's search (:mod:`recs_pipeline.evaluation.selection`). No torch here: the
code location derives their run config from them."""

from __future__ import annotations

import dataclasses

from recs_pipeline.config import SettingError, check_declared, setting
from recs_pipeline.models.declarations import TRAINING_FREE, model_names

#: The candidates a selection considers unless told otherwise: every training-free scorer and
#: the trained models that need no item features (PinSAGE joins where a catalogue exists).
DEFAULT_CANDIDATES = ("popularity", "gfcf", "dnfilter", "lightgcn", "mf", "ngcf")


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    baselines: tuple[str, ...] = setting(
        ("popularity", "gfcf"),
        "Training-free models evaluated beside the trained one on the same test fold.",
        choices=sorted(TRAINING_FREE),
    )
    max_users: int | None = setting(
        20_000,
        "Evaluate on a seeded random sample of at most this many test users (None:"
        " all). Full ranking costs users × items, so a fixed sample keeps evaluation linear in"
        " the catalogue; at 20,000 users a Recall@20 near 0.3 has a standard error near 0.003.",
        ge=1,
    )
    seed: int = setting(0, "Seed of the test-user sample.")
    min_test_users: int = setting(
        50,
        "Fewer evaluated test users than this is insufficient evidence for the quality gate:"
        " a warning, and the model chosen on validation is published (Recall@20 of a few dozen"
        " users moves by several points from one user to the next).",
        ge=1,
    )

    gate_alpha: float = setting(
        0.05,
        "A model chosen on validation that scores below popularity on the test fold is held"
        " back only when a one-sided paired t-test on the test users' Recall@20 finds the"
        " deficit significant at this level; otherwise it is published with a warning.",
        gt=0,
        lt=1,
    )

    def __post_init__(self) -> None:
        check_declared(self)


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
    """How the pipeline chooses a day's scorer (``model_selection``'s run config)."""

    budget_minutes: float = setting(
        5.0, "Time budget of a search (trials started after it are not run).", gt=0.0
    )
    every_days: int = setting(
        7,
        "A full search every this many days; the days between reuse the latest selection made"
        " as of that day or earlier (a backfill never uses one made from later data).",
        ge=1,
    )
    candidates: tuple[str, ...] = setting(
        DEFAULT_CANDIDATES,
        "The models a search considers (pinsage joins only where item features exist).",
        choices=model_names(),
    )
    trials: int | None = setting(
        None, "Cap on the trials of one search (none: the budget alone ends it).", ge=1
    )
    val_users: int = setting(
        3000, "Users whose latest train edges form the validation slice.", ge=1
    )
    val_fraction: float = setting(
        0.2, "Share of each validation user's latest train edges held out (0: one).", ge=0.0, lt=1.0
    )
    seed: int = setting(0, "Seed of the validation slice and the sampler.")

    def __post_init__(self) -> None:
        check_declared(self)
        if not self.candidates:
            raise SettingError("candidates", "name at least one model")
