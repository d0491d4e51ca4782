"""What is live (issue 28, "The UI answers 'what is live and is it good' with the last run's day",
findings 1 and 4; issue 25, item 6): ``live_recommendations`` moves only when a publication makes
a newer day live, never for a backfill or re-run of an older day, and says which scorer serves,
how it was chosen, the gate's verdict, the model's checksum and the test metrics beside every
baseline's; a gate stop fails the step with the verdict's sentence, not a stack trace.

The chain runs on the small log through dg.materialize with an ephemeral instance; the tests
below run in order on one history: day 1 goes live (model selection's champion), day 2 goes live
(GF-CF pinned), day 1 is re-run, day 1 fails the gate, day 2 is re-published.
"""

import dagster as dg
import pytest

from assets.live import LIVE_KEY, how_chosen
from recs_pipeline.evaluation.gate import FAILED, NO_TEST_USERS, PASSED, GateResult
from recs_pipeline.evaluation.selection import Selection, Trial
from recs_pipeline.infra.artifacts import MODEL, PUBLISHED_MODEL
from tests.conftest import SMALL_LOG, make_resources
from tests.test_pipeline import DAY_1, DAY_2, RUN_CONFIG, connect, ingest, run_chain

SELECTED = {
    "ops": {
        **RUN_CONFIG["ops"],
        "model_selection": {
            "config": {"candidates": ["popularity", "gfcf", "dnfilter"], "trials": 3}
        },
        "trained_model": {"config": {"model": None}},
    }
}


def pinned(model: str) -> dict:
    return {"ops": {**RUN_CONFIG["ops"], "trained_model": {"config": {"model": model}}}}


@pytest.fixture(scope="module")
def history(small_landing, tmp_path_factory):
    """The log ingested; day 1's chain with model selection's champion, then day 2's with GF-CF
    pinned: each makes a newer day live."""
    resources = make_resources(small_landing, tmp_path_factory.mktemp("live"))
    instance = dg.DagsterInstance.ephemeral()
    assert ingest(instance, resources, SMALL_LOG.start, SMALL_LOG.end).success
    runs = {
        DAY_1: run_chain(instance, resources, DAY_1, SELECTED),
        DAY_2: run_chain(instance, resources, DAY_2, pinned("gfcf")),
    }
    for day, run in runs.items():
        assert run.success, day
    return instance, resources, runs


def live_materializations(instance) -> list[dict]:
    """The live asset's materializations, oldest first: (timestamp, metadata) of each."""
    records = instance.fetch_materializations(LIVE_KEY, limit=100, ascending=True).records
    return [(r.timestamp, dict(r.asset_materialization.metadata)) for r in records]


def live_observations(instance) -> list[dict]:
    records = instance.fetch_observations(LIVE_KEY, limit=100, ascending=True).records
    return [dict(r.asset_observation.metadata) for r in records]


def published_metadata(result) -> dict:
    """recommendations' materialization in ``result`` (its step may report the live asset's
    too)."""
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("recommendations")
    ]
    return event.materialization.metadata


def values(metadata: dict) -> dict:
    return {label: entry.value for label, entry in metadata.items()}


def publication(resources, day) -> tuple[str, str]:
    with connect(resources) as con:
        return con.execute(
            "SELECT publication, model_sha256 FROM serving.publications WHERE as_of_date = ?",
            [day],
        ).fetchone()


def test_each_day_that_goes_live_is_one_materialization_saying_what_serves(history):
    instance, resources, runs = history
    shown = [values(metadata) for _, metadata in live_materializations(instance)]
    assert [m["day"] for m in shown] == [DAY_1.isoformat(), DAY_2.isoformat()]
    first, live = shown
    # Day 1: model selection's champion (a training-free candidate here).
    champion = runs[DAY_1].asset_materializations_for_node("model_selection")[0]
    assert first["scorer"] == champion.metadata["champion"].value
    assert first["chosen_by"] == "model_selection" and "validation Recall@20" in first["why"]
    assert first["previous_live_day"] == "-"
    # Day 2: GF-CF pinned, the gate passed, the published model's checksum and metrics.
    assert (live["scorer"], live["chosen_by"], live["gate"]) == ("gfcf", "pinned", PASSED)
    assert live["previous_live_day"] == DAY_1.isoformat()
    assert "pinned by the run config" in live["why"] and live["gate_summary"].startswith("passed")
    store = resources["artifacts"].store()
    assert live["settings"] == store.get(PUBLISHED_MODEL, DAY_2.isoformat())["params"]
    publication_id, sha256 = publication(resources, DAY_2)
    assert (live["publication"], live["model_sha256"]) == (publication_id, sha256)
    published = published_metadata(runs[DAY_2])
    assert published["model_sha256"].value == sha256
    assert published["live"].value == "yes: this day is live"
    with connect(resources) as con:
        recall = dict(
            con.execute(
                """SELECT model, value FROM ml.metrics WHERE as_of_date = ? AND k = 20
                   AND metric = 'recall' AND model_sha256 = ?""",
                [DAY_2, sha256],
            ).fetchall()
        )
        rows = con.execute("SELECT count(*) FROM serving.latest_recommendations").fetchone()[0]
    assert live["Recall@20"] == round(recall["gfcf"], 4) and live["dagster/row_count"] == rows
    baselines = sorted(set(recall) - {"gfcf"})
    assert baselines == ["popularity"]  # tests/recs.toml: popularity and the model
    assert live["popularity_recall@20"] == round(recall["popularity"], 4)
    assert live["lift_vs_popularity_recall@20_%"] == pytest.approx(
        (recall["gfcf"] / recall["popularity"] - 1) * 100, abs=0.01
    )
    assert list(live)[:2] == ["day", "scorer"]
    table = {r.data["metric"]: r.data for r in live["test_metrics"].records}
    assert table["recall@20"]["model"] == live["Recall@20"]


