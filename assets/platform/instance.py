"""Set-up of the Dagster instance in ``DAGSTER_HOME``: ``python -m assets.platform.instance
[--repair]``.

Dagster's SQLite storages create their tables and stamp their schema version (an
``alembic_version`` row) the first time a process opens the instance, with no lock between
processes. Two processes opening a new home at the same moment (``dagster dev`` and a CLI
materialisation; a webserver and an ingest in a test) can both stamp it: the database is left
with two ``alembic_version`` rows, and every later process on that home fails with alembic's
"Version table 'alembic_version' has more than one head present". Four processes opening a new
home at once corrupted it in 2 of 4 trials here.

So the instance is created once, by one process, before anything concurrent starts:
:func:`prepare_instance` opens it under an exclusive file lock in the home, which creates every
storage, and checks the result. Every entry point of the project calls it first (``make run``,
``make ui``, the tests and benchmarks that start servers); Dagster's own commands started on a
new home take the same lock, through the instance class the home's ``dagster.yaml`` names
(``assets/platform/instance_storage.py``). A home already corrupted this way is reported with the
command that repairs it. Runs whose worker process was killed are marked failed here too, and their
pool slots freed (``assets/platform/run_workers.py``).

Where the instance keeps its storage is chosen here too, by one setting (docs/deploying.md):
``RECS_INSTANCE`` in the environment, else ``storage`` in the ``[instance]`` table of the
project config file (``recs.toml``), else ``sqlite``:

- ``sqlite`` (embedded, the default): Dagster's SQLite files in the home, as ``make run`` and
  ``make ui`` have always used; the home's ``dagster.yaml`` is left exactly as it is.
- ``postgres`` (shared): ``dagster-postgres``, so the webserver, the daemon, the code server and
  the run workers on several machines share one instance. :func:`prepare_instance` writes the
  ``storage: postgres:`` section into the home's ``dagster.yaml`` (a marked block at its end,
  every other line kept), with ``env:`` values only: every Dagster process reads the server's
  address and credentials from ``DAGSTER_PG_HOST``, ``DAGSTER_PG_PORT``, ``DAGSTER_PG_USER``,
  ``DAGSTER_PG_PASSWORD`` and ``DAGSTER_PG_DB`` (no secret is written to a file). Switching back
  to ``sqlite`` removes the block. Model selection keeps its Optuna studies in the same
  database, in a schema of their own (:func:`shared_database_url`).

Either way the storage is then created by this one process and checked.

The limit of the pool ``duckdb`` (every step that opens the warehouse) is set here too, by the
warehouse the deployment uses (:func:`warehouse_pool_limit`): 1 for the embedded DuckDB file,
which one process at a time may write, and for a DuckLake whose catalog is a DuckDB file (the
same lock); :data:`SHARED_WAREHOUSE_POOL_LIMIT` for a DuckLake on PostgreSQL
(``RECS_WAREHOUSE_CATALOG`` or ``catalog`` in ``[resources.warehouse]``), whose writers commit
optimistically, side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

# The SQLite databases whose schema Dagster versions with alembic, relative to the home, and the
# storage module whose alembic scripts name their head revision.
VERSIONED_DATABASES = {
    "history/runs.db": "dagster._core.storage.runs.sqlite.sqlite_run_storage",
    "history/runs/index.db": "dagster._core.storage.event_log.sqlite.sqlite_event_log",
    "schedules/schedules.db": "dagster._core.storage.schedules.sqlite.sqlite_schedule_storage",
}
LOCK_FILE = ".instance-setup.lock"
REPAIR_COMMAND = "python -m assets.platform.instance --repair"

INSTANCE_ENV = "RECS_INSTANCE"
STORAGES = ("sqlite", "postgres")
# The connection of the shared instance, read by every Dagster process from its environment:
# the field of Dagster's ``postgres_db`` config -> the environment variable.
POSTGRES_ENV = {
    "hostname": "DAGSTER_PG_HOST",
    "port": "DAGSTER_PG_PORT",
    "username": "DAGSTER_PG_USER",
    "password": "DAGSTER_PG_PASSWORD",
    "db_name": "DAGSTER_PG_DB",
}
POSTGRES_SCHEME = "postgresql+psycopg2"
# The block prepare_instance manages at the end of a home's dagster.yaml.
BLOCK_START = "# --- storage: written by `python -m assets.platform.instance` (RECS_INSTANCE / [instance]) ---"
BLOCK_END = "# --- end of the storage written by assets.platform.instance ---"

# What a home's dagster.yaml said before the platform modules moved from assets/ into
# assets/platform/: the modules of the instance class and the run launcher, and the storage
# block's markers. A home created then (its dagster.yaml copied from the project's) is rewritten
# by prepare_instance (migrate_moved_modules), so every project entry point brings it up to date
# before a Dagster process reads it; the asset root keeps no alias modules for the old paths.
MOVED_MODULES = {
    "assets.instance_storage": "assets.platform.instance_storage",
    "assets.run_workers": "assets.platform.run_workers",
}
MOVED_BLOCK_MARKERS = {
    "# --- storage: written by `python -m assets.instance` (RECS_INSTANCE / [instance]) ---": (
        BLOCK_START
    ),
    "# --- end of the storage written by assets.instance ---": BLOCK_END,
}
_MOVED_MODULE_LINE = re.compile(
    r"^(?P<key>[ \t]*module:[ \t]*)(?P<quote>['\"]?)(?P<module>"
    + "|".join(map(re.escape, MOVED_MODULES))
    + r")(?P=quote)(?P<rest>[ \t]*(?:#.*)?)$",
    re.MULTILINE,
)


# The pool of every step that opens the warehouse: DuckDB lets one process at a time hold a
# database file, so the pool gets one slot (below). Steps join it through the declaration
# helper assets/lib/catalog.py daily_asset, by writing warehouse tables.
WAREHOUSE_POOL = "duckdb"
# The shared warehouse (DuckLake on PostgreSQL) needs no mutual exclusion: the limit only bounds
# how many steps hold a catalog connection at once (each a PostgreSQL connection) and how many
# commits race. A DuckLake on a DuckDB catalog file gets 1, as the embedded file does.
SHARED_WAREHOUSE_POOL_LIMIT = 16


class InstanceCorrupted(RuntimeError):
    """The instance's storage was created twice at once; the message says how to repair it."""


