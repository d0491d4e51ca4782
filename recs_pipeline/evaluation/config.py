"""Settings of the full-ranking evaluation of ``model_evaluation`` (:mod:`recs_pipeline.steps.evaluate`)."""

from __future__ import annotations

import dataclasses

from recs_pipeline.config import check_declared, setting
from recs_pipeline.models import TRAINING_FREE


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
