"""The quality gate: whether a day's model may be published.

One metric decides (:data:`GATE_METRIC`, Recall@20 on the day's test fold) against one
baseline (:data:`GATE_BASELINE`, popularity): the model must beat it. A model that model
selection chose on validation is held back only on evidence: when it scores below popularity
on the test fold, the gate asks whether that deficit is more than noise, by a one-sided paired
t-test on the two scorers' per-user values (:func:`paired_p_worse`). The paired t-test agrees
with the randomization and bootstrap tests on IR metrics (Smucker, Allan and Carterette, "A
comparison of statistical significance tests for information retrieval evaluation", CIKM
2007), and on a few hundred test users a Recall@20 gap of several points is often noise.

The verdict is recorded as ``model_evaluation``'s ``gate.json`` beside the model's sha256, and
publication serves only the model that verdict is about (:func:`publishable`). Every sentence the run page, the check
and the terminal show about the gate comes from :class:`GateResult`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from recs_pipeline.infra.artifacts import GATE, ArtifactError, Stamp, UrlArtifactStore

# The metrics (recs_pipeline.evaluation.metrics) and cut-offs every evaluation reports; the
# gate reads one of each.
METRICS = ("recall", "ndcg", "precision", "hitrate")
KS = (10, 20, 50)
GATE_METRIC = ("recall", 20)
GATE_BASELINE = "popularity"
# "Recall@20", as the sentences write it; "recall@20", as metadata keys do.
GATE_LABEL = f"{GATE_METRIC[0].capitalize()}@{GATE_METRIC[1]}"
GATE_KEY = f"{GATE_METRIC[0]}@{GATE_METRIC[1]}"
# The name of model_evaluation's asset check that carries the verdict.
GATE_CHECK = f"beats_{GATE_BASELINE}"

PASSED, FAILED, NO_TEST_USERS = "passed", "failed", "no_test_users"
INSUFFICIENT = "insufficient_evidence"
POPULARITY_CHOSEN = "popularity_chosen"


@dataclasses.dataclass(frozen=True)
class GateResult:
    """The gate's verdict on one model artifact (``model_sha256``) of one partition."""

    verdict: str
    model: str
    model_sha256: str
    model_score: float
    baseline_score: float
    evaluated_users: int
    min_users: int = 1
    # The one-sided paired p-value that the model is worse than the baseline (None: not
    # tested), and the level below which that counts as evidence.
    p_worse: float | None = None
    alpha: float = 0.05

    @property
    def description(self) -> str | None:
        if self.verdict == NO_TEST_USERS:
            return (
                "no test users on this day (every test-period user is new, or none was"
                " sampled): the model cannot be evaluated, so the popularity fallback is"
                " published for every user"
            )
        if (
            self.verdict == INSUFFICIENT
            and self.p_worse is not None
            and self.evaluated_users >= self.min_users
        ):
            return (
                f"the model's shortfall against {GATE_BASELINE} is within noise (one-sided"
                f" paired t-test on the {self.evaluated_users} test users' {GATE_LABEL}:"
                f" p = {self.p_worse:.2f}, not below {self.alpha}): no evidence that the model"
                " chosen on validation is worse, so it is published, with this warning"
            )
        if self.verdict == INSUFFICIENT:
            return (
                f"only {self.evaluated_users} test users, fewer than min_test_users"
                f" ({self.min_users}): too few to judge the model on the test period, so the"
                " model chosen on validation is published, with this warning"
            )
        if self.verdict == POPULARITY_CHOSEN:
            return (
                "model selection chose popularity itself on validation: no model beat it, so"
                " popularity's lists are published"
            )
        if self.verdict == FAILED:
            if self.model == GATE_BASELINE:
                return f"the model is {GATE_BASELINE} itself: it cannot beat {GATE_BASELINE}"
            if self.p_worse is not None and self.p_worse < self.alpha:
                return (
                    f"the model does not beat {GATE_BASELINE} on {GATE_LABEL}, and its deficit"
                    f" is significant (one-sided paired t-test p = {self.p_worse:.3g} <"
                    f" {self.alpha})"
                )
            return f"the model does not beat {GATE_BASELINE} on {GATE_LABEL}"
        return None

    @property
    def lift(self) -> float | None:
        """The model's gate metric over the baseline's, minus 1 (None when undefined)."""
        if not self.baseline_score > 0 or math.isnan(self.model_score):
            return None
        return self.model_score / self.baseline_score - 1

    def refusal(self, key: str) -> str:
        """The sentence that stops publication of day ``key`` when the model failed: what the
        run page shows as the step's failure."""
        lift = "undefined" if self.lift is None else f"{self.lift:+.2%}"
        return (
            f"{self.model} (model.pt {self.model_sha256[:12]}) failed the quality gate of {key}:"
            f" {GATE_LABEL} {self.model_score:.4f} vs popularity {self.baseline_score:.4f} (lift"
            f" {lift}) on {self.evaluated_users} test users; {self.description}, so nothing is"
            " published for the day and the last published day stays live"
        )

    @property
    def scores(self) -> str:
        """Both scores: ``lightgcn Recall@20 0.2100 vs popularity 0.1500``."""
        return (
            f"{self.model} {GATE_LABEL} {self.model_score:.4f} vs {GATE_BASELINE}"
            f" {self.baseline_score:.4f}"
        )

    def score_metadata(self) -> dict[str, float]:
        """Both scores under the keys the check and the step's failure show them with."""
        return {
            f"model_{GATE_KEY}": round(self.model_score, 4),
            f"{GATE_BASELINE}_{GATE_KEY}": round(self.baseline_score, 4),
        }

    @property
    def summary(self) -> str:
        """The verdict with both scores and the lift, pass or fail (the check's description)."""
        if self.verdict == NO_TEST_USERS:
            return f"{self.verdict}: {self.description}"
        lift = "undefined" if self.lift is None else f"{self.lift:+.2%}"
        scores = (
            f"{self.model} {GATE_LABEL} {self.model_score:.4f} vs popularity"
            f" {self.baseline_score:.4f} (lift {lift}) on {self.evaluated_users} test users"
        )
        if self.verdict == PASSED:
            return f"passed: {scores}; this model.pt may be published"
        if self.verdict in (INSUFFICIENT, POPULARITY_CHOSEN):
            return f"{self.verdict}: {scores}: {self.description}"
        return f"failed: {scores}: {self.description}; nothing is published for the day"


