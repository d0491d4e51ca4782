"""The shared deployment as a platform team configures it, all at once: the warehouse a DuckLake
with its catalog in a real PostgreSQL server (tests/postgres_support.py) and its Parquet files
in an S3 bucket, the artifacts in the same S3 server (moto's, a real HTTP server:
tests/s3_support.py), every resource built the way the code server and run workers build them
(``assets.definitions.default_resources``: ``RECS_*`` in the environment over ``recs.toml``),
credentials only in the environment.

On it run the embedded pipeline's own checks (imported from tests/test_pipeline.py, which run
here against this module's ``pipeline``) and the shared warehouse's concurrency scenario
(tests/test_ducklake.py)."""

import json

import dagster as dg
import fsspec
import pytest

from assets.definitions import default_resources
from recs_pipeline.infra.artifacts import GATE, MODEL, PUBLISHED_MODEL, SPLIT
from recs_pipeline.infra.warehouse import connect_lake
from tests import test_pipeline
from tests.conftest import SMALL_LOG, TESTS_CONFIG
from tests.s3_support import REGION, S3_ENV
from tests.test_ducklake import GFCF, publish_two_days_while_reading
from tests.test_pipeline import DAY_1, DAY_2, ingest, run_chain

# Every test of test_pipeline.py runs here too, on this deployment's `pipeline` fixture, in
# test_pipeline's own order (later ones build on the models and days the earlier ones left).
globals().update({k: v for k, v in vars(test_pipeline).items() if k.startswith("test_")})

BUCKET = "recs-shared"
STORED = (SPLIT, MODEL, GATE, PUBLISHED_MODEL)


@pytest.fixture(scope="module")
def deployment(postgres_server, s3_server, small_landing, tmp_path_factory):
    """The deployment's configuration in this process's environment (and so in every process
    it starts): where the lake and the artifacts are, and the S3 server's credentials."""
    tmp = tmp_path_factory.mktemp("deployment")
    catalog_db = postgres_server.create_database("recs_lake")
    catalog = (
        f"postgres:dbname={catalog_db} host={postgres_server.host}"
        f" port={postgres_server.port} user={postgres_server.user}"
    )
    # The file ships with the image; what differs per environment, and every secret, is in
    # the environment. Its [ops] are the tests' own (tests/recs.toml: a quick model selection,
    # as in every other test's processes): without them a chain process started here (the
    # two-machine scenario's EARLIER day, which has no selection to reuse) searched for the
    # production budget, 5 minutes of the suite.
    config = tmp / "recs.toml"
    config.write_text(
        f'[resources.artifacts]\nroot = "s3://{BUCKET}/artifacts"\n\n'
        f'[resources.log_source]\nlanding_root = "{small_landing}"\n\n' + TESTS_CONFIG.read_text()
    )
    import s3fs

    # The session's S3 server (tests/conftest.py); this module's bucket is its own.
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            **S3_ENV,
            "AWS_ENDPOINT_URL": s3_server.endpoint,
            "RECS_CONFIG": str(config),
            "RECS_WAREHOUSE": str(tmp / "unused.duckdb"),
            "RECS_WAREHOUSE_CATALOG": catalog,
            "RECS_WAREHOUSE_DATA_PATH": f"s3://{BUCKET}/lake/",
        }.items():
            env.setenv(name, value)
        # s3fs caches its clients by their arguments, not the environment's endpoint.
        s3fs.S3FileSystem.clear_instance_cache()
        fsspec.filesystem("s3").mkdir(BUCKET, region_name=REGION)
        yield {"catalog": catalog, "tmp": tmp}
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def pipeline(deployment):
    """test_pipeline.py's fixture on the shared deployment: the whole log ingested, then the
    chain for two consecutive days."""
    resources = default_resources()
    assert resources["warehouse"].shared
    instance = dg.DagsterInstance.ephemeral()
    assert ingest(instance, resources, SMALL_LOG.start, SMALL_LOG.end).success
    results = {day: run_chain(instance, resources, day) for day in (DAY_1, DAY_2)}
    # What the two chains left in the bucket, before the imported tests train other models.
    store = resources["artifacts"].store()
    deployment["after_chain"] = {
        "partitions": {artifact: store.partitions(artifact) for artifact in STORED},
        "model": {day: store.stamp(MODEL, day).sha256 for day in store.partitions(MODEL)},
        "published": {
            day: store.stamp(PUBLISHED_MODEL, day).sha256
            for day in store.partitions(PUBLISHED_MODEL)
        },
    }
    return instance, resources, results


def test_everything_is_in_the_shared_stores_and_nothing_on_this_machine(pipeline, deployment):
    _, resources, _ = pipeline
    s3 = fsspec.filesystem("s3")
    parquet = s3.glob(f"{BUCKET}/lake/**/*.parquet")
    tables = {path.split("/")[2] + "." + path.split("/")[3] for path in parquet}
    assert {"raw.interactions", "serving.recommendations", "ml.metrics"} <= tables, tables
    with connect_lake(deployment["catalog"], read_only=True) as con:
        (stored,) = con.execute(
            "SELECT value FROM lake.options() WHERE option_name = 'data_path'"
        ).fetchone()
        assert stored == f"s3://{BUCKET}/lake/"
    # Every asset reads and writes its artifacts through the URL root: split, model, gate and
    # the published model (the evaluated one, byte for byte) in the bucket.
    store = resources["artifacts"].store()
    days = [DAY_1.isoformat(), DAY_2.isoformat()]
    assert store.location(MODEL, days[0]).startswith(f"s3://{BUCKET}/artifacts/")
    after_chain = deployment["after_chain"]
    for artifact in STORED:
        assert after_chain["partitions"][artifact] == days, artifact
    assert after_chain["published"] == after_chain["model"]
    assert not (deployment["tmp"] / "unused.duckdb").exists()
    assert resources["warehouse"].serving_path() is None


def test_two_machines_publish_different_days_while_an_application_reads(pipeline, deployment):
    """test_ducklake.py's scenario with the data on S3 and each process configured by the
    deployment's environment alone: DAY_2 is republished while an earlier day is published."""
    publish_two_days_while_reading(
        {"catalog": deployment["catalog"]},
        deployment["tmp"],
        lambda day: ["deployed-chain", day.isoformat(), json.dumps(GFCF)],
        latest_before=DAY_2,
    )