class InstanceConfigError(ValueError):
    """The storage setting is unknown, or the shared instance's connection is not set."""


def selected_storage() -> str:
    """``sqlite`` or ``postgres``: ``RECS_INSTANCE``, else ``[instance] storage`` of the project
    config file, else ``sqlite``."""
    from recs_pipeline.infra import project_config

    table = project_config.project_config().get("instance") or {}
    if not isinstance(table, dict) or set(table) - {"storage"}:
        raise InstanceConfigError(
            f"project config {project_config.config_path()}: [instance] takes one key,"
            f" storage = {' | '.join(map(repr, STORAGES))}"
        )
    if not isinstance(table.get("storage", ""), str):
        raise InstanceConfigError(
            f"project config {project_config.config_path()}: [instance] storage ="
            f" {table['storage']!r} is not allowed: it must be one of {', '.join(STORAGES)}"
        )
    value = (os.environ.get(INSTANCE_ENV) or table.get("storage") or "sqlite").strip().lower()
    if value not in STORAGES:
        raise InstanceConfigError(
            f"unknown instance storage {value!r} ({INSTANCE_ENV} or [instance] storage):"
            f" one of {', '.join(STORAGES)}"
        )
    return value


def warehouse_pool_limit() -> int:
    """The ``duckdb`` pool's limit for this deployment's warehouse: 1 for the embedded DuckDB
    file and for a DuckLake on a DuckDB catalog file (one process at a time holds either),
    :data:`SHARED_WAREHOUSE_POOL_LIMIT` for a DuckLake on PostgreSQL (a ``catalog`` set in the
    environment, else in the project config file: the Warehouse resource's own default)."""
    from recs_pipeline.infra.warehouse import is_single_process_catalog
    from resources.deployment import deployment_defaults

    catalog = str(deployment_defaults("warehouse").get("catalog") or "")
    if not catalog.strip() or is_single_process_catalog(catalog):
        return 1
    return SHARED_WAREHOUSE_POOL_LIMIT


