"""The shared warehouse: DuckLake on a real PostgreSQL catalog (tests/postgres_support.py) with
the Parquet files in a folder, as several machines would use it."""

import datetime as dt
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from assets.definitions import ALL_ASSETS
from assets.features import interaction_graph, interaction_split
from recs_pipeline.infra.warehouse import (
    ConflictRetries,
    WarehouseConflict,
    WarehouseLockTimeout,
    conflict_retries,
    connect_lake,
    ensure_schema,
    replace_partition,
    transaction,
)
from recs_pipeline.schema import PARTITION_COLUMN, TABLES
from resources import ArtifactStore, ComputeEngine, LogSource, Warehouse
from tests.conftest import SMALL_LOG
from tests.test_pipeline import DAY_1, DAY_2, RUN_CONFIG, K, ingest, run_chain, snapshot

ROOT = Path(__file__).resolve().parent.parent
# A day retrained and republished beside DAY_2 in the concurrency test: neither warm-starts from
# the other's model (warm starts read the day before's).
EARLIER = DAY_1 - dt.timedelta(days=3)
# The chain with the training-free model: every warehouse write of the trained chain (split, id
# maps, metrics, published lists) in a fraction of its time; test_pipeline.py trains.
GFCF = {"ops": {**RUN_CONFIG["ops"], "trained_model": {"config": {"model": "gfcf"}}}}


def lake_of(server, tmp_path: Path) -> dict:
    """A new lake: its own PostgreSQL database as the catalog, its own data folder."""
    db = server.create_database("lake")
    return {
        "catalog": f"postgres:dbname={db} host={server.host} port={server.port} user={server.user}",
        "data_path": str(tmp_path / "lake-data"),
    }


def snapshots(con) -> int:
    return con.execute("SELECT count(*) FROM lake.snapshots()").fetchone()[0]


INDEX_ROWS = "SELECT CAST(? AS DATE), 'u' || x, x::INTEGER FROM range(?) t(x)"


@pytest.fixture
def lake(postgres_server, tmp_path):
    return lake_of(postgres_server, tmp_path)


@pytest.fixture
def two_writers(lake):
    """Two connections to one new lake, as two machines would have."""
    first = connect_lake(lake["catalog"], lake["data_path"])
    ensure_schema(first)
    second = connect_lake(lake["catalog"], lake["data_path"])
    yield first, second
    first.close()
    second.close()


def test_a_commit_that_conflicts_is_replayed_whole(two_writers, caplog):
    first, second = two_writers
    caplog.set_level(logging.INFO, logger="recs_pipeline.infra.warehouse")
    day_1, day_2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)
    for con, day in ((first, day_1), (second, day_2)):  # both partitions exist: deletes delete
        replace_partition(con, "features.user_index", day, INDEX_ROWS, [day, 10])
    with transaction(first):
        replace_partition(first, "features.user_index", day_1, INDEX_ROWS, [day_1, 30])
        replace_partition(first, "features.item_index", day_1, INDEX_ROWS, [day_1, 5])
        # Another machine replaces another partition of the same table and commits first.
        replace_partition(second, "features.user_index", day_2, INDEX_ROWS, [day_2, 20])
    counts = dict(
        first.execute("SELECT as_of_date, count(*) FROM features.user_index GROUP BY 1").fetchall()
    )
    assert counts == {day_1: 30, day_2: 20}
    assert first.execute("SELECT count(*) FROM features.item_index").fetchone() == (5,)
    retries = [r.getMessage() for r in caplog.records if "conflicted" in r.getMessage()]
    assert retries and "features.item_index, features.user_index" in retries[0]
    assert "but another transaction has deleted" in retries[0]
    assert any("committed at retry 1" in r.getMessage() for r in caplog.records)


