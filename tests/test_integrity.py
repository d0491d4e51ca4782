"""Trust under real operation (issue 11): nothing wrong is published, artifacts never execute
code, a partition's runs never mix their data, and a day without test users still gets lists.

Every test drives the real assets (dg.materialize / a job with an ephemeral instance) on the
small synthetic log; the artifacts are real files in the real store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import pickle
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
import yaml

from assets.definitions import ALL_ASSETS
from assets.ingest import raw_interactions
from assets.lib.partitions import range_tags
from tests.conftest import SMALL_LOG, make_resources

PROJECT = Path(__file__).resolve().parents[1]
DAY = SMALL_LOG.end
PREVIOUS = DAY - dt.timedelta(days=1)
K = 10
SPLIT = {"interaction_split": {"config": {"window_days": 14, "test_days": 2}}}
GOOD_TRAIN = {"epochs": 12, "batch_size": 2048, "eval_every": 2}
# Learning rate 0 and no warm start: the model keeps its random initialisation (the gate fails).
BROKEN_TRAIN = {"epochs": 1, "learning_rate": 0.0, "eval_every": 1, "warm_start": False}
FAST_TRAIN = {"epochs": 2, "dim": 16, "layers": 1, "batch_size": 4096, "eval_every": 1}


def config(train: dict | None = None, **ops) -> dict:
    cfg = {**SPLIT, "recommendations": {"config": {"k": K}}, **ops}
    if train is not None:
        cfg["trained_model"] = {"config": train}
    return {"ops": cfg}


def only(run_config: dict, selection: list[str]) -> dict:
    """Run config limited to the selected assets (Dagster rejects config of unselected ops)."""
    return {"ops": {op: c for op, c in run_config["ops"].items() if op in selection}}


def materialize(instance, resources, selection, key=DAY, run_config=None, raise_on_error=False):
    return dg.materialize(
        ALL_ASSETS,
        selection=selection,
        partition_key=key.isoformat(),
        instance=instance,
        resources=resources,
        run_config=only(run_config or config(), selection),
        raise_on_error=raise_on_error,
    )


def ingest(instance, resources, start: dt.date, end: dt.date):
    assert dg.materialize(
        [raw_interactions],
        instance=instance,
        resources=resources,
        tags=range_tags(start, end),
    ).success


def failure_messages(result) -> str:
    return "\n".join(
        str(event.event_specific_data.error)
        for event in result.all_events
        if event.event_type_value == "STEP_FAILURE"
    )


def published(resources, day: dt.date) -> list[tuple]:
    with duckdb.connect(resources["warehouse"].database, read_only=True) as con:
        return con.execute(
            "SELECT user_id, item_id, rank, model FROM serving.recommendations"
            " WHERE as_of_date = ? ORDER BY user_id, rank",
            [day],
        ).fetchall()


def latest_day(resources) -> list[tuple]:
    with duckdb.connect(resources["warehouse"].database, read_only=True) as con:
        return con.execute(
            "SELECT DISTINCT as_of_date FROM serving.latest_recommendations"
        ).fetchall()


CHAIN = [a.key.to_user_string() for a in ALL_ASSETS if a is not raw_interactions]


@pytest.fixture(scope="module")
def chain(small_landing, tmp_path_factory):
    """The whole log ingested and day DAY's chain run once, passing the gate."""
    tmp = tmp_path_factory.mktemp("integrity")
    resources = make_resources(small_landing, tmp)
    instance = dg.DagsterInstance.ephemeral()
    ingest(instance, resources, SMALL_LOG.start, SMALL_LOG.end)
    result = materialize(instance, resources, CHAIN, run_config=config(GOOD_TRAIN))
    assert result.success, failure_messages(result)
    return instance, resources


# --- finding 1: the quality gate cannot be bypassed ------------------------------------------


