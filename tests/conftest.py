"""Shared fixtures: a small synthetic landing log and pipeline resources in a temp folder."""

import contextlib
import datetime as dt
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest

# The tests never read the project's own config file (recs.toml, a deployment's defaults) but
# tests/recs.toml (LightGCN pinned, a quick model selection); a test that wants another config
# points RECS_CONFIG at its own, or sets it empty for none.
os.environ["RECS_CONFIG"] = str(Path(__file__).resolve().parent / "recs.toml")
# Nor the caller's choice of instance storage: SQLite unless a test selects PostgreSQL itself.
os.environ.pop("RECS_INSTANCE", None)
# Nor of warehouse: the DuckDB file unless a test attaches a DuckLake itself (test_ducklake.py).
os.environ.pop("RECS_WAREHOUSE_CATALOG", None)
os.environ.pop("RECS_WAREHOUSE_DATA_PATH", None)
# Ray, once a process has used a cluster, replaces its builtins.print (ray.experimental.tqdm_ray)
# with one that cannot be pickled by name: a process gang started after it (spawn pickles the
# training's default log, print) failed, in any test process where a Ray test had run first
# (test_engine.py before test_data_parallel.py, as make test's two processes may order them).
os.environ["RAY_TQDM_PATCH_PRINT"] = "0"

from recs_pipeline.data.synthetic import SyntheticLogSpec, write_landing_files
from recs_pipeline.infra.warehouse import ensure_schema
from resources import ArtifactStore, ComputeEngine, LogSource, Warehouse

# What RECS_CONFIG points at above, for a test that writes a config file of its own on it.
TESTS_CONFIG = Path(__file__).resolve().parent / "recs.toml"

SMALL_LOG = SyntheticLogSpec(
    start=dt.date(2026, 3, 1),
    days=16,
    n_users=500,
    n_items=250,
    n_communities=6,
    events_per_day=900,
    dirty_fraction=0.002,
    seed=7,
)


@pytest.fixture(scope="session")
def small_landing(tmp_path_factory):
    root = tmp_path_factory.mktemp("landing")
    write_landing_files(SMALL_LOG, root)
    return root


def make_resources(landing, tmp_path) -> dict:
    return {
        "warehouse": Warehouse(database=str(tmp_path / "warehouse.duckdb")),
        "artifacts": ArtifactStore(root=str(tmp_path / "artifacts")),
        "log_source": LogSource(landing_root=str(landing)),
        "engine": ComputeEngine(),
    }


@pytest.fixture
def con():
    """An in-memory warehouse with every table and view created."""
    connection = duckdb.connect(":memory:")
    ensure_schema(connection)
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session (``tests/postgres_support.py``): started on a
    loopback port in a temporary folder, stopped by PID at the end; one database per test."""
    from tests.postgres_support import PostgresServer

    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One S3 HTTP server for the session (moto's, ``tests/s3_support.py``), stopped by PID at
    the end. Each module that uses it works in a bucket of its own, and each test under a prefix
    of its own, so that nothing one test writes is read by another."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    from tests.s3_support import S3Server

    with S3Server(tmp_path_factory.mktemp("moto") / "server.log") as server:
        yield server


class RaySession:
    """One local Ray cluster of 2 worker slots shared by the tests that only run work on a
    cluster (``ray_engine``): started by the first of them, stopped at the end of the session
    (``ray.shutdown`` ends the processes it started). A test that needs this process to have no
    cluster (one its step starts and stops, or none at all) asks for ``no_ray_session``: the
    shared one is stopped first, and the next ``ray_engine`` starts it again."""

    def __init__(self) -> None:
        from recs_pipeline.infra.engine import Engine

        self.engine = Engine(kind="ray", workers=2, num_cpus=2)
        self._session = None

    def start(self):
        import ray

        if self._session is None or not ray.is_initialized():
            self.stop()
            self._session = self.engine.session()
            self._session.__enter__()
        return self.engine

    def stop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.__exit__(None, None, None)


@pytest.fixture(scope="session")
def ray_session():
    session = RaySession()
    yield session
    session.stop()


@pytest.fixture
def ray_engine(ray_session):
    """The session's local Ray cluster (``RaySession``): ``Engine(kind="ray", workers=2,
    num_cpus=2)``, inside whose session every ``Engine.session()`` of this process joins it."""
    pytest.importorskip("ray")
    return ray_session.start()


@pytest.fixture
def no_ray_session(ray_session):
    """No Ray cluster in this process while the test runs (``RaySession``)."""
    ray_session.stop()


@pytest.fixture(scope="session")
def two_day_chain(small_landing, tmp_path_factory):
    """The whole small log ingested in one range run, then the chain for its last two days
    (``tests/test_pipeline.py``: ``ingest``, ``run_chain`` with ``RUN_CONFIG``), built once for
    the session in a folder of its own: the warehouse, its serving export and the artifacts, and
    a SQLite Dagster instance in ``dagster_home/``. Tests only read it; a module that builds on
    it works on a copy (:func:`copy_chain`). Its ``results`` are the two chain runs'."""
    import dagster as dg

    from tests.test_pipeline import DAY_1, DAY_2, ingest, run_chain

    root = tmp_path_factory.mktemp("two_day_chain")
    resources = make_resources(small_landing, root)
    (root / "dagster_home").mkdir()
    with dg.DagsterInstance.local_temp(str(root / "dagster_home")) as instance:
        assert ingest(instance, resources, SMALL_LOG.start, SMALL_LOG.end).success
        results = {day: run_chain(instance, resources, day) for day in (DAY_1, DAY_2)}
        yield SimpleNamespace(
            root=root, landing=small_landing, instance=instance, resources=resources,
            results=results,
        )  # fmt: skip