def test_retries_are_bounded_and_the_loser_leaves_nothing(two_writers):
    first, second = two_writers
    day_1, day_2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)
    replace_partition(first, "features.user_index", day_1, INDEX_ROWS, [day_1, 10])
    with (
        conflict_retries(first, ConflictRetries(attempts=0)),
        pytest.raises(WarehouseConflict, match="after 0 retries"),
        transaction(first),
    ):
        replace_partition(first, "features.user_index", day_1, INDEX_ROWS, [day_1, 30])
        replace_partition(second, "features.user_index", day_2, INDEX_ROWS, [day_2, 20])
    counts = dict(
        first.execute("SELECT as_of_date, count(*) FROM features.user_index GROUP BY 1").fetchall()
    )
    assert counts == {day_1: 10, day_2: 20}  # the old day 1, whole; the winner's day 2


def test_the_schema_check_writes_nothing_once_the_schema_is_there(two_writers):
    first, second = two_writers
    before = snapshots(first)
    ensure_schema(second)
    ensure_schema(first)
    # A view re-created per session would be a snapshot, and a conflict between sessions.
    assert snapshots(first) == before


def communicate_all(processes: list[subprocess.Popen], timeout: float) -> list[tuple[str, str]]:
    """Each child's (stdout, stderr); any child still running when one times out or the caller
    fails is killed, so a hung writer never outlives the test."""
    try:
        return [p.communicate(timeout=timeout) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_two_processes_creating_a_new_lake_at_once_both_get_it(lake):
    code = (
        "import sys; from recs_pipeline.infra.warehouse import connect_lake, ensure_schema;"
        "con = connect_lake(sys.argv[1], sys.argv[2]); ensure_schema(con);"
        "print(con.execute('SELECT count(*) FROM duckdb_tables()').fetchone()[0])"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, lake["catalog"], lake["data_path"]],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = communicate_all(processes, timeout=120)
    assert [p.returncode for p in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    every = str(len(TABLES))  # each process sees the whole schema, whoever created it
    assert [out.strip() for out, _ in outputs] == [every, every]


@pytest.fixture(scope="module")
def shared(small_landing, postgres_server, tmp_path_factory):
    """The whole log ingested and DAY_1 retrained and published, on a DuckLake."""
    tmp = tmp_path_factory.mktemp("shared")
    warehouse = {"database": str(tmp / "unused.duckdb"), **lake_of(postgres_server, tmp)}
    resources = {
        "warehouse": Warehouse(**warehouse),
        "artifacts": ArtifactStore(root=str(tmp / "artifacts")),
        "log_source": LogSource(landing_root=str(small_landing)),
        "engine": ComputeEngine(),
    }
    instance = dg.DagsterInstance.ephemeral()
    assert ingest(instance, resources, SMALL_LOG.start, SMALL_LOG.end).success
    result = run_chain(instance, resources, DAY_1, GFCF)
    return warehouse, resources, result, tmp


def test_the_chain_runs_on_the_shared_warehouse(shared, small_landing):
    warehouse, resources, result, tmp = shared
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["beats_popularity"] and set(checks) == {
        "beats_popularity",
        "beats_every_baseline",
    }
    lines = sum(sum(1 for _ in open(path)) - 1 for path in small_landing.glob("*/*.csv"))
    with connect_lake(warehouse["catalog"], read_only=True) as con:
        ingested = con.execute("SELECT count(*) FROM raw.interactions").fetchone()[0]
        rejected = con.execute("SELECT count(*) FROM raw.rejected_interactions").fetchone()[0]
        assert ingested + rejected == lines and rejected > 0
        for table, column in PARTITION_COLUMN.items():
            n = con.execute(f"SELECT count(*) FROM {table} WHERE {column} = ?", [DAY_1])
            assert n.fetchone()[0] > 0, table
        per_user = con.execute(
            """SELECT count(*), count(DISTINCT item_id), min(rank), max(rank)
               FROM serving.latest_recommendations GROUP BY user_id"""
        ).fetchall()
        assert per_user and set(per_user) == {(K, K, 1, K)}
        leaks = con.execute(
            """SELECT count(*) FROM serving.recommendations r JOIN raw.interactions i
               USING (user_id, item_id) WHERE i.event_date <= r.as_of_date"""
        ).fetchone()[0]
        assert leaks == 0
    # Re-running a day replaces its partitions: the same rows, none twice.
    with connect_lake(warehouse["catalog"], read_only=True) as con:
        before = snapshot(con, DAY_1)
    rerun = dg.materialize(
        ALL_ASSETS,
        selection=dg.AssetSelection.assets(interaction_split, interaction_graph),
        partition_key=DAY_1.isoformat(),
        instance=dg.DagsterInstance.ephemeral(),
        resources=resources,
        run_config={"ops": {"interaction_split": GFCF["ops"]["interaction_split"]}},
    )
    assert rerun.success
    with connect_lake(warehouse["catalog"], read_only=True) as con:
        assert snapshot(con, DAY_1) == before
    # Applications read the lake itself: no export beside a database file.
    assert resources["warehouse"].serving_path() is None
    assert not (tmp / "serving").exists()


def start(*args: str, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.ducklake_support", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
        )


def publish_two_days_while_reading(
    warehouse: dict, tmp: Path, chain: Callable[[dt.date], list[str]], latest_before: dt.date
) -> None:
    """Two processes retrain and publish DAY_2 and EARLIER at the same time (``chain(day)``:
    the arguments of tests/ducklake_support.py that run a day's chain); a third reads the
    latest recommendations in a loop. No lock error, no lost write, and the reader only ever
    sees whole days: ``latest_before``'s, then DAY_2's, as the latest."""
    stop, seen = tmp / "stop", tmp / "seen.json"
    stop.unlink(missing_ok=True)
    reader = start("reader", json.dumps(warehouse), str(seen), str(stop), log=tmp / "reader.log")
    chains = [start(*chain(day), log=tmp / f"chain-{day}.log") for day in (DAY_2, EARLIER)]
    try:
        outputs = communicate_all(chains, timeout=600)
    finally:
        stop.touch()
        communicate_all([reader], timeout=120)
    outcomes = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    for outcome in outcomes:
        assert outcome["success"], outcome["failures"]
    observed = json.loads(seen.read_text())
    assert observed["errors"] == []
    with connect_lake(warehouse["catalog"], read_only=True) as con:
        final = dict(
            con.execute(
                "SELECT as_of_date::VARCHAR, count(*) FROM serving.recommendations GROUP BY 1"
            ).fetchall()
        )
        # No lost write: every table has both days, written by two processes at once, and the
        # metrics are those of the two runs (a day published before is replaced, not kept).
        for table, column in PARTITION_COLUMN.items():
            if table.startswith("raw."):
                continue
            days = {
                row[0]
                for row in con.execute(
                    f"SELECT DISTINCT {column} FROM {table} WHERE {column} IN (?, ?)",
                    [DAY_2, EARLIER],
                ).fetchall()
            }
            assert days == {DAY_2, EARLIER}, table
        for outcome in outcomes:
            runs = con.execute(
                "SELECT DISTINCT run_id FROM ml.metrics WHERE as_of_date = ?", [outcome["day"]]
            ).fetchall()
            assert (outcome["run_id"],) in runs, outcome
    assert set(final) == {d.isoformat() for d in (EARLIER, DAY_1, DAY_2)}
    # Whole days only: every count the reader saw is that day's final count.
    for view in observed["seen"]:
        for day, count in view["days"].items():
            assert count == final[day], (day, count, final[day])
        assert len(view["latest"]) == 1
        ((latest_day, latest_count),) = view["latest"].items()
        assert latest_count == final[latest_day]
    # The reader was reading while DAY_2 was written.
    latest_days = [next(iter(view["latest"])) for view in observed["seen"]]
    assert latest_days[0] == latest_before.isoformat() and latest_days[-1] == DAY_2.isoformat()


def test_two_machines_publish_different_days_while_an_application_reads(shared, small_landing):
    """Two processes retrain and publish two days at the same time while a third reads."""
    warehouse, resources, _, tmp = shared
    publish_two_days_while_reading(
        warehouse,
        tmp,
        lambda day: [
            "chain",
            json.dumps(warehouse),
            resources["artifacts"].root,
            str(small_landing),
            day.isoformat(),
            json.dumps(GFCF),
        ],
        latest_before=DAY_1,
    )


def test_the_pool_limit_follows_the_warehouse(tmp_path, monkeypatch):
    from assets.platform.instance import (
        SHARED_WAREHOUSE_POOL_LIMIT,
        WAREHOUSE_POOL,
        prepare_instance,
    )

    def limit(home):
        with dg.DagsterInstance.from_config(str(home)) as instance:
            pools = {p.name: p.limit for p in instance.event_log_storage.get_pool_limits()}
        return pools.get(WAREHOUSE_POOL)

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster_home" / "dagster.yaml").read_text())
    monkeypatch.delenv("RECS_WAREHOUSE_CATALOG", raising=False)
    prepare_instance(home)
    assert limit(home) is None  # the home's default_limit, 1, applies: as before
    monkeypatch.setenv("RECS_WAREHOUSE_CATALOG", "postgres:dbname=lake host=db")
    prepare_instance(home)
    assert limit(home) == SHARED_WAREHOUSE_POOL_LIMIT
    monkeypatch.setenv("RECS_WAREHOUSE_CATALOG", "")
    prepare_instance(home)
    assert limit(home) == 1
    # The single-machine lake: its DuckDB catalog file lets one process in at a time.
    monkeypatch.setenv("RECS_WAREHOUSE_CATALOG", str(tmp_path / "lake.ducklake"))
    prepare_instance(home)
    assert limit(home) == 1


def test_the_warehouse_is_chosen_in_the_environment_or_the_config_file(monkeypatch):
    from resources.deployment import deployment_defaults

    monkeypatch.setenv("RECS_WAREHOUSE_CATALOG", "postgres:dbname=lake")
    monkeypatch.setenv("RECS_WAREHOUSE_DATA_PATH", "s3://bucket/lake/")
    defaults = deployment_defaults("warehouse")
    assert Warehouse(**defaults).shared
    assert (defaults["catalog"], defaults["data_path"]) == (
        "postgres:dbname=lake",
        "s3://bucket/lake/",
    )


HAMMER = """
import datetime as dt, logging, sys
from recs_pipeline.infra.warehouse import connect_lake, replace_partition, transaction
logging.basicConfig(level=logging.INFO)
catalog, data, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = connect_lake(catalog, data)
for _ in range(2):  # the second round deletes what the first wrote: deletes meet inserts
    for offset in range(first, 12, 2):
        day = dt.date(2026, 1, 1) + dt.timedelta(days=offset)
        with transaction(con):
            for table in ("features.user_index", "features.item_index"):
                replace_partition(
                    con, table, day, "SELECT CAST(? AS DATE), 'u' || x, x::INTEGER"
                    " FROM range(?) t(x)", [day, 100 + offset]
                )
"""


def test_two_processes_replacing_days_of_the_same_tables_lose_nothing(lake, two_writers):
    """Every transaction of two processes replacing interleaved days of the same two tables in
    a tight loop commits (retried when it conflicts); every day ends with its rows, once."""
    first, _ = two_writers
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, lake["catalog"], lake["data_path"], str(start)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for start in (0, 1)
    ]
    outputs = communicate_all(processes, timeout=300)
    assert [p.returncode for p in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    for table in ("features.user_index", "features.item_index"):
        counts = first.execute(
            f"SELECT as_of_date, count(*), count(DISTINCT idx) FROM {table} GROUP BY 1"
        ).fetchall()
        expected = {
            (dt.date(2026, 1, 1) + dt.timedelta(days=offset), 100 + offset, 100 + offset)
            for offset in range(12)
        }
        assert set(counts) == expected, table


def test_a_duckdb_catalog_file_serves_one_machine(tmp_path):
    """The single-machine lake: a DuckDB file as the catalog, through the resource's session."""
    warehouse = Warehouse(
        database=str(tmp_path / "unused.duckdb"),
        catalog=str(tmp_path / "catalog.ducklake"),
        data_path=str(tmp_path / "data"),
    )
    day = dt.date(2026, 1, 1)
    with warehouse.session() as con:
        replace_partition(con, "features.user_index", day, INDEX_ROWS, [day, 7])
    with warehouse.session() as con:
        assert con.execute("SELECT count(*) FROM features.user_index").fetchone() == (7,)
        assert con.execute("SELECT current_database()").fetchone() == ("lake",)
    assert (tmp_path / "catalog.ducklake").exists()
    assert not (tmp_path / "unused.duckdb").exists()  # the embedded file is not touched


# One machine's process writing the single-machine lake as pipeline steps do: a session per
# step (the catalog file held while it is open), a partition replaced, the step's work done while
# it still holds the file.
STEP_WRITER = """
import datetime as dt, json, logging, sys, time
from recs_pipeline.infra.warehouse import replace_partition
from resources import Warehouse
logging.basicConfig(level=logging.INFO)
warehouse, first = Warehouse(**json.loads(sys.argv[1])), int(sys.argv[2])
for offset in range(first, 8, 2):
    day = dt.date(2026, 1, 1) + dt.timedelta(days=offset)
    with warehouse.session() as con:
        replace_partition(con, "features.user_index", day, sys.argv[3], [day, 100 + offset])
        time.sleep(0.3)
"""

# An application on the single-machine lake: each read attaches the lake read-only and lets it
# go (a connection held open would keep the steps out), until the file STOP exists.
LAKE_READER = """
import json, sys, time
from pathlib import Path
from recs_pipeline.infra.warehouse import connect_lake
catalog, stop, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
seen, errors = [], []
while not stop.exists():
    try:
        with connect_lake(catalog, read_only=True) as con:
            seen.append(dict(con.execute(
                "SELECT as_of_date::VARCHAR, count(*) FROM features.user_index GROUP BY 1"
            ).fetchall()))
    except Exception as error:
        errors.append(f"{type(error).__name__}: {str(error).splitlines()[0]}")
        time.sleep(0.05)
out.write_text(json.dumps({"seen": seen, "errors": errors}))
"""


def test_processes_of_one_machine_take_turns_on_a_duckdb_catalog_file(tmp_path):
    """The single-machine lake's catalog file has DuckDB's one-process lock: two processes
    writing at once and an application reading meanwhile take turns (each waits for the file,
    bounded by lock_timeout_seconds) instead of failing with 'Could not set lock on file'."""
    warehouse = {
        "database": str(tmp_path / "unused.duckdb"),
        "catalog": str(tmp_path / "lake.ducklake"),
        "data_path": str(tmp_path / "data"),
        "lock_timeout_seconds": 120,
    }
    with Warehouse(**warehouse).session():
        pass  # the lake and its schema exist before the processes start
    stop, seen = tmp_path / "stop", tmp_path / "seen.json"
    reader = subprocess.Popen(
        [sys.executable, "-c", LAKE_READER, warehouse["catalog"], str(stop), str(seen)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", STEP_WRITER, json.dumps(warehouse), str(first), INDEX_ROWS],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for first in (0, 1)
    ]
    try:
        outputs = communicate_all(writers, timeout=300)
    finally:
        stop.touch()
        communicate_all([reader], timeout=120)
    assert [p.returncode for p in writers] == [0, 0], [
        err.strip().splitlines()[-1][:400] for _, err in outputs if err.strip()
    ]
    # They did meet: at least one waited for the other's (or the reader's) hold on the file.
    assert any("is locked by another process" in err for _, err in outputs)
    observed = json.loads(seen.read_text())
    assert observed["errors"] == [] and observed["seen"]
    final = {(dt.date(2026, 1, 1) + dt.timedelta(days=n)).isoformat(): 100 + n for n in range(8)}
    for view in observed["seen"]:  # whole days only
        assert all(final[day] == count for day, count in view.items()), view
    with connect_lake(warehouse["catalog"], read_only=True) as con:
        assert (
            dict(
                con.execute(
                    "SELECT as_of_date::VARCHAR, count(*) FROM features.user_index GROUP BY 1"
                ).fetchall()
            )
            == final
        )


LAKE_HOLDER = """
import sys
from recs_pipeline.infra.warehouse import connect_lake
con = connect_lake(sys.argv[1], sys.argv[2])
print("holding", flush=True)
sys.stdin.readline()
"""


def test_a_wait_for_a_duckdb_catalog_file_is_bounded_and_names_the_holder(tmp_path, caplog):
    """An application (or a step) finding the catalog file held past its lock_timeout_seconds
    fails with the holder's PID and the setting's name, after logging each retry."""
    catalog, data = str(tmp_path / "lake.ducklake"), str(tmp_path / "data")
    holder = subprocess.Popen(
        [sys.executable, "-c", LAKE_HOLDER, catalog, data],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        with caplog.at_level(logging.WARNING), pytest.raises(WarehouseLockTimeout) as raised:
            connect_lake(catalog, read_only=True, lock_timeout_seconds=1)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert f"(PID {holder.pid})" in str(raised.value), raised.value
    assert "lock_timeout_seconds" in str(raised.value)
    retries = [r.getMessage() for r in caplog.records if "locked by another process" in r.message]
    assert retries and all(f"(PID {holder.pid})" in message for message in retries)
    with connect_lake(catalog, read_only=True) as con:  # once let go, the file is there to read
        assert con.execute("SELECT current_database()").fetchone() == ("lake",)


EXTENSION_CHECKS = """
import os, shutil, sys
import duckdb
import recs_pipeline.infra.warehouse as warehouse
folder = sys.argv[1]
copy = os.path.join(folder, "ducklake.duckdb_extension")
shutil.copy(warehouse.extension_path("ducklake"), copy)
warehouse.extension_path = lambda name: copy  # this copy's file is the one loaded

def skipped_check():
    con = warehouse.connect_lake(os.path.join(folder, "lake.ducklake"), os.path.join(folder, "d"))
    try:
        return con.execute("SELECT current_setting('allow_unsigned_extensions')").fetchone()[0]
    finally:
        con.close()

seen = [skipped_check(), skipped_check()]
stat = os.stat(copy)
os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: checked again
seen.append(skipped_check())
# One byte changed, in a new file put in its place: its signature no longer matches (the loaded
# copy's pages are not written to).
data = bytearray(open(copy, "rb").read())
data[len(data) // 2] ^= 0xFF
with open(copy + ".new", "wb") as binary:
    binary.write(data)
os.replace(copy + ".new", copy)
try:
    skipped_check()
    seen.append("loaded")
except duckdb.Error as error:
    seen.append("refused" if "signature" in str(error).lower() else str(error))
print(seen)
"""


def test_an_extension_is_checked_once_per_process_and_again_when_its_file_changes(tmp_path):
    """DuckDB hashes an extension's whole binary to check its signature at every load: 0.2 s of
    each lake connection. The check is made once per file and process, and again whenever the
    file is not the one checked (the last load shows the check still refuses a bad binary)."""
    ran = subprocess.run(
        [sys.executable, "-c", EXTENSION_CHECKS, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split("\n")[-2] == "[False, True, False, 'refused']", ran.stdout + ran.stderr
