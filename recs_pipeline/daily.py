"""A day's stored artifacts as training, evaluation and publication read them: the graph, item
features, the previous day's model for warm starts, scorers, the evaluation sample and the
quality gate's record (which publication checks against the model it is about to serve).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
from collections.abc import Callable

import torch

from recs_pipeline.artifacts import (
    ADJACENCY,
    GATE,
    GRAPH,
    ITEM_FEATURES,
    MODEL,
    PUBLISHED_MODEL,
    ArtifactError,
    Stamp,
    UrlArtifactStore,
)
from recs_pipeline.graph import InteractionGraph, id_map_version, normalized_adjacency
from recs_pipeline.metrics import ScoreFn
from recs_pipeline.models import MODELS, TRAINING_FREE, fit_training_free
from recs_pipeline.scoring import score_function
from recs_pipeline.training.init import WarmStart, id_mapping

Log = Callable[[str], None]
GATE_BASELINE = "popularity"


def load_graph(
    store: UrlArtifactStore, key: str, expect_run: str | None = None
) -> InteractionGraph:
    return InteractionGraph.from_dict(store.get(GRAPH, key, expect_run))


def item_features(
    store: UrlArtifactStore, key: str, model: str, log: Log, expect_run: str | None = None
) -> torch.Tensor | None:
    """The day's item features for a model that takes them (PinSAGE), else None."""
    if not MODELS[model].takes_item_features:
        return None
    if not store.has(ITEM_FEATURES, key):
        log(f"{model}: no item features for {key}; ids only")
        return None
    features = store.get(ITEM_FEATURES, key, expect_run)
    log(f"{model}: item features {features['columns']}")
    return features["values"] if features["columns"] else None


def previous_model(
    store: UrlArtifactStore, key: str, graph: InteractionGraph, log: Log
) -> WarmStart | None:
    """trained_model(D-1) with its ids mapped onto D's graph, or None when there is none
    (first day, training-free model), its graph no longer matches it, or it is refused (a
    file that fails verification is never decoded: training starts cold and says why)."""
    prev_key = (dt.date.fromisoformat(key) - dt.timedelta(days=1)).isoformat()
    if not (store.has(MODEL, prev_key) and store.has(GRAPH, prev_key)):
        return None
    try:
        state = store.get(MODEL, prev_key)
        prev_graph = load_graph(store, prev_key)
    except ArtifactError as error:
        log(f"no warm start: trained_model({prev_key}) refused: {error}")
        return None
    if "state_dict" not in state:
        return None
    if state["id_map"]["version"] != id_map_version(prev_graph.user_ids, prev_graph.item_ids):
        log(f"no warm start: trained_model({prev_key}) was fitted on another id map")
        return None
    return WarmStart(
        state,
        id_mapping(prev_graph.user_ids, graph.user_ids),
        id_mapping(prev_graph.item_ids, graph.item_ids),
        source=f"trained_model({prev_key})",
    )


@dataclasses.dataclass(frozen=True)
class Scorer:
    graph: InteractionGraph
    model: str
    score_fn: ScoreFn
    fingerprint: str  # sha256 of the model.pt it was built from


def load_model(
    store: UrlArtifactStore, key: str, expect_run: str | None = None
) -> tuple[dict, Stamp]:
    """trained_model(key)'s checkpoint and stamp, read from one file version."""
    return store.get_stamped(MODEL, key, expect_run)


def load_model_payload(
    store: UrlArtifactStore, key: str, expect_run: str | None = None
) -> tuple[tuple[dict, Stamp], bytes]:
    """trained_model(key)'s (checkpoint, stamp) and its file's payload, from one file version:
    publication pins exactly these bytes (:func:`pin_published_model`)."""
    stamp, payload = store.get_payload(MODEL, key, expect_run)
    return (store.decode(MODEL, key, payload), stamp), payload


def pin_published_model(store: UrlArtifactStore, key: str, payload: bytes) -> Stamp:
    """Keep the model.pt behind ``key``'s published lists as ``recommendations/key/
    published_model.pt``, byte for byte (same sha256): a later run of trained_model with
    another model replaces model.pt, not what was published."""
    return store.put_payload(PUBLISHED_MODEL, key, payload)