def test_a_rerun_of_an_older_day_neither_moves_nor_repaints_the_live_asset(history):
    instance, resources, _ = history
    before = live_materializations(instance)
    rerun = run_chain(instance, resources, DAY_1, pinned("dnfilter"))
    assert rerun.success
    published = published_metadata(rerun)
    assert published["live"].value == (
        f"{DAY_1.isoformat()} published; the live day stays {DAY_2.isoformat()}"
    )
    assert not [e for e in rerun.all_events if e.asset_key == LIVE_KEY], (
        "an older day's publication reported on the live asset"
    )
    assert live_materializations(instance) == before
    assert live_observations(instance) == []


def test_a_gate_stop_fails_the_step_with_the_verdicts_sentence(history):
    instance, resources, _ = history
    before = live_materializations(instance)
    stopped = run_chain(instance, resources, DAY_1, pinned("popularity"))
    assert not stopped.success
    (failure,) = [
        e.event_specific_data for e in stopped.all_events if e.event_type_value == "STEP_FAILURE"
    ]
    assert stopped.failure_data_for_node("model_evaluation") is not None
    assert failure.error.cls_name == "Failure", failure.error  # not a GateError's stack trace
    user = failure.user_failure_data
    sha256 = resources["artifacts"].store().stamp(MODEL, DAY_1.isoformat()).sha256
    assert user.description.startswith(f"popularity (model.pt {sha256[:12]}) ")
    assert f"failed the quality gate of {DAY_1.isoformat()}: Recall@20 " in user.description
    assert user.description.endswith(
        "so nothing is published for the day and the last published day stays live"
    )
    metadata = values(user.metadata)
    assert metadata["verdict"] == FAILED and metadata["model"] == "popularity"
    assert f"{metadata['model_recall@20']:.4f}" in user.description
    assert live_materializations(instance) == before


def test_republishing_the_live_day_is_an_observation_not_a_move(history):
    """A re-run of the live day itself changes what is served (here another model): the live
    asset shows it as an observation, and its materializations (what freshness counts) stay."""
    instance, resources, _ = history
    before = live_materializations(instance)
    again = run_chain(instance, resources, DAY_2, pinned("dnfilter"))
    assert again.success
    assert live_materializations(instance) == before
    (observed,) = [values(m) for m in live_observations(instance)]
    _, sha256 = publication(resources, DAY_2)
    assert (observed["day"], observed["scorer"], observed["model_sha256"]) == (
        DAY_2.isoformat(),
        "dnfilter",
        sha256,
    )
    assert sha256 != values(before[-1][1])["model_sha256"]


# --- how the served scorer was chosen -------------------------------------------------------


def gate(verdict: str = PASSED, model: str = "gfcf") -> GateResult:
    return GateResult(verdict, model, "0" * 64, 0.3, 0.2, 100)


def selection(model: str, recall: float, *others: tuple[str, float]) -> Selection:
    trials = [Trial(0, model, {}, recall, recall, "COMPLETE", 1.0)] + [
        Trial(i + 1, name, {}, score, score, "COMPLETE", 1.0)
        for i, (name, score) in enumerate(others)
    ]
    return Selection(model, {}, recall, recall, 20, 300, trials, 4.0)


def test_a_baseline_that_beat_the_trained_models_on_validation_says_so():
    state = {"model": "gfcf", "chosen_by": "model_selection"}
    beat = selection("gfcf", 0.31, ("lightgcn", 0.25), ("popularity", 0.1))
    how, why = how_chosen("gfcf", state, gate(), beat)
    assert how == "baseline" and "lightgcn 0.2500" in why and "0.3100" in why
    # Among training-free candidates only, the champion is model selection's choice.
    how, why = how_chosen("gfcf", state, gate(), selection("gfcf", 0.31, ("popularity", 0.1)))
    assert how == "model_selection" and why.startswith("gfcf chosen")
    how, _ = how_chosen("lightgcn", {"model": "lightgcn", "chosen_by": "model_selection"},
                        gate(model="lightgcn"), selection("lightgcn", 0.3, ("gfcf", 0.2)))  # fmt: skip
    assert how == "model_selection"


def test_pinned_default_and_fallback_scorers_say_so():
    assert how_chosen("mf", {"model": "mf", "chosen_by": "run config"}, gate(), None)[0] == "pinned"
    how, why = how_chosen("mf", {"model": "mf", "chosen_by": "default"}, gate(), None)
    assert how == "default" and "no model_selection" in why
    how, why = how_chosen("popularity", {"model": "mf"}, gate(NO_TEST_USERS), None)
    assert how == "fallback" and "no test users" in why