@contextlib.contextmanager
def copy_chain(chain, dest: Path):
    """``(instance, resources)`` of a copy of ``chain`` (``two_day_chain``) in ``dest``: the same
    runs, materialisations, tables and artifacts, for a module whose tests write to them."""
    import dagster as dg

    shutil.copytree(chain.root, dest, dirs_exist_ok=True)
    with dg.DagsterInstance.local_temp(str(dest / "dagster_home")) as instance:
        yield instance, make_resources(chain.landing, dest)


# The tests `make test-fast` leaves out (`-m "not slow"`; `make test` and CI run every test):
# each took over ~18 s (a whole module: its shared set-up and tests together over a minute) in
# `pytest --durations` of the whole suite on a loaded 2-core machine. They start real deployments
# (a webserver and daemon, PostgreSQL, S3, Ray), kill processes mid-write, or run the chain in
# fresh interpreters. A module, or a test as ``module.py::name`` (every parametrisation).
SLOW = {
    "test_daemon_backfill.py",
    "test_shared_deployment.py",
    "test_cli.py::test_backfill_wait_prints_verdicts_a_gate_block_is_a_plain_reason_status_says_it",
    "test_cli.py::test_the_ui_lists_the_demos_runs_on_the_jobs_page_as_the_loaded_version",
    "test_console.py::test_main_job_prints_progress_and_results_without_noise",
    "test_data_parallel_pipeline.py::test_chain_with_two_ray_workers_passes_the_gate_with_the_single_process_model",
    "test_dead_runs.py::test_a_run_waiting_for_the_slot_of_a_killed_run_gets_it",
    "test_dead_runs.py::test_the_daemons_run_monitoring_fails_a_killed_run_and_frees_its_slot",
    "test_ducklake.py::test_processes_of_one_machine_take_turns_on_a_duckdb_catalog_file",
    "test_ducklake.py::test_two_machines_publish_different_days_while_an_application_reads",
    "test_engine.py::test_a_session_without_address_starts_its_own_cluster",
    "test_executor.py::test_a_step_process_runs_with_its_share_of_the_cores",
    "test_executor.py::test_steps_are_forked_from_the_primed_server_and_spawn_restores_the_default",
    "test_faults.py::test_ingestion_killed_mid_write_keeps_old_partitions_and_the_next_run_completes",
    "test_faults.py::test_publication_killed_between_commit_and_export_converges_at_the_next_one",
    "test_faults.py::test_publication_killed_mid_write_keeps_published_lists_and_the_next_run_completes",
    "test_instance.py::test_dagsters_own_commands_started_together_create_the_instance_once",
    "test_instance.py::test_entry_points_started_together_create_a_postgres_instance_once",
    "test_main.py::test_demo_and_own_logs_leave_the_landing_root_byte_for_byte_unchanged",
    "test_pool_slots.py::test_each_slot_of_a_limit_1_pool_is_claimed_once_on_sqlite",
    "test_serving_files.py::test_readers_see_whole_published_days_while_the_pipeline_writes",
    "test_sharded.py::test_the_chain_on_ray_publishes_what_the_local_chain_publishes",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.path.name
        if module in SLOW or f"{module}::{item.originalname}" in SLOW:
            item.add_marker(pytest.mark.slow)


# `make test` runs the suite in two processes (pytest-xdist, `-n 2 --dist loadfile`): much of it
# waits (for servers to start, subprocesses to import, daemons to poll) rather than computes.
# Each module is one unit of work, run whole and in order by one process, so that its module
# fixtures are set up once; except for the groups below. Session fixtures (PostgreSQL, S3, Ray)
# are per process: each process starts its own when one of its tests first asks for it.
XDIST_GROUPS = {
    # Both read the session's `two_day_chain`: built once, where they run.
    "test_pipeline.py": "two_day_chain",
    "test_ui_metadata.py": "two_day_chain",
    # Both use the session's Ray cluster (`ray_session`): started once, not once per process.
    "test_sharded.py": "ray_session",
    "test_selection_parallel.py": "ray_session",
}
# Modules whose module fixture is parametrised: each parameter's tests are a unit of their own
# (test_daemon_backfill.py: each storage's deployment and backfill, side by side).
XDIST_SPLIT = {"test_daemon_backfill.py"}
# The longest units first: one started last would leave the other process idle at the end.
# By their time in `pytest --durations=0` of the whole suite; every other module after them.
XDIST_LONGEST_FIRST = (
    "test_shared_deployment.py",
    "two_day_chain",
    "test_daemon_backfill.py",
    "test_cli.py",
    "test_data_parallel_pipeline.py",
    "test_ducklake.py",
    "test_faults.py",
    "test_dead_runs.py",
    "test_project_config.py",
    "ray_session",
    "test_executor.py",
    "test_instance.py",
    "test_serving_files.py",
    "test_disk_full.py",
    "test_selection.py",
    "test_main.py",
    "test_ui_graphql.py",
    "test_security.py",
    "test_data_parallel.py",
    "test_pool_slots.py",
    "test_integrity.py",
    "test_engine.py",
)


def pytest_configure(config):
    """In each of the suite's processes (``PYTEST_XDIST_WORKER_COUNT``, pytest-xdist's), torch
    computes on its share of the cores: two processes of two math threads each on a 2-core
    machine made an in-process training 5-10 times slower than alone (OpenMP threads waiting for
    each other), as the suite's load did before. The processes that tests start are unchanged."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, torch.get_num_threads() // workers))


def xdist_unit(nodeid: str) -> str:
    """The unit of work (``XDIST_*``) a test belongs to, from its id alone (``tests/m.py::t[p]``):
    the controlling process schedules by the ids its workers collected."""
    module = nodeid.split("::")[0].rsplit("/", 1)[-1]
    unit = XDIST_GROUPS.get(module, module)
    if module in XDIST_SPLIT and nodeid.endswith("]"):
        unit += nodeid[nodeid.rindex("[") :]
    return unit


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: unknown without it
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` with the units and order above."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    rank = {name: i for i, name in enumerate(XDIST_LONGEST_FIRST)}

    class UnitScheduling(LoadScopeScheduling):
        ordered = False

        def _split_scope(self, nodeid: str) -> str:
            return xdist_unit(nodeid)

        def _assign_work_unit(self, node) -> None:
            # The queue is whole before the first unit is handed out.
            if not self.ordered:
                units = sorted(
                    self.workqueue.items(), key=lambda u: rank.get(u[0].split("[")[0], len(rank))
                )
                self.workqueue.clear()
                self.workqueue.update(units)
                self.ordered = True
            super()._assign_work_unit(node)

    return UnitScheduling(config, log)
