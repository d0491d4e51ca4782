"""The instance's storage is created once before anything concurrent starts (issue 11, finding 3),
on the storage one setting chooses: SQLite files in the home or a shared PostgreSQL (issue 15).

Opening a new ``DAGSTER_HOME`` from several processes at once let each stamp the schema version:
4 processes corrupted a new home in 2 of 4 trials. ``assets.platform.instance`` creates it in one
process under a lock; a home that is already corrupted is named with the command that repairs it."""

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from unittest import mock

import dagster as dg
import pytest
import yaml

from assets.platform.instance import (
    BLOCK_END,
    BLOCK_START,
    MOVED_BLOCK_MARKERS,
    MOVED_MODULES,
    POSTGRES_ENV,
    REPAIR_COMMAND,
    InstanceConfigError,
    InstanceCorrupted,
    migrate_moved_modules,
    postgres_version_rows,
    prepare_instance,
    selected_storage,
    storage_of,
    version_rows,
    write_storage,
)
from tests.daemon_support import BIN, PROJECT_INSTANCE, PROJECT_ROOT

PROCESSES = 4


def new_home(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(PROJECT_INSTANCE, home / "dagster.yaml")
    return home


def at_once(
    code: str, home, count: int = PROCESSES, env: dict | None = None
) -> list[subprocess.CompletedProcess]:
    """Run ``code`` in ``count`` processes that all start it at the same moment (after their
    imports), as ``dagster dev`` and a CLI run started together would."""
    start = time.time() + 6
    prelude = (
        "import sys, time; import dagster as dg;"
        " from assets.platform.instance import prepare_instance;"
        f" time.sleep(max(0.0, {start} - time.time()));"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", prelude + code],
            cwd=PROJECT_ROOT,
            env={"DAGSTER_HOME": str(home), "PATH": "/usr/bin:/bin", **(env or {})},
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


def test_dagsters_own_commands_started_together_create_the_instance_once(tmp_path):
    """What every Dagster command does (``dagster dev``, ``dagster asset materialize``: open the
    instance of ``DAGSTER_HOME``), in processes started together on a new home, with no
    project entry point first (issue 27, finding 9). The home's ``dagster.yaml`` names the
    project's instance class, whose storage is created under the home's lock. Without it 5 of 6
    such trials corrupted the home or failed a process; two trials here."""
    for trial in range(2):
        home = new_home(tmp_path / str(trial))
        results = at_once(
            "i = dg.DagsterInstance.get(); i.get_runs(limit=1); i.all_instigator_state();"
            " print(type(i).__name__, type(i._run_storage).__name__)",
            home,
        )
        assert [r.returncode for r in results] == [0] * PROCESSES, [
            r.stderr[-2000:] for r in results
        ]
        assert_one_version_each(home)
    assert {r.stdout.split()[0] for r in results} == {"ProjectInstance"}


def test_a_corrupted_home_is_named_with_its_repair_by_dagster_too(tmp_path):
    """Dagster's own commands on a corrupted home fail with the project's message, which names
    the repair, instead of alembic's "more than one head present"."""
    home = new_home(tmp_path)
    prepare_instance(home)
    with sqlite3.connect(home / "history/runs.db") as con:
        (version,) = con.execute("SELECT version_num FROM alembic_version").fetchone()
        con.execute("INSERT INTO alembic_version VALUES (?)", [version + "x"])
    info = subprocess.run(
        [str(BIN / "dagster"), "instance", "info"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
    )
    assert info.returncode != 0
    assert REPAIR_COMMAND in info.stderr and "history/runs.db has 2" in info.stderr, info.stderr


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

    command = [sys.executable, "-m", "assets.platform.instance", "--home", str(home)]
    check = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert check.returncode == 2 and REPAIR_COMMAND in check.stderr

    repair = subprocess.run(
        [*command, "--repair"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert repair.returncode == 0, repair.stderr
    assert "repaired schedules/schedules.db" in repair.stdout
    assert_one_version_each(home)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.all_instigator_state() == []


# The shared instance: one setting chooses it, prepare_instance writes and validates it.


def test_the_storage_is_chosen_by_one_setting(tmp_path, monkeypatch):
    monkeypatch.delenv("RECS_INSTANCE", raising=False)
    monkeypatch.setenv("RECS_CONFIG", "")
    assert selected_storage() == "sqlite"  # the embedded default
    config = tmp_path / "recs.toml"
    config.write_text('[instance]\nstorage = "postgres"\n')
    monkeypatch.setenv("RECS_CONFIG", str(config))
    assert selected_storage() == "postgres"
    monkeypatch.setenv("RECS_INSTANCE", "sqlite")  # the environment over the file
    assert selected_storage() == "sqlite"
    monkeypatch.setenv("RECS_INSTANCE", "mysql")
    with pytest.raises(InstanceConfigError, match="one of sqlite, postgres"):
        selected_storage()
    monkeypatch.delenv("RECS_INSTANCE")
    config.write_text("[instance]\nstorage = 5\n")  # issue 27: AttributeError, no key named
    with pytest.raises(InstanceConfigError, match=r"\[instance\] storage = 5 .* sqlite, postgres"):
        selected_storage()


def test_the_postgres_block_is_added_and_removed_leaving_the_file_as_it_was(tmp_path):
    home = new_home(tmp_path)
    original = (home / "dagster.yaml").read_text()
    assert write_storage(home, "sqlite") is False  # the default leaves the file alone
    assert write_storage(home, "postgres") is True
    text = (home / "dagster.yaml").read_text()
    assert text.startswith(original) and BLOCK_START in text
    assert write_storage(home, "postgres") is False  # idempotent
    assert storage_of(home) == "postgres"
    config = yaml.safe_load(text)
    db = config["storage"]["postgres"]["postgres_db"]
    # Only env: values: no address or secret is written to the file.
    assert {field: db[field] for field in POSTGRES_ENV} == {
        field: {"env": var} for field, var in POSTGRES_ENV.items()
    }
    assert config["concurrency"] == yaml.safe_load(original)["concurrency"]
    assert write_storage(home, "sqlite") is True
    assert (home / "dagster.yaml").read_text() == original
    assert storage_of(home) == "sqlite"


def old_home(tmp_path, storage_block: str = ""):
    """A home whose dagster.yaml was copied from the project's before the platform modules moved
    into assets/platform/: it names assets.instance_storage and assets.run_workers."""
    home = new_home(tmp_path)
    text = (home / "dagster.yaml").read_text()
    for old, new in MOVED_MODULES.items():
        assert f"module: {new}\n" in text
        text = text.replace(f"module: {new}\n", f"module: {old}\n")
    (home / "dagster.yaml").write_text(text + storage_block)
    return home


def test_a_home_naming_the_old_module_paths_is_brought_up_to_date(tmp_path, monkeypatch):
    """Issue 26: the modules the home's dagster.yaml names moved; the first entry point run on
    an old home rewrites their paths (every other line kept) and the home opens as before."""
    assert not any((PROJECT_ROOT / f"{old.replace('.', '/')}.py").exists() for old in MOVED_MODULES)
    monkeypatch.delenv("RECS_WAREHOUSE_CATALOG", raising=False)
    home = old_home(tmp_path)
    lines = []
    prepare_instance(home, storage="sqlite", log=lines.append)
    assert (home / "dagster.yaml").read_text() == PROJECT_INSTANCE.read_text()
    assert lines == [f"{home / 'dagster.yaml'}: module paths updated to assets.platform"]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance).__module__ == "assets.platform.instance_storage"
        assert type(instance.run_launcher).__module__ == "assets.platform.run_workers"
    lines.clear()
    prepare_instance(home, storage="sqlite", log=lines.append)
    assert lines == []  # nothing left to change


def test_an_old_shared_homes_storage_block_is_still_managed(tmp_path):
    """The storage block an old home holds carries the old markers: rewritten to the current
    ones, so switching the storage back still removes it and leaves the file as it was."""
    start, end = MOVED_BLOCK_MARKERS
    body = yaml.safe_dump({"storage": {"sqlite": {"base_dir": "x"}}})
    home = old_home(tmp_path, f"\n{start}\n{body}{end}\n")
    assert migrate_moved_modules(home) is True
    text = (home / "dagster.yaml").read_text()
    assert f"\n{BLOCK_START}\n{body}{BLOCK_END}\n" in text and start not in text
    assert migrate_moved_modules(home) is False
    assert write_storage(home, "sqlite") is True  # the block found and removed
    assert (home / "dagster.yaml").read_text() == PROJECT_INSTANCE.read_text()


def test_a_hand_written_storage_is_not_overridden(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("storage:\n  sqlite:\n    base_dir: /x\n")
    with pytest.raises(InstanceConfigError, match="one place chooses"):
        write_storage(home, "postgres")


def test_a_shared_instance_without_its_connection_names_the_variables(tmp_path, monkeypatch):
    for var in POSTGRES_ENV.values():
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RECS_INSTANCE", "postgres")
    home = new_home(tmp_path)
    with pytest.raises(InstanceConfigError) as error:
        prepare_instance(home)
    assert all(var in str(error.value) for var in POSTGRES_ENV.values())
    command = [sys.executable, "-m", "assets.platform.instance", "--home", str(home)]
    check = subprocess.run(
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, env=os.environ.copy()
    )
    assert check.returncode == 2 and "DAGSTER_PG_HOST" in check.stderr


def test_entry_points_started_together_create_a_postgres_instance_once(tmp_path, postgres_server):
    """The same race as above on the shared storage: four processes prepare and open a new
    Postgres instance at once; all succeed and its schema is stamped once."""
    env = postgres_server.environment(postgres_server.create_database("instance"))
    home = new_home(tmp_path)
    results = at_once(
        f"prepare_instance({str(home)!r}); i = dg.DagsterInstance.get();"
        " i.get_runs(limit=1); i.all_instigator_state()",
        home,
        env=env,
    )
    assert [r.returncode for r in results] == [0] * PROCESSES, [r.stderr[-2000:] for r in results]
    assert version_rows(home) == {}  # no SQLite database was created in the home
    with mock.patch.dict(os.environ, env):
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert "postgres" in type(instance.run_storage).__module__
            assert len(postgres_version_rows(instance)) == 1
    ready = subprocess.run(
        [sys.executable, "-m", "assets.platform.instance", "--home", str(home)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert ready.returncode == 0, ready.stderr
    assert f"on PostgreSQL 127.0.0.1:{postgres_server.port}/" in ready.stdout
