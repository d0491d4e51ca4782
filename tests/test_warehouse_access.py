"""Opening the warehouse: waits for another process's lock are logged, bounded by a setting,
and every other error (a read-only filesystem, a corrupt file) fails at the first attempt.

Attempts are counted (a wrapper around ``duckdb.connect``), never timed."""

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from resources import Warehouse

HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
sys.stdin.readline()
con.close()
"""


@contextlib.contextmanager
def holder(database: Path):
    """A second process (a notebook, say) holding the warehouse open read-write until released."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "holding"
        yield process
    finally:
        if process.poll() is None:
            process.stdin.close()
            process.wait(timeout=30)


def release(process: subprocess.Popen) -> None:
    process.stdin.write("release\n")
    process.stdin.flush()
    process.wait(timeout=30)


@pytest.fixture
def attempts(monkeypatch):
    """Every ``duckdb.connect`` call; sleeps recorded, not slept, unless a test says otherwise."""
    calls: list[str] = []
    real_connect = duckdb.connect

    def counting_connect(*args, **kwargs):
        calls.append(str(kwargs.get("database", args[0] if args else "")))
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(duckdb, "connect", counting_connect)
    return calls


def test_a_locked_warehouse_is_retried_in_the_open_and_gives_up_after_the_setting(
    tmp_path, attempts
):
    database = tmp_path / "warehouse.duckdb"

    @dg.asset
    def touches_the_warehouse(warehouse: Warehouse) -> None:
        with warehouse.session():
            pass

    instance = dg.DagsterInstance.ephemeral()
    with holder(database) as process:
        result = dg.materialize(
            [touches_the_warehouse],
            instance=instance,
            resources={"warehouse": Warehouse(database=str(database), lock_timeout_seconds=3)},
            raise_on_error=False,
        )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error.to_string()
    assert f"(PID {process.pid})" in failure and "over 3 s" in failure, failure
    logged = [
        record.user_message
        for record in instance.all_logs(result.run_id)
        if "locked by another process" in record.user_message
    ]
    # Every retry is in the step's log, naming the holder; the first attempt is not a retry.
    assert len(logged) >= 2, logged
    assert all(
        "Conflicting lock is held in " in message and f"(PID {process.pid})" in message
        for message in logged
    ), logged
    assert len(attempts) == len(logged) + 1, (attempts, logged)


def test_the_wait_ends_as_soon_as_the_holder_releases_the_file(tmp_path, attempts, monkeypatch):
    database = tmp_path / "warehouse.duckdb"
    warehouse = Warehouse(database=str(database), lock_timeout_seconds=600)
    with holder(database) as process:
        import recs_pipeline.infra.warehouse as module  # where the wait sleeps

        real_sleep = time.sleep

        def sleep(seconds):
            # The notebook closes after the second attempt: the third must succeed.
            if len(attempts) == 2 and process.poll() is None:
                monkeypatch.setattr(module.time, "sleep", real_sleep)
                release(process)

        monkeypatch.setattr(module.time, "sleep", sleep)
        with warehouse.session() as con:
            assert con.execute("SELECT 1").fetchone() == (1,)
    assert len(attempts) == 3


@pytest.fixture
def read_only_filesystem(tmp_path):
    """A real read-only filesystem holding a valid warehouse: a tmpfs remounted read-only."""
    mount = tmp_path / "ro"
    mount.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {exc}")
    try:
        duckdb.connect(str(mount / "warehouse.duckdb")).close()
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True, capture_output=True)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True, capture_output=True)


def test_a_read_only_filesystem_fails_at_the_first_attempt(
    read_only_filesystem, attempts, monkeypatch
):
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    warehouse = Warehouse(database=str(read_only_filesystem / "warehouse.duckdb"))
    with pytest.raises(duckdb.IOException, match="Read-only file system"):
        with warehouse.session():
            pass
    assert (len(attempts), slept) == (1, [])


def test_a_corrupt_warehouse_file_fails_at_the_first_attempt(tmp_path, attempts, monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    database = tmp_path / "warehouse.duckdb"
    database.write_bytes(b"not a database, " * 512)
    with pytest.raises(duckdb.Error):
        with Warehouse(database=str(database)).session():
            pass
    assert (len(attempts), slept) == (1, [])


def test_the_lock_timeout_is_a_documented_resource_setting():
    field = Warehouse.model_fields["lock_timeout_seconds"]
    assert field.description and 10 <= field.default <= 600