def test_publication_refuses_a_model_that_has_not_passed_the_gate(chain):
    """A retrained model.pt (here an untrained one) is not published by materialising
    recommendations alone: neither before it is evaluated nor after it failed the gate."""
    instance, resources = chain
    before = published(resources, DAY)
    assert before and latest_day(resources) == [(DAY,)]

    retrained = materialize(instance, resources, ["trained_model"], run_config=config(BROKEN_TRAIN))
    assert retrained.success, failure_messages(retrained)
    alone = materialize(instance, resources, ["recommendations"])
    assert not alone.success
    assert "quality gate" in failure_messages(alone), failure_messages(alone)
    assert published(resources, DAY) == before

    evaluated = materialize(instance, resources, ["model_evaluation"])
    assert not evaluated.success  # the blocking gate failed
    again = materialize(instance, resources, ["recommendations"])
    assert not again.success
    assert "failed the quality gate" in failure_messages(again), failure_messages(again)
    assert published(resources, DAY) == before

    # A good model again, evaluated: publication alone is allowed (the gate names its model).
    assert materialize(
        instance, resources, ["trained_model", "model_evaluation"], run_config=config(GOOD_TRAIN)
    ).success
    assert materialize(instance, resources, ["recommendations"]).success


# --- finding 5: artifacts never execute code -------------------------------------------------


class Planted:
    """Unpickling this object runs code: it writes the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"model": "lightgcn", "payload": Planted(marker)}))


def plant_with_valid_checksum(path: Path, marker: Path, run_id: str | None = None) -> None:
    """The planted pickle inside a well-formed artifact header (correct size and sha256): the
    checksum guards against truncation and accidents, the safe loader against code."""
    payload = pickle.dumps({"model": "lightgcn", "payload": Planted(marker)})
    asset, partition, name = path.parts[-3:]
    header = {
        "format": "recs-artifact/1",
        "encoding": "torch",
        "asset": asset,
        "partition": partition,
        "name": name,
        "run_id": run_id,
        "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    path.write_bytes(json.dumps(header, sort_keys=True).encode() + b"\n" + payload)


@pytest.mark.parametrize("planter", [plant, plant_with_valid_checksum])
def test_a_pickle_planted_as_the_model_never_runs_during_evaluation(chain, tmp_path, planter):
    instance, resources = chain
    model = Path(resources["artifacts"].root) / "trained_model" / DAY.isoformat() / "model.pt"
    good = model.read_bytes()
    marker = tmp_path / "marker"
    try:
        planter(model, marker)
        result = materialize(instance, resources, ["model_evaluation"])
        assert not marker.exists()
        assert not result.success
        assert "trained_model/" + DAY.isoformat() + "/model.pt" in failure_messages(result)
    finally:
        model.write_bytes(good)


def test_planted_warm_start_and_progress_files_never_run(chain, tmp_path):
    """trained_model loads D-1's model (warm start) and its own interrupted progress
    (resume) without being asked: a pickle planted there is refused, training starts cold."""
    instance, resources = chain
    root = Path(resources["artifacts"].root)
    assert materialize(
        instance, resources, ["interaction_split", "interaction_graph"], key=PREVIOUS
    ).success
    model = root / "trained_model" / DAY.isoformat() / "model.pt"
    good = model.read_bytes()
    marker = tmp_path / "marker"
    plant(root / "trained_model" / PREVIOUS.isoformat() / "model.pt", marker)
    plant(root / "trained_model" / DAY.isoformat() / "progress.pt", marker)
    try:
        train = {**FAST_TRAIN, "warm_start": True, "resume": True}
        result = materialize(instance, resources, ["trained_model"], run_config=config(train))
        assert not marker.exists()
        assert result.success, failure_messages(result)
        logs = [r.user_message for r in instance.all_logs(result.run_id)]
        assert any("no warm start" in line and "refused" in line for line in logs), logs
        assert any("progress" in line and "refused" in line for line in logs), logs
    finally:
        shutil.rmtree(root / "trained_model" / PREVIOUS.isoformat(), ignore_errors=True)
        model.write_bytes(good)


def test_a_truncated_or_tampered_artifact_is_refused_with_a_clear_error(tmp_path):
    import torch

    from recs_pipeline.infra.artifacts import MODEL, ArtifactError, UrlArtifactStore

    store = UrlArtifactStore(tmp_path, run_id="run-1")
    store.put(MODEL, "2026-03-01", {"w": torch.arange(1000.0)})
    path = Path(store.location(MODEL, "2026-03-01"))
    assert torch.equal(store.get(MODEL, "2026-03-01")["w"], torch.arange(1000.0))
    whole = path.read_bytes()
    path.write_bytes(whole[:-100])
    with pytest.raises(ArtifactError, match="truncated"):
        store.get(MODEL, "2026-03-01")
    tampered = bytearray(whole)
    tampered[-50] ^= 0xFF
    path.write_bytes(bytes(tampered))
    with pytest.raises(ArtifactError, match="checksum"):
        store.get(MODEL, "2026-03-01")
    # A file copied from another partition is refused too: the header names where it belongs.
    path.write_bytes(whole)
    other = Path(store.location(MODEL, "2026-03-02"))
    other.parent.mkdir(parents=True)
    other.write_bytes(whole)
    with pytest.raises(ArtifactError, match="trained_model/2026-03-01/model.pt"):
        store.get(MODEL, "2026-03-02")


# --- finding 4: two runs of one partition never mix their data ------------------------------


def test_at_most_one_queued_run_per_partition(tmp_path):
    """The project instance's run queue starts one run per partition at a time."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(PROJECT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    assert {
        "key": "dagster/partition",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    } in [dict(limit) for limit in limits], limits
    raw = yaml.safe_load((PROJECT / "dagster_home" / "dagster.yaml").read_text())
    assert raw["concurrency"]["runs"]["max_concurrent_runs"] >= 2  # other partitions still run


