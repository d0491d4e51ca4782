"""Imported once per run by the executor's fork server (``assets.executor``) before it forks the
run's step processes, so that a step starts with everything it needs already loaded: the code
location (dagster, torch, duckdb), polars (which the code location loads lazily, only where
publication and item features need it) and the storage classes of the Dagster instance that
every step process opens (their imports, sqlalchemy and alembic among them, take ~1 s)."""

import importlib
import os

import polars  # noqa: F401

import assets.definitions  # noqa: F401


def instance_modules(dagster_home: str | None) -> list[str]:
    """The modules named by the instance config in ``dagster_home`` (none without one)."""
    if not dagster_home or not os.path.isdir(dagster_home):
        return []
    # Reads dagster.yaml only: nothing is opened or connected here (a connection would not
    # survive the fork).
    from dagster._core.instance.ref import InstanceRef

    ref = InstanceRef.from_dir(dagster_home)
    named = [
        ref.storage_data,
        ref.run_storage_data,
        ref.event_storage_data,
        ref.schedule_storage_data,
        ref.compute_logs_data,
        ref.local_artifact_storage_data,
    ]
    return list(dict.fromkeys(data.module_name for data in named if data is not None))


for _module in instance_modules(os.environ.get("DAGSTER_HOME")):
    importlib.import_module(_module)
