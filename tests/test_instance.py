"""The instance's storage is created once before anything concurrent starts (issue 11, finding 3).

Opening a new ``DAGSTER_HOME`` from several processes at once let each stamp the schema version:
4 processes corrupted a new home in 2 of 4 trials. ``assets.instance`` creates it in one process
under a lock; a home that is already corrupted is named with the command that repairs it."""

import shutil
import sqlite3
import subprocess
import sys
import time

import pytest

from assets.instance import (
    REPAIR_COMMAND,
    InstanceCorrupted,
    prepare_instance,
    version_rows,
)
from tests.daemon_support import PROJECT_INSTANCE, PROJECT_ROOT

PROCESSES = 4


def new_home(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_INSTANCE, home / "dagster.yaml")
    return home


def at_once(code: str, home, count: int = PROCESSES) -> list[subprocess.CompletedProcess]:
    """Run ``code`` in ``count`` processes that all start it at the same moment (after their
    imports), as ``dagster dev`` and a CLI run started together would."""
    start = time.time() + 6
    prelude = (
        "import sys, time; import dagster as dg; from assets.instance import prepare_instance;"
        f" time.sleep(max(0.0, {start} - time.time()));"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", prelude + code],
            cwd=PROJECT_ROOT,
            env={"DAGSTER_HOME": str(home), "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    return [
        subprocess.CompletedProcess(p.args, p.wait(timeout=120), *p.communicate())
        for p in processes
    ]


def assert_one_version_each(home):
    rows = version_rows(home)
    assert set(rows) == {"history/runs.db", "history/runs/index.db", "schedules/schedules.db"}
    assert all(len(versions) == 1 for versions in rows.values()), rows


def test_entry_points_started_together_create_the_instance_once(tmp_path):
    """Each process does what an entry point does (prepare, then open the instance and use it);
    without the lock this failed in 2 of 3 runs."""
    home = new_home(tmp_path)
    results = at_once(
        f"prepare_instance({str(home)!r}); i = dg.DagsterInstance.get();"
        " i.get_runs(limit=1); i.all_instigator_state()",
        home,
    )
    assert [r.returncode for r in results] == [0] * PROCESSES, [r.stderr[-2000:] for r in results]
    assert_one_version_each(home)


def test_a_corrupted_home_is_named_with_its_repair(tmp_path):
    home = new_home(tmp_path)
    prepare_instance(home)
    # The state two racing processes leave: the schema stamped twice.
    with sqlite3.connect(home / "schedules/schedules.db") as con:
        (version,) = con.execute("SELECT version_num FROM alembic_version").fetchone()
        con.execute("INSERT INTO alembic_version VALUES (?)", [version + "x"])
    with pytest.raises(InstanceCorrupted) as error:
        prepare_instance(home)
    assert "schedules/schedules.db has 2" in str(error.value)
    assert REPAIR_COMMAND in str(error.value)

    command = [sys.executable, "-m", "assets.instance", "--home", str(home)]
    check = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert check.returncode == 2 and REPAIR_COMMAND in check.stderr

    repair = subprocess.run(
        [*command, "--repair"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert repair.returncode == 0, repair.stderr
    assert "repaired schedules/schedules.db" in repair.stdout
    assert_one_version_each(home)
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.all_instigator_state() == []
