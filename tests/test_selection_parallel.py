"""Model selection in the shared deployment (recs_pipeline/evaluation/selection.py ``study_storage``,
``parallel_trials``): the study in the instance's PostgreSQL database, its trials run by two Ray
workers at once, and a search killed part-way resuming from it.

Real components: a PostgreSQL server (tests/postgres_support.py, the session's; one database per
test, Dagster's instance tables created in it first by ``prepare_instance``, as the shared
deployment does) and a local Ray cluster of 2 CPUs, the session's (``ray_engine``, tests/conftest.py), which
tests/test_sharded.py shares."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from assets.platform.instance import postgres_version_rows, prepare_instance, shared_database_url
from recs_pipeline.evaluation import selection as selection_module
from recs_pipeline.evaluation.selection import (
    STUDY_SCHEMA,
    SelectionConfig,
    daily_selection,
    parallel_trials,
    select,
    shared_storage,
    study_storage,
)
from recs_pipeline.infra.artifacts import SELECTION, UrlArtifactStore
from recs_pipeline.infra.engine import Engine
from tests.test_selection import FILTERS, QUICK_TRAIN, community_graph

ray = pytest.importorskip("ray")
optuna = pytest.importorskip("optuna")

ROOT = Path(__file__).resolve().parents[1]
HERE = f"{socket.gethostname()}:{os.getpid()}"
DAY = "2026-03-05"


@pytest.fixture
def shared_database(postgres_server, monkeypatch, tmp_path):
    """A new database as the shared instance's: the environment every process of the shared
    deployment reads, and Dagster's tables created in it (prepare_instance). Returns the
    instance's database URL, as the asset layer passes it down."""
    database = postgres_server.create_database("selection")
    for name, value in postgres_server.environment(database).items():
        monkeypatch.setenv(name, value)
    prepare_instance(tmp_path / "dagster_home", "postgres")
    url = shared_database_url()
    assert url == (
        f"postgresql+psycopg2://{postgres_server.user}@{postgres_server.host}"
        f":{postgres_server.port}/{database}"
    )
    return url


def tables(postgres_server, url: str) -> dict[str, set[str]]:
    """The tables of the database ``url`` names, by schema."""
    database = url.rsplit("/", 1)[1].split("?")[0]
    with contextlib.closing(postgres_server.connect(database)) as con, con.cursor() as cursor:
        cursor.execute("SELECT table_schema, table_name FROM information_schema.tables")
        found: dict[str, set[str]] = {}
        for schema, table in cursor.fetchall():
            found.setdefault(schema, set()).add(table)
    return found


def test_the_study_lives_in_the_shared_database_else_beside_the_artifact(tmp_path, monkeypatch):
    location = str(tmp_path / "model_selection" / "2026-03-05" / "selection.json")
    monkeypatch.delenv("RECS_INSTANCE", raising=False)
    assert shared_database_url() is None  # the embedded instance: the journal, as before
    assert study_storage(location, None) == str(Path(location).parent / "study.journal")
    assert study_storage("s3://bucket/model_selection/2026-03-05/selection.json") is None
    # Built from parts, not written as one URL: no credentials in tracked files.
    url = "postgresql+psycopg2://recs:" + "secret" + "@db:5432/dagster"
    storage = study_storage(location, url)
    assert storage == f"{url}?options=-csearch_path%3D{STUDY_SCHEMA}"
    assert shared_storage(storage) and not shared_storage(study_storage(location))
    assert not shared_storage("sqlite:///study.db")  # one machine's file: trials stay here
    ray_2 = Engine(kind="ray", workers=2)
    assert parallel_trials(ray_2, storage) == 2
    assert parallel_trials(Engine(kind="ray", workers=1), storage) == 1
    assert parallel_trials(Engine(workers=2), storage) == 1  # local: one after another
    assert parallel_trials(ray_2, study_storage(location)) == 1  # a journal file
    assert parallel_trials(ray_2, None) == 1
    assert "secret" not in selection_module._printable(storage)


def test_two_ray_workers_run_the_trials_of_one_study_in_postgres(
    ray_engine, shared_database, postgres_server, tmp_path
):
    """model_selection's own call (daily_selection, given what the asset layer passes: the
    instance's database URL and the engine)."""
    store = UrlArtifactStore(tmp_path / "artifacts")
    config = SelectionConfig(candidates=FILTERS, trials=12, val_users=200)
    said: list[str] = []
    result, _ = daily_selection(
        store,
        DAY,
        community_graph(),
        config,
        QUICK_TRAIN,
        log=said.append,
        shared_database=shared_database,
        engine=ray_engine,
    )
    storage = study_storage(store.location(SELECTION, DAY), shared_database)
    name = f"selection-{DAY}-{selection_module._search_digest(config, community_graph())}"
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.trials
    assert not list((tmp_path / "artifacts").rglob("study.journal"))  # no file beside it
    # Every trial of both workers in the one study, the cap shared: 12, not 12 per worker.
    assert len(trials) == 12 == len(result.trials)
    assert sorted(t.number for t in trials) == list(range(12))
    assert all(t.state.name == "COMPLETE" for t in trials)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2 and HERE not in workers, workers
    assert {t.worker for t in result.trials} == workers
    # Each candidate's shipped defaults ran once, whichever worker took it from the queue.
    assert sum(t.user_attrs["params"] == {"alpha": 0.3, "k": 256} for t in trials) == 1
    # The champion is the study's best trial.
    best = study.best_trial
    assert (result.model, result.params, result.recall) == (
        best.params["model"],
        best.user_attrs["params"],
        best.value,
    )
    assert any("2 Ray workers run the trials of one study" in line for line in said)
    assert not any(postgres_server.user + ":" in line for line in said)
    # Optuna's tables in their own schema; Dagster's instance beside them is untouched (both
    # keep an alembic_version table: in one schema each would read the other's revision).
    found = tables(postgres_server, shared_database)
    assert {"studies", "trials", "alembic_version"} <= found[STUDY_SCHEMA]
    assert "trials" not in found["public"] and "runs" in found["public"]
    import dagster as dg

    with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        assert len(postgres_version_rows(instance)) == 1