def published_model_problems(
    con, store: UrlArtifactStore, verify: bool = False
) -> dict[str, tuple[str, str]]:
    """Each day whose published_model.pt is not the model ``serving.publications`` records for
    its lists: {day: (the recorded sha256, why)}. A crash between a publication's commit and its
    pin leaves the earlier model pinned beside the new lists. ``verify`` reads every pin whole
    (its checksum checked, as the doctor does); otherwise only their headers are read, cheap
    enough for every publication. Days whose model is not recorded are not checked."""
    found = {}
    for day, sha256 in con.execute(
        """SELECT as_of_date, model_sha256 FROM serving.publications
           WHERE model_sha256 IS NOT NULL ORDER BY 1"""
    ).fetchall():
        key = day.isoformat()
        try:
            stamp = (
                store.stamp(PUBLISHED_MODEL, key)
                if verify
                else store.recorded(PUBLISHED_MODEL, key)
            )
        except ArtifactError as error:
            found[key] = (sha256, str(error))
            continue
        if stamp is None or stamp.sha256 != sha256:
            held = "nothing" if stamp is None else f"model {stamp.sha256[:12]}"
            found[key] = (
                sha256,
                f"{PUBLISHED_MODEL.at(key)} holds {held}, the lists were published from model"
                f" {sha256[:12]}",
            )
    return found


def repin_published_model(store: UrlArtifactStore, key: str, sha256: str) -> str | None:
    """Pin trained_model(key)'s model.pt as ``key``'s published model if it is the one the
    lists were published from (fingerprint ``sha256``); returns why it cannot, or None."""
    try:
        stamp, payload = store.get_payload(MODEL, key)
    except ArtifactError as error:
        return f"{error}; re-publish {key}"
    if stamp.sha256 != sha256:
        return (
            f"{MODEL.at(key)} is now model {stamp.sha256[:12]}, not the published"
            f" {sha256[:12]}: re-publish {key} (recommendations) to pin what it serves"
        )
    pin_published_model(store, key, payload)
    return None


def converge_published_models(
    con, store: UrlArtifactStore, log: Log, verify: bool = False
) -> dict[str, str]:
    """Re-pin every day whose published_model.pt disagrees with its publication record
    (:func:`published_model_problems`), from trained_model's model.pt when it is still the
    published one; logs each. Returns the days that could not be repaired and why."""
    left = {}
    for key, (sha256, problem) in published_model_problems(con, store, verify).items():
        failure = repin_published_model(store, key, sha256)
        if failure is None:
            log(f"{key}: re-pinned the published model ({problem})")
        else:
            left[key] = f"{problem}; {failure}"
    return left


def published_model(store: UrlArtifactStore, key: str) -> tuple[dict, Stamp]:
    """The checkpoint and stamp of the model behind ``key``'s published lists."""
    return store.get_stamped(PUBLISHED_MODEL, key)


def config_hash(state: dict, split: dict | None = None) -> str:
    """A short digest of a checkpoint's configuration, and of the ``split`` settings (window,
    test period) it was evaluated under when given. ``ml.metrics`` keys each evaluation by it,
    so evaluations of one model under different windows sit side by side.

    Trained models: their train config, less the settings left unset (None: the default), so
    a setting added later changes no earlier hash. Training-free ones: the model name and the
    parameters that differ from the model's defaults (a default fit keeps the bare name's hash).
    """
    if state.get("train_config"):
        config = {k: v for k, v in state["train_config"].items() if v is not None}
    else:
        config = {"model": state["model"]}
        if state.get("params") and state["model"] in TRAINING_FREE:
            defaults = TRAINING_FREE[state["model"]]().params()
            changed = {k: v for k, v in state["params"].items() if defaults.get(k) != v}
            config |= {"params": changed} if changed else {}
    if split:
        config["split"] = {k: v for k, v in split.items() if v is not None}
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_scorer(
    store: UrlArtifactStore,
    key: str,
    up_to_date: bool = False,
    model: tuple[dict, Stamp] | None = None,
    expect_graph_run: str | None = None,
) -> Scorer:
    """The scorer of partition ``key`` (from ``model``, else the stored model.pt). Evaluation
    scores from the train graph (the test fold stays unseen); publication (``up_to_date``)
    from train ∪ test, everything known up to D, so a graph model's lists reflect the user's
    newest interactions (a trained model propagates over that graph, a training-free one is
    refitted on it)."""
    graph = load_graph(store, key, expect_graph_run)
    state, stamp = model or load_model(store, key)
    if state["id_map"]["version"] != id_map_version(graph.user_ids, graph.item_ids):
        raise ArtifactError(
            f"trained_model({key}) was fitted on another id map than interaction_graph({key}):"
            " re-materialise trained_model"
        )
    if up_to_date:
        graph = graph.up_to_date()
        adjacency = normalized_adjacency(
            graph.train_users, graph.train_items, graph.n_users, graph.n_items
        )
    else:
        adjacency = store.get(ADJACENCY, key, expect_graph_run)
    return Scorer(graph, state["model"], score_function(state, graph, adjacency), stamp.sha256)


