"""live_recommendations: what applications are served now, and whether it is good.

``recommendations`` is partitioned by day, so the UI headlines the day of its latest run,
whichever day that was: a backfill or a re-run of an older day, or a gate failure on one, takes
over its page while the newest day is what is served. ``live_recommendations`` is the one
unpartitioned answer: the day ``serving.latest_recommendations`` serves (the newest day in
``serving.publications``), its scorer, how that scorer was chosen, the gate's verdict, the
model's checksum and its test metrics beside every baseline's with the lifts.

It is not computed by a step of its own. The publication that makes a day live reports it, as
a materialization of this asset, from the ``recommendations`` step that committed the lists:
so it moves only when the live day moves, from any run (the schedule, a UI backfill, the CLI),
and a publication of an older day (which leaves the live day where it is) reports nothing.
Re-publishing the live day itself (a re-run of the newest day, say with another model) is an
observation: the page shows the new scorer and checksum, and the freshness policy, which counts
materializations only, still dates the live day from when it first went live.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from assets.lib.catalog import OWNERS, PUBLICATION_FRESHNESS, tags
from assets.lib.tables import ROW_COUNT, TABLE_NAME
from assets.model import comparison_table, headline_metrics
from recs_pipeline.evaluation.gate import NO_TEST_USERS, GateResult
from recs_pipeline.evaluation.selection_record import Selection, champion_line
from recs_pipeline.infra.artifacts import SELECTION, ArtifactError
from recs_pipeline.models.declarations import TRAINING_FREE
from recs_pipeline.serving.files import live_publication, published_evaluation

LIVE_KEY = dg.AssetKey("live_recommendations")

live_recommendations = dg.AssetSpec(
    LIVE_KEY,
    deps=["recommendations"],
    group_name="serving",
    description=(
        "What applications are served now: the live day (serving.latest_recommendations), its"
        " scorer and how it was chosen, the gate's verdict, the model's sha256 and the test"
        " metrics beside every baseline with the lifts. It moves only when a publication makes"
        " a newer day live (a backfill or re-run of an older day leaves it), and carries the"
        " freshness policy."
    ),
    owners=OWNERS,
    tags=tags("serving"),
    kinds={"duckdb"},
    # The view it describes; its columns are recommendations' (not repeated here, so that the
    # overview opens on what is live).
    metadata={TABLE_NAME: "serving.latest_recommendations"},
    freshness_policy=PUBLICATION_FRESHNESS,
)

# The training settings the live asset shows of a trained model (TrainConfig's names).
TRAIN_SETTINGS_SHOWN = (
    "dim", "layers", "loss", "lr", "l2", "batch_size", "epochs", "temperature",
    "uniform_negatives", "shared_negatives", "max_hard_negatives", "init", "distill",
    "weighted", "seed",
)  # fmt: skip


def shown_live_day(instance: dg.DagsterInstance) -> dt.date | None:
    """The live day the asset's latest materialization reports (None: never reported)."""
    event = instance.get_latest_materialization_event(LIVE_KEY)
    if event is None or event.asset_materialization is None:
        return None
    day = event.asset_materialization.metadata.get("day")
    return None if day is None else dt.date.fromisoformat(day.value)


def scorer_settings(state: dict) -> dict:
    """A checkpoint's settings: a training-free model's parameters, a trained model's main
    training settings and best epoch."""
    if state.get("params") is not None:
        return dict(state["params"])
    config = state.get("train_config") or {}
    shown = {name: config[name] for name in TRAIN_SETTINGS_SHOWN if config.get(name) is not None}
    if state.get("best_epoch") is not None:
        shown["best_epoch"] = state["best_epoch"]
    return shown


def day_selection(store, key: str) -> tuple[Selection | None, str | None]:
    """Day ``key``'s model_selection record (selection, the day it was reused from), or
    (None, None) when there is none."""
    try:
        if not store.has(SELECTION, key):
            return None, None
        record = store.get(SELECTION, key)
    except (ArtifactError, OSError):
        return None, None
    return Selection.from_dict(record["selection"]), record.get("reused_from")


