"""``trained_model``'s day: which model day D trains (pinned by the run config, the day's
champion of model selection, or the default), its fit on one process or data parallel, and its
checkpoint, whose sha256 is the model's fingerprint (the gate records the one it evaluated and
publication refuses any other)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from recs_pipeline.evaluation.selection_record import Selection, champion_line
from recs_pipeline.graph.bipartite import InteractionGraph, id_map_version
from recs_pipeline.infra.artifacts import (
    HARD_NEGATIVES,
    ITEM_FEATURES,
    MODEL,
    SELECTION,
    ArtifactProgress,
    DayArtifacts,
    Stamp,
)
from recs_pipeline.infra.engine import Engine
from recs_pipeline.models import TRAINING_FREE, Recommender, checkpoint, fit_training_free
from recs_pipeline.steps.day import item_features, previous_model
from recs_pipeline.training import TrainConfig, TrainResult, train_model
from recs_pipeline.training.data_parallel import rank_log, train_data_parallel

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Choice:
    """The model day D trains, how it was chosen (the gate judges a search's champion on too
    few test users as insufficient evidence, but holds a pinned or default model to
    popularity), and the line that says so (``warning``: the choice is a fallback)."""

    config: TrainConfig
    chosen_by: str  # "run config", "model_selection" or "default"
    line: str
    warning: bool = False


def choose_model(day: DayArtifacts, base: TrainConfig, pinned: bool) -> Choice:
    """``base`` when the run config pins its model; else the champion model selection stored
    for ``key``, with its settings (a training-free model's own ``model_params``, a trained
    model's TrainConfig fields); else ``base``'s default model, with a warning."""
    if pinned:
        return Choice(base, "run config", f"model pinned by the run config: {base.model}")
    if not day.store.has(SELECTION, day.key):
        return Choice(
            base,
            "default",
            f"no model_selection for {day.key}: {base.model} (the default) is trained; materialise"
            " model_selection first to train the day's champion",
            warning=True,
        )
    selection = Selection.from_dict(day.get(SELECTION)["selection"])
    if selection.model in TRAINING_FREE:
        config = dataclasses.replace(
            base, model=selection.model, model_params=dict(selection.params) or None
        )
    else:
        config = dataclasses.replace(base, model=selection.model, **selection.params)
    chosen_by = "default" if selection.fallback else "model_selection"
    return Choice(config, chosen_by, champion_line(selection))


@dataclasses.dataclass(frozen=True)
class TrainedDay:
    """What ``trained_model`` stored for day D: ``fitted`` for a training-free model,
    ``result`` for a trained one."""

    config: TrainConfig
    chosen_by: str
    stamp: Stamp
    fitted: Recommender | None = None
    result: TrainResult | None = None
    workers: int = 1


def train_day(
    day: DayArtifacts,
    graph: InteractionGraph,
    choice: Choice,
    engine: Engine,
    *,
    warm_start: bool = True,
    resume: bool = True,
    log: Log = print,
    warn: Log = print,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainedDay:
    """Fit ``choice``'s model on ``graph`` and store its checkpoint as ``trained_model`` of
    ``day``.

    A training-free model is fitted. A trained one starts from D-1's model (``warm_start``)
    and from its own saved progress (``resume``), reads D's hard negatives and, if it takes
    them, item features; it trains in this process, or data parallel on ``engine.workers``
    ranks (``on_epoch`` then sees every record once training ends)."""
    config, store, key = choice.config, day.store, day.key
    id_map = {"as_of": key, "version": id_map_version(graph.user_ids, graph.item_ids)}
    if config.model in TRAINING_FREE:
        model = fit_training_free(
            config.model,
            graph.train_users,
            graph.train_items,
            graph.n_users,
            graph.n_items,
            **(config.model_params or {}),
        )
        state = {**checkpoint(model), "id_map": id_map, "chosen_by": choice.chosen_by}
        return TrainedDay(config, choice.chosen_by, store.put(MODEL, key, state), fitted=model)
    inputs = {
        "hard_pools": day.get(HARD_NEGATIVES),
        "item_features": item_features(store, key, config.model, log, day.writer(ITEM_FEATURES)),
        "warm_start": previous_model(store, key, graph, warn) if warm_start else None,
    }
    progress = ArtifactProgress(store, key, log=warn)
    if engine.kind == "local" and engine.workers == 1:
        result = train_model(
            graph, config, log=log, progress=progress if resume else None, on_epoch=on_epoch,
            **inputs,
        )  # fmt: skip
    else:
        # Rank 0 saves the progress, through a store whose warnings go to the rank's log.
        result = train_data_parallel(
            engine, graph, config, log=log,
            progress=ArtifactProgress(store, key, log=rank_log) if resume else None,
            **inputs,
        )  # fmt: skip
        for record in result.history[result.resumed_from_epoch :]:
            if on_epoch is not None:
                on_epoch(record)
    stamp = store.put(
        MODEL,
        key,
        {
            **checkpoint(result.model),
            "train_config": dataclasses.asdict(config),
            "id_map": id_map,
            "history": result.history,
            "best_epoch": result.best_epoch,
            "val_recall": result.best_val_recall,
            "warm_start": result.warm_start,
            "chosen_by": choice.chosen_by,
        },
    )
    progress.clear()
    return TrainedDay(config, choice.chosen_by, stamp, result=result, workers=engine.workers)