def test_a_run_whose_upstream_was_rewritten_by_another_run_fails_instead_of_mixing(chain):
    """Run A materialises interaction_split (14 days); before its interaction_graph step, run B
    of the same day rewrites the split with a 7-day window (a CLI run bypasses the queue). A
    must fail with a clear message instead of building its graph from B's split."""
    instance, resources = chain
    interleaved: list = []

    @dg.success_hook
    def second_run_splits_the_same_day(context):
        if context.op.name == "interaction_split" and not interleaved:
            interleaved.append(
                materialize(
                    instance,
                    resources,
                    ["interaction_split"],
                    run_config={
                        "ops": {"interaction_split": {"config": {"window_days": 7, "test_days": 2}}}
                    },
                )
            )

    job = dg.define_asset_job(
        "run_a",
        selection=["interaction_split", "interaction_graph"],
        partitions_def=ALL_ASSETS[1].partitions_def,
        hooks={second_run_splits_the_same_day},
    )
    defs = dg.Definitions(assets=ALL_ASSETS, jobs=[job], resources=resources)
    result = defs.resolve_job_def("run_a").execute_in_process(
        instance=instance,
        partition_key=DAY.isoformat(),
        run_config=only(config(), ["interaction_split", "interaction_graph"]),
        raise_on_error=False,
    )
    assert interleaved and interleaved[0].success
    assert not result.success
    message = failure_messages(result)
    assert "interaction_split" in message and interleaved[0].run_id in message, message
    # Restore the day's 14-day split and graph for the tests that follow.
    assert materialize(instance, resources, ["interaction_split", "interaction_graph"]).success


# --- finding 8: a day without test users -----------------------------------------------------


@pytest.fixture
def new_users_only_landing(small_landing, tmp_path) -> Path:
    """The small log, but on the test days (the last two) every user is new."""
    landing = tmp_path / "landing"
    shutil.copytree(small_landing, landing)
    for day in (DAY, PREVIOUS):
        for path in (landing / day.isoformat()).glob("*.csv"):
            frame = pl.read_csv(path, infer_schema=False)
            frame.with_columns(("new-" + pl.col("user_id")).alias("user_id")).write_csv(path)
    return landing


def test_a_day_without_test_users_publishes_the_popularity_fallback(
    new_users_only_landing, tmp_path
):
    resources = make_resources(new_users_only_landing, tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    ingest(instance, resources, DAY - dt.timedelta(days=13), DAY)
    result = materialize(instance, resources, CHAIN, run_config=config(FAST_TRAIN))
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert "no test users" in (checks["beats_popularity"].description or ""), checks
    assert "no test users" in (checks["beats_every_baseline"].description or ""), checks
    assert result.success, failure_messages(result)
    rows = published(resources, DAY)
    assert rows and {row[3] for row in rows} == {"popularity"}
    assert latest_day(resources) == [(DAY,)]
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "recommendations"
    ]
    metadata = event.event_specific_data.materialization.metadata
    assert metadata["fallback"].value == "popularity: no test users on this day", metadata