def paired_p_worse(model: Sequence[float], baseline: Sequence[float]) -> float:
    """The one-sided p-value of a paired t-test that the model's per-user values are lower
    than the baseline's (the same users, in one order); 1 when they never differ, or with
    fewer than two users (no evidence either way)."""
    # Here, not at the top: the code location imports this module, and loads no scipy. The t
    # distribution's CDF alone (scipy.special, ~0.05 s to import) instead of scipy.stats (~0.3
    # s): the evaluation step imports it while it holds the warehouse pool's slot.
    import numpy as np
    from scipy.special import stdtr

    diff = np.asarray(model, dtype=float) - np.asarray(baseline, dtype=float)
    if diff.size < 2:
        return 1.0
    if not diff.std() > 0:  # every user differs by the same amount
        return 0.0 if diff.mean() < 0 else 1.0
    # The paired t-test is the one-sample test of the differences (scipy's ttest_rel, one-sided
    # "less"): P(T <= t) for Student's t with n - 1 degrees of freedom.
    t = diff.mean() / (diff.std(ddof=1) / np.sqrt(diff.size))
    return float(stdtr(diff.size - 1, t))


def gate_verdict(
    model: str,
    fingerprint: str,
    model_score: float,
    baseline_score: float,
    evaluated_users: int,
    min_users: int = 1,
    chosen_on_validation: bool = False,
    p_worse: float | None = None,
    alpha: float = 0.05,
) -> GateResult:
    """Pass when the model's score exceeds popularity's; with no evaluated user the scores are
    undefined, which is its own verdict (not a failure of the model).

    A model a search ``chosen_on_validation`` is refused only on evidence: with fewer than
    ``min_users`` test users, or when it scores lower but not significantly so (``p_worse``,
    from :func:`paired_p_worse`, at least ``alpha``), the verdict is insufficient evidence and
    the validation champion is published with a warning. A pinned or fallback model, which
    nothing validated, is still held to beating popularity."""
    if evaluated_users == 0 or math.isnan(model_score) or math.isnan(baseline_score):
        verdict = NO_TEST_USERS
    elif model == GATE_BASELINE and chosen_on_validation:
        verdict = POPULARITY_CHOSEN
    elif evaluated_users < min_users and chosen_on_validation:
        verdict = INSUFFICIENT
    elif model != GATE_BASELINE and model_score > baseline_score:
        verdict = PASSED
    elif (
        model != GATE_BASELINE and chosen_on_validation and p_worse is not None and p_worse >= alpha
    ):
        verdict = INSUFFICIENT
    else:
        verdict = FAILED
    return GateResult(
        verdict, model, fingerprint, model_score, baseline_score, evaluated_users, min_users,
        p_worse, alpha,
    )  # fmt: skip


def record_gate(store: UrlArtifactStore, key: str, result: GateResult) -> None:
    store.put(GATE, key, dataclasses.asdict(result))


class GateError(RuntimeError):
    """Publication refused: no passing gate result for the model about to be published.
    ``result`` is the gate's verdict when it is a failure of the model (the gate ran and the
    model did not pass); None when publication is refused for another reason (no verdict, an
    unusable one, one about another model.pt)."""

    def __init__(self, message: str, result: GateResult | None = None):
        super().__init__(message)
        self.result = result


def publishable(
    store: UrlArtifactStore, key: str, model: Stamp, expect_run: str | None = None
) -> GateResult:
    """The gate result that allows publishing the model stamped ``model`` for ``key`` (verdict
    passed or insufficient_evidence: publish the model; no_test_users, popularity_chosen:
    publish popularity);
    raises :class:`GateError` otherwise."""
    if not store.has(GATE, key):
        raise GateError(
            f"no quality gate result for partition {key}: materialise model_evaluation({key})"
            " before recommendations"
        )
    try:
        result = GateResult(**store.get(GATE, key, expect_run))
    except ArtifactError as error:
        raise GateError(f"the quality gate result of {key} is unusable: {error}") from None
    if result.model_sha256 != model.sha256:
        raise GateError(
            f"the quality gate of {key} evaluated trained_model {result.model_sha256[:12]}, but"
            f" model.pt is now {model.sha256[:12]} (retrained since): materialise"
            f" model_evaluation({key}) before publishing"
        )
    if result.verdict == FAILED:
        raise GateError(result.refusal(key), result)
    return result