def how_chosen(
    served: str,
    state: dict,
    gate: GateResult,
    selection: Selection | None,
    reused_from: str | None = None,
) -> tuple[str, str]:
    """(how, why): how the served scorer was chosen — ``model_selection``, ``pinned`` (the
    run config named it), ``baseline`` (a training-free baseline model_selection chose over
    the trained models it beat on validation), ``default`` (no selection for the day) or
    ``fallback`` (popularity, on a day without test users) — and a sentence saying why."""
    if gate.verdict == NO_TEST_USERS:
        return "fallback", (
            f"popularity serves every user: the day has no test users, so {state.get('model')}"
            " could not be evaluated"
        )
    chosen_by = state.get("chosen_by")
    if chosen_by == "run config":
        return "pinned", f"{served} is pinned by the run config (model_selection only reports)"
    if chosen_by == "model_selection" and selection is not None:
        beaten = [
            trial
            for trial in selection.leaderboard()
            if trial.model not in TRAINING_FREE and trial.model != served
        ]
        if served in TRAINING_FREE and beaten:
            return "baseline", (
                f"{served} beat the trained models on validation Recall@{selection.k} and serves"
                f" in their place: {served} {selection.recall:.4f} vs "
                + ", ".join(f"{trial.model} {trial.recall:.4f}" for trial in beaten)
            )
        return "model_selection", champion_line(selection, reused_from).removeprefix(
            "model selection: "
        )
    if chosen_by == "model_selection":
        return "model_selection", f"{served} chosen by model_selection"
    reason = (
        selection.fallback
        if selection is not None and selection.fallback
        else "no model_selection for the day"
    )
    return "default", f"{served} is the default model ({reason})"


def live_event(
    context: dg.AssetExecutionContext,
    con,
    store,
    *,
    day: dt.date,
    publication: str,
    served: str,
    state: dict,
    gate: GateResult,
    counts: dict,
) -> tuple[dg.AssetMaterialization | dg.AssetObservation | None, str]:
    """After day ``day``'s publication ``publication`` committed: the live asset's event and a
    log line. A materialization when this publication made a day live that the asset does not
    show yet (the live day moved), an observation when it re-published the day the asset shows,
    None when another day is live (an older day was published)."""
    live = live_publication(con)
    if live is None or live.publication != publication:
        newest = "nothing" if live is None else live.day.isoformat()
        return None, f"{day.isoformat()} published; the live day stays {newest}"
    shown = shown_live_day(context.instance)
    key = day.isoformat()
    selection, reused_from = day_selection(store, key)
    how, why = how_chosen(served, state, gate, selection, reused_from)
    evaluated, results = published_evaluation(con, day, live.model_sha256)
    metadata: dict = {
        "day": key,
        "scorer": served,
        "chosen_by": how,
        "why": why,
        "settings": dg.MetadataValue.json(
            {} if gate.verdict == NO_TEST_USERS else scorer_settings(state)
        ),
        "gate": gate.verdict,
        "gate_summary": gate.summary,
        "model_sha256": live.model_sha256 or "-",
    }
    if evaluated is not None and evaluated in results:
        metadata |= headline_metrics(results, evaluated)
        metadata["test_metrics"] = comparison_table(results, evaluated)
        metadata["evaluated_users"] = gate.evaluated_users
    else:
        metadata["test_metrics"] = "none: the day has no test users, nothing was scored"
    metadata |= {
        ROW_COUNT: int(counts["rows"]),
        "model_users": int(counts["model_users"]),
        "fallback_users": int(counts["fallback_users"]),
        "publication": live.publication,
        "published_at": live.published_at.isoformat(timespec="seconds") + "Z",
        "previous_live_day": shown.isoformat() if shown else "-",
    }
    recall = metadata.get("Recall@20")
    headline = f"{key} is live: {served} ({how}), gate {gate.verdict}" + (
        f", test Recall@20 {recall:.4f}" if isinstance(recall, float) else ""
    )
    if shown == day:
        return (
            dg.AssetObservation(
                LIVE_KEY, description=f"re-published: {headline}", metadata=metadata
            ),
            f"{key} re-published; it stays live ({served}, model {(live.model_sha256 or '-')[:12]})",
        )
    moved = "first live day" if shown is None else f"moved from {shown.isoformat()}"
    return (
        dg.AssetMaterialization(LIVE_KEY, description=headline, metadata=metadata),
        f"the live day moved to {key} ({moved}): {served}, {how}",
    )
