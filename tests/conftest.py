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

from recs_pipeline.synthetic import SyntheticLogSpec, write_landing_files
from recs_pipeline.warehouse import ensure_schema
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
        from recs_pipeline.engine import Engine

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
