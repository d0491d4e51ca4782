"""Set-up of the Dagster instance in ``DAGSTER_HOME``: ``python -m assets.instance [--repair]``.

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
``make ui``, the tests and benchmarks that start servers). A home already corrupted this way is
reported with the command that repairs it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

# The SQLite databases whose schema Dagster versions with alembic, relative to the home, and the
# storage module whose alembic scripts name their head revision.
VERSIONED_DATABASES = {
    "history/runs.db": "dagster._core.storage.runs.sqlite.sqlite_run_storage",
    "history/runs/index.db": "dagster._core.storage.event_log.sqlite.sqlite_event_log",
    "schedules/schedules.db": "dagster._core.storage.schedules.sqlite.sqlite_schedule_storage",
}
LOCK_FILE = ".instance-setup.lock"
REPAIR_COMMAND = "python -m assets.instance --repair"


class InstanceCorrupted(RuntimeError):
    """The instance's storage was created twice at once; the message says how to repair it."""


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
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


def prepare_instance(home: str | os.PathLike) -> Path:
    """Create the instance's storage in ``home`` (which holds its ``dagster.yaml``) in this one
    process, under an exclusive lock, and check it. Idempotent; raises
    :class:`InstanceCorrupted` for a home two processes already created at once."""
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    with _exclusive(home / LOCK_FILE):
        check_instance(home)
        import dagster as dg

        # Opening the instance creates its run, event log and schedule storages.
        with dg.DagsterInstance.from_config(str(home)):
            pass
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
    with _exclusive(home / LOCK_FILE):
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
        prepare_instance(args.home)
    except InstanceCorrupted as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Dagster instance ready in {Path(args.home).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