def test_the_workers_share_the_time_budget(ray_engine, shared_database, tmp_path):
    budget = 5.0
    storage = study_storage(str(tmp_path / "selection.json"), shared_database)
    started = time.time()
    result = select(
        community_graph(),
        candidates=FILTERS,
        budget_seconds=budget,
        val_users=200,
        storage=storage,
        study_name="budget",
        engine=ray_engine,
        log=lambda _: None,
    )
    elapsed = time.time() - started
    # The trials the workers started. Each candidate's default is queued first; one that no
    # worker reached before the budget ended (on a loaded machine) stays WAITING, never started.
    study_trials = optuna.load_study(study_name="budget", storage=storage).trials
    waiting = [t.number for t in study_trials if t.state == optuna.trial.TrialState.WAITING]
    trials = [t for t in study_trials if t.number not in waiting]
    # No trial starts after the budget (which select counts from its own start, moments after
    # `started`): a worker looks at the time before each trial, so at most the one it looked
    # before the end starts after it. Its start is recorded once it is created in the study, a
    # moment later (more than a second, once, on a loaded 2-core machine), so a bound on the
    # time would depend on the load; a count does not. The search ends with the last trial (a
    # filter trial takes well under a second here; Ray hands the results back in moments).
    late = Counter(
        t.user_attrs["worker"] for t in trials if t.datetime_start.timestamp() > started + budget
    )
    assert all(n <= 1 for n in late.values()), late
    assert budget <= elapsed < budget + 10, elapsed
    assert len(trials) == len(result.trials) >= 1
    assert len(trials) + len(waiting) >= len(FILTERS)
    # A worker takes a queued trial before it asks the sampler for a new one: whatever still
    # waits comes after every trial that started.
    assert all(number > t.number for number in waiting for t in trials), waiting
    assert HERE not in {t.user_attrs["worker"] for t in trials}


KILLED_SEARCH = textwrap.dedent(
    """
    import sys

    from recs_pipeline.evaluation import selection
    from tests.test_selection import community_graph
    from recs_pipeline.training import TrainConfig

    selection.HEARTBEAT_SECONDS = 1
    # Training that outlasts the test: the kill lands inside the LightGCN trial.
    slow = TrainConfig(epochs=10_000, eval_every=1, batch_size=64, dim=16)
    selection.select(
        community_graph(), candidates=("popularity", "gfcf", "lightgcn"), budget_seconds=600,
        val_users=200, max_trials=8, train=slow, storage=sys.argv[1], study_name="killed",
        log=lambda line: print(line, flush=True),
    )
    """
)


def wait_for_running_training(storage: str, process, timeout: float = 90) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the search to kill ended by itself"
        with contextlib.suppress(KeyError):  # its second phase's study does not exist yet
            # Opened as select opens it: the schema may not exist yet either.
            opened = selection_module._storage(storage)
            trials = optuna.load_study(study_name="killed", storage=opened).trials
            if any(
                t.state.name == "RUNNING" and t.params.get("model") == "lightgcn" for t in trials
            ):
                return trials
        time.sleep(0.3)
    raise AssertionError("the search never started training LightGCN")


def test_a_killed_search_resumes_from_its_study_in_postgres(
    ray_engine, shared_database, tmp_path, monkeypatch
):
    storage = study_storage(str(tmp_path / "selection.json"), shared_database)
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_SEARCH, storage],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        before = wait_for_running_training(storage, process)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
    killed = next(t for t in before if t.state.name == "RUNNING")
    head = optuna.load_study(study_name="killed-filters", storage=storage).trials
    assert len(head) == 3  # the filters' phase: 40 % of the cap of 8
    # Its last heartbeat is over a second old before the search resumes (the grace period,
    # lowered from minutes for the test): the resumed search marks the killed trial failed.
    monkeypatch.setattr(selection_module, "STALE_AFTER_SECONDS", 1)
    time.sleep(2)
    result = select(
        community_graph(),
        candidates=("popularity", "gfcf", "lightgcn"),
        budget_seconds=300,
        val_users=200,
        max_trials=8,
        train=QUICK_TRAIN,
        storage=storage,
        study_name="killed",
        engine=ray_engine,
        log=lambda _: None,
    )
    tail = optuna.load_study(study_name="killed", storage=storage).trials
    # The cap counts the killed search's trials; the filters' phase was over and is not rerun.
    assert len(head) + len(tail) == 8 == len(result.trials)
    assert {t.number for t in result.trials} == set(range(8))
    assert [t.number for t in tail] == list(range(len(tail)))
    # What the killed search finished is kept as it was; its trial in training is failed.
    for old in before:
        if old.state.is_finished():
            assert tail[old.number].value == old.value
    assert tail[killed.number].state.name == "FAIL"
    failed = next(t for t in result.trials if t.number == len(head) + killed.number)
    assert failed.model == "lightgcn" and "stopped mid-trial" in failed.error
    resumed = [t for t in tail if t.number > max(o.number for o in before)]
    assert resumed and all(t.user_attrs["worker"] != HERE for t in resumed)
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in resumed)
