"""A day's stored artifacts as training, evaluation and publication read them: the graph, item
features, the previous day's model for warm starts, the checkpoint, scorers and the evaluation
sample. (The gate's record is :mod:`recs_pipeline.evaluation.gate`; the published model's pin,
:mod:`recs_pipeline.serving.published_model`.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Callable

import torch

from recs_pipeline.evaluation.gate import GATE_BASELINE
from recs_pipeline.evaluation.metrics import ScoreFn
from recs_pipeline.evaluation.scoring import score_function
from recs_pipeline.graph.bipartite import InteractionGraph, id_map_version, normalized_adjacency
from recs_pipeline.infra.artifacts import (
    ADJACENCY,
    GRAPH,
    ITEM_FEATURES,
    MODEL,
    ArtifactError,
    Stamp,
    UrlArtifactStore,
)
from recs_pipeline.models import MODELS, TRAINING_FREE, fit_training_free
from recs_pipeline.training.init import WarmStart, id_mapping

Log = Callable[[str], None]


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