def set_pool_limit(instance, limit: int) -> bool:
    """Give the ``duckdb`` pool ``limit`` slots in ``instance``; True when it changed. A limit
    other than 1 is set explicitly (the home's ``pools.default_limit``, 1, would otherwise
    apply when the first step claims a slot, and never overrides an explicit one)."""
    storage = instance.event_log_storage
    current = {pool.name: pool for pool in storage.get_pool_limits()}.get(WAREHOUSE_POOL)
    if (current.limit if current else 1) == limit:
        return False
    storage.set_concurrency_slots(WAREHOUSE_POOL, limit)
    return True


def storage_config(storage: str) -> dict | None:
    """The ``storage:`` section of ``dagster.yaml`` for ``storage`` (None: Dagster's default,
    SQLite files in the home)."""
    if storage == "sqlite":
        return None
    connection = {field: {"env": var} for field, var in POSTGRES_ENV.items()}
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; dagster-postgres installs psycopg2.
    connection["scheme"] = POSTGRES_SCHEME
    return {"postgres": {"postgres_db": connection}}


def storage_block(storage: str) -> str:
    import yaml

    config = storage_config(storage)
    if config is None:
        return ""
    body = yaml.safe_dump({"storage": config}, sort_keys=False)
    return f"{BLOCK_START}\n{body}{BLOCK_END}\n"


def _without_block(text: str) -> str:
    """``text`` without the block :func:`write_storage` appended (as it was before)."""
    start = text.find(BLOCK_START)
    if start < 0:
        return text
    end = text.find(BLOCK_END, start)
    after = "" if end < 0 else text[end + len(BLOCK_END) :].lstrip("\n")
    before = text[:start].rstrip("\n")
    return (before + "\n" if before else "") + after


def write_storage(home: Path, storage: str) -> bool:
    """Make the home's ``dagster.yaml`` name ``storage`` (a block at its end; every other line
    kept); True when the file changed. A storage section written by hand outside the block is
    an error: two places would choose."""
    import yaml

    path = home / "dagster.yaml"
    text = path.read_text() if path.exists() else ""
    rest = _without_block(text)
    own = yaml.safe_load(rest) or {}
    hand_written = sorted(
        set(own) & {"storage", "run_storage", "event_log_storage", "schedule_storage"}
    )
    if hand_written and storage != "sqlite":
        raise InstanceConfigError(
            f"{path} names its own {', '.join(hand_written)}; remove it to let"
            f" {INSTANCE_ENV} / [instance] choose the storage (one place chooses)"
        )
    block = storage_block(storage)
    new = rest if not block else (rest.rstrip("\n") + "\n\n" if rest.strip() else "") + block
    if new == text:
        return False
    _replace_text(path, new)
    return True


def _replace_text(path: Path, text: str) -> None:
    """Write ``text`` over ``path`` at once, after checking that it parses as YAML (never leave
    a file Dagster cannot read)."""
    import yaml

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    yaml.safe_load(tmp.read_text())
    os.replace(tmp, path)


def migrate_moved_modules(home: Path) -> bool:
    """Rewrite the old module paths (:data:`MOVED_MODULES`, as a ``module:`` value) and storage
    block markers in the home's ``dagster.yaml`` to the current ones, every other character
    kept; True when the file changed."""
    path = home / "dagster.yaml"
    if not path.exists():
        return False
    text = path.read_text()
    new = _MOVED_MODULE_LINE.sub(
        lambda m: m["key"] + m["quote"] + MOVED_MODULES[m["module"]] + m["quote"] + m["rest"],
        text,
    )
    for old, current in MOVED_BLOCK_MARKERS.items():
        new = new.replace(old, current)
    if new == text:
        return False
    _replace_text(path, new)
    return True


def storage_of(home: Path) -> str:
    """The storage the home's ``dagster.yaml`` names (``sqlite`` when it names none)."""
    import yaml

    path = home / "dagster.yaml"
    config = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
    return "postgres" if "postgres" in (config.get("storage") or {}) else "sqlite"


def shared_database_url() -> str | None:
    """The SQLAlchemy URL of the shared instance's PostgreSQL database (``postgresql+psycopg2``,
    password included: never log it), from the same environment every Dagster process reads;
    None when the instance is embedded (``sqlite``). Model selection keeps its Optuna study there
    (``recs_pipeline.evaluation.selection.study_storage``), so that Ray workers on other machines run trials
    of one study."""
    if selected_storage() != "postgres":
        return None
    check_postgres_environment()
    from sqlalchemy.engine import URL

    environ = os.environ
    return URL.create(
        POSTGRES_SCHEME,
        username=environ[POSTGRES_ENV["username"]],
        password=environ[POSTGRES_ENV["password"]] or None,
        host=environ[POSTGRES_ENV["hostname"]],
        port=int(environ[POSTGRES_ENV["port"]]),
        database=environ[POSTGRES_ENV["db_name"]],
    ).render_as_string(hide_password=False)