def popularity_scorer(graph: InteractionGraph) -> ScoreFn:
    return fit_training_free(
        GATE_BASELINE, graph.train_users, graph.train_items, graph.n_users, graph.n_items
    ).scores


def sample_test_users(
    graph: InteractionGraph, max_users: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The test edges of a seeded random sample of at most ``max_users`` test users (all of
    them when there are no more): the metrics are then unbiased estimates of the full ones."""
    users = torch.unique(graph.test_users)
    if max_users is None or users.numel() <= max_users:
        return graph.test_users, graph.test_items
    order = torch.randperm(users.numel(), generator=torch.Generator().manual_seed(seed))
    keep = torch.isin(graph.test_users, users[order[:max_users]])
    return graph.test_users[keep], graph.test_items[keep]


# --- the quality gate -------------------------------------------------------------------------

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

    @property
    def description(self) -> str | None:
        if self.verdict == NO_TEST_USERS:
            return (
                "no test users on this day (every test-period user is new, or none was"
                " sampled): the model cannot be evaluated, so the popularity fallback is"
                " published for every user"
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
                return "the model is popularity itself: it cannot beat popularity"
            return "the model does not beat popularity on Recall@20"
        return None

    @property
    def lift(self) -> float | None:
        """The model's Recall@20 over popularity's, minus 1 (None when undefined)."""
        if not self.baseline_score > 0 or math.isnan(self.model_score):
            return None
        return self.model_score / self.baseline_score - 1

    def refusal(self, key: str) -> str:
        """The sentence that stops publication of day ``key`` when the model failed: what the
        run page shows as the step's failure."""
        lift = "undefined" if self.lift is None else f"{self.lift:+.2%}"
        return (
            f"{self.model} (model.pt {self.model_sha256[:12]}) failed the quality gate of {key}:"
            f" Recall@20 {self.model_score:.4f} vs popularity {self.baseline_score:.4f} (lift"
            f" {lift}) on {self.evaluated_users} test users; {self.description}, so nothing is"
            " published for the day and the last published day stays live"
        )

    @property
    def summary(self) -> str:
        """The verdict with both scores and the lift, pass or fail (the check's description)."""
        if self.verdict == NO_TEST_USERS:
            return f"{self.verdict}: {self.description}"
        lift = "undefined" if self.lift is None else f"{self.lift:+.2%}"
        scores = (
            f"{self.model} Recall@20 {self.model_score:.4f} vs popularity"
            f" {self.baseline_score:.4f} (lift {lift}) on {self.evaluated_users} test users"
        )
        if self.verdict == PASSED:
            return f"passed: {scores}; this model.pt may be published"
        if self.verdict in (INSUFFICIENT, POPULARITY_CHOSEN):
            return f"{self.verdict}: {scores}: {self.description}"
        return f"failed: {scores}: {self.description}; nothing is published for the day"


def gate_verdict(
    model: str,
    fingerprint: str,
    model_score: float,
    baseline_score: float,
    evaluated_users: int,
    min_users: int = 1,
    chosen_on_validation: bool = False,
) -> GateResult:
    """Pass when the model's score exceeds popularity's; with no evaluated user the scores are
    undefined, which is its own verdict (not a failure of the model), and with fewer than
    ``min_users`` they are too noisy to judge: insufficient evidence (the validation champion
    is published, with a warning) when a search ``chosen_on_validation`` the model; a pinned
    or fallback model, which nothing validated, is still held to popularity."""
    if evaluated_users == 0 or math.isnan(model_score) or math.isnan(baseline_score):
        verdict = NO_TEST_USERS
    elif model == GATE_BASELINE and chosen_on_validation:
        verdict = POPULARITY_CHOSEN
    elif evaluated_users < min_users and chosen_on_validation:
        verdict = INSUFFICIENT
    elif model != GATE_BASELINE and model_score > baseline_score:
        verdict = PASSED
    else:
        verdict = FAILED
    return GateResult(
        verdict, model, fingerprint, model_score, baseline_score, evaluated_users, min_users
    )


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