def check_targets(instance, run_id: str, asset_key) -> dict[str, object]:
    """Per partition, the materialization ``run_id`` recorded of ``asset_key``, as the target
    of a check evaluation logged after it: a ranged run's per-day evaluations then attach to
    that day's new materialization, not to an older one (Dagster fills the target itself only
    for the check results a step returns, one per run). Private API: Dagster has no public
    name for the target."""
    import dagster as dg
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData,
    )

    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=1_000_000
    ).records
    targets = {}
    for record in records:
        event = record.event_log_entry.dagster_event
        if event.asset_key == asset_key and event.partition is not None:
            targets[event.partition] = AssetCheckEvaluationTargetMaterializationData(
                run_id=run_id, storage_id=record.storage_id, timestamp=record.timestamp
            )
    return targets


def check_postgres_environment(environ=os.environ) -> None:
    missing = [var for var in POSTGRES_ENV.values() if var not in environ]
    if missing:
        raise InstanceConfigError(
            f"the shared (postgres) instance reads its connection from the environment;"
            f" set {', '.join(missing)} (DAGSTER_PG_PASSWORD may be empty)"
        )


# Lock files this process holds, with how often: prepare_instance holds the lock while it opens
# the instance, whose storage (assets.platform.instance_storage) takes it again. flock would not let
# a second descriptor of one process in, so the process takes each lock once.
_held: dict[Path, int] = {}
_held_guard = threading.RLock()


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """The exclusive file lock ``path`` between processes; re-entrant within one."""
    path = Path(path).resolve()
    with _held_guard:
        if _held.get(path):
            _held[path] += 1
            try:
                yield
            finally:
                _held[path] -= 1
            return
        with open(path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            _held[path] = 1
            try:
                yield
            finally:
                del _held[path]
                fcntl.flock(handle, fcntl.LOCK_UN)


def version_rows(home: Path) -> dict[str, list[str]]:
    """``alembic_version`` rows of each versioned database that exists in ``home``."""
    rows = {}
    for relative in VERSIONED_DATABASES:
        path = home / relative
        if not path.exists():
            continue
        with contextlib.closing(sqlite3.connect(path)) as con:
            try:
                rows[relative] = [
                    r[0] for r in con.execute("SELECT version_num FROM alembic_version")
                ]
            except sqlite3.OperationalError:  # no table yet: the storage was never created
                rows[relative] = []
    return rows


def corrupted_databases(home: Path) -> dict[str, list[str]]:
    return {db: versions for db, versions in version_rows(home).items() if len(versions) > 1}


def _corruption_message(home: Path, corrupted: dict[str, list[str]]) -> str:
    listed = "; ".join(f"{db} has {len(v)} ({', '.join(v)})" for db, v in corrupted.items())
    return (
        f"the Dagster instance in {home} is corrupted: {listed} alembic_version rows instead of"
        " one, because two processes created its storage at the same moment. Stop every Dagster"
        f" process on this home, then run `DAGSTER_HOME={home} {REPAIR_COMMAND}`"
        " (it stamps the one current schema version and checks that the instance opens)."
    )


def check_instance(home: Path) -> None:
    corrupted = corrupted_databases(home)
    if corrupted:
        raise InstanceCorrupted(_corruption_message(home, corrupted))


def postgres_version_rows(instance) -> list[str]:
    """The ``alembic_version`` rows of a Postgres instance (its storages share one table)."""
    import sqlalchemy

    with instance.run_storage.connect() as conn:
        return [
            r[0] for r in conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version"))
        ]


def prepare_instance(
    home: str | os.PathLike, storage: str | None = None, log: Callable[[str], None] | None = None
) -> Path:
    """Create the instance's storage for ``home`` (which holds its ``dagster.yaml``) in this one
    process, under an exclusive lock, and check it. ``storage`` (default: the setting,
    :func:`selected_storage`) is written into the home's ``dagster.yaml`` first. Idempotent;
    raises :class:`InstanceCorrupted` for a home two processes already created at once and
    :class:`InstanceConfigError` for an unknown storage or a shared one without connection.
    A ``dagster.yaml`` naming the module paths from before the platform modules moved into
    ``assets/platform/`` is brought up to date first (:func:`migrate_moved_modules`; ``log``
    gets a line). The ``duckdb`` pool gets the limit of the deployment's warehouse
    (:func:`warehouse_pool_limit`). Runs whose worker process was killed are marked failed and
    their pool slots freed (:func:`assets.platform.run_workers.reap_dead_runs`; ``log`` gets a
    line for each)."""
    home = Path(home).resolve()
    storage = storage or selected_storage()
    if storage not in STORAGES:
        raise InstanceConfigError(f"unknown instance storage {storage!r}: one of {STORAGES}")
    if storage == "postgres":
        check_postgres_environment()
    pool_limit = warehouse_pool_limit()
    home.mkdir(parents=True, exist_ok=True)
    with exclusive(home / LOCK_FILE):
        if migrate_moved_modules(home) and log:
            log(f"{home / 'dagster.yaml'}: module paths updated to assets.platform")
        write_storage(home, storage)
        check_instance(home)
        import dagster as dg

        # Opening the instance creates its run, event log and schedule storages (and validates
        # dagster.yaml against Dagster's schema).
        with dg.DagsterInstance.from_config(str(home)) as instance:
            set_pool_limit(instance, pool_limit)
            from assets.platform.run_workers import reap_dead_runs

            reap_dead_runs(instance, log)
            if storage == "postgres":
                versions = postgres_version_rows(instance)
                if len(versions) != 1:
                    raise InstanceCorrupted(
                        f"the Postgres instance has {len(versions)} alembic_version rows"
                        f" ({', '.join(versions)}) instead of one"
                    )
        check_instance(home)
    return home


def _head_revision(storage_module: str) -> str:
    import importlib

    from alembic.script import ScriptDirectory
    from dagster._core.storage.sql import get_alembic_config

    module = importlib.import_module(storage_module)
    return ScriptDirectory.from_config(get_alembic_config(module.__file__)).as_revision_number(
        "head"
    )


def repair_instance(home: str | os.PathLike) -> list[str]:
    """Leave one ``alembic_version`` row, the head revision, in every database that has several.

    Corruption happens only while the storage is first created, by processes that each created
    every table at the current schema (``create_all``) and then stamped it; no later process
    could open the home, so nothing was written after. The current head is therefore the right
    version. Returns the databases repaired; the instance is opened afterwards to prove it."""
    home = Path(home).resolve()
    with exclusive(home / LOCK_FILE):
        repaired = []
        for relative in corrupted_databases(home):
            head = _head_revision(VERSIONED_DATABASES[relative])
            with contextlib.closing(sqlite3.connect(home / relative)) as con, con:
                con.execute("DELETE FROM alembic_version")
                con.execute("INSERT INTO alembic_version (version_num) VALUES (?)", [head])
            repaired.append(relative)
    prepare_instance(home)
    return repaired


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--home", default=os.environ.get("DAGSTER_HOME"), help="the home (default $DAGSTER_HOME)"
    )
    parser.add_argument(
        "--repair", action="store_true", help="repair a home two processes created at once"
    )
    args = parser.parse_args(argv)
    if not args.home:
        parser.error("set DAGSTER_HOME or pass --home")
    try:
        if args.repair:
            repaired = repair_instance(args.home)
            print(f"repaired {', '.join(repaired)}" if repaired else "nothing to repair")
        prepare_instance(args.home, log=lambda line: print(line, file=sys.stderr))
    except (InstanceCorrupted, InstanceConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    home = Path(args.home).resolve()
    where = (
        f"on PostgreSQL {os.environ['DAGSTER_PG_HOST']}:{os.environ['DAGSTER_PG_PORT']}"
        f"/{os.environ['DAGSTER_PG_DB']}"
        if storage_of(home) == "postgres"
        else "in SQLite files"
    )
    print(f"Dagster instance ready in {home} ({where})")
    return 0


if __name__ == "__main__":
    # Run as the module ``assets.platform.instance`` itself, not as a copy named ``__main__``:
    # opening the instance imports it (assets.platform.instance_storage), and the lock it holds is
    # known there.
    from assets.platform.instance import main as module_main

    sys.exit(module_main())
