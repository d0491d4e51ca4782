"""The instance class named in ``dagster_home/dagster.yaml`` (``instance_class``): Dagster's
instance whose SQLite storage is created under the home's lock, whoever opens it.

``python -m assets.platform.instance`` creates a new home's storage once, under an exclusive lock,
and every entry point of the project calls it first (``assets/platform/instance.py`` says why).
Dagster's own commands do not: ``dagster dev`` and ``dagster asset materialize`` started together on
a new ``DAGSTER_HOME`` each created the storage and stamped its schema version, leaving two
``alembic_version`` rows (alembic's "more than one head present" for every later process) or
failing a process midway. Four processes opening a new home at once went wrong in 5 of 6 trials
here.

Every Dagster process reads the home's ``dagster.yaml``, so the lock is taken there: the
instance class's defaults name :class:`LockedSqliteStorage` as the storage (the default one
when ``dagster.yaml`` names none; a ``storage:`` section, the shared PostgreSQL one, still
wins). It is Dagster's SQLite storage created while the process holds the home's setup lock
(the one :func:`assets.platform.instance.prepare_instance` takes), after checking that the home is
not already corrupted, which is reported with the command that repairs it. Once the storage exists,
creating it again only checks its tables, so the lock is held for milliseconds.

Its event log is Dagster's SQLite one with each database kept open instead of reopened for every
event, and a ranged run's events written in batches (``assets/platform/event_log.py``): several
times faster per event, which a partition per day pays (docs/benchmarks/pipeline.md). On
PostgreSQL, Dagster's own batch write of materializations is turned on too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._serdes import ConfigurableClassData

from assets.platform.event_log import EVENT_BATCH, OpenSqliteEventLogStorage
from assets.platform.instance import LOCK_FILE, check_instance, exclusive


class LockedSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage in ``base_dir`` (the home), created under the home's lock, its
    event log the one that keeps its databases open (``assets/platform/event_log.py``)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        home = Path(base_dir)
        home.mkdir(parents=True, exist_ok=True)
        with exclusive(home / LOCK_FILE):
            check_instance(home)
            super().__init__(base_dir, inst_data=inst_data)
            events = self._event_log_storage
            self._event_log_storage = OpenSqliteEventLogStorage(events._base_dir)
            events.dispose()

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> LockedSqliteStorage:
        return cls(inst_data=inst_data, **config_value)


class ProjectInstance(dg.DagsterInstance):
    """Dagster's instance; by default on :class:`LockedSqliteStorage`."""

    def _get_event_batch_size(self) -> int:
        # Dagster sends the events it makes in batches (a run's planned materializations, a
        # ranged step's materializations) to store_event_batch only where this is above 0,
        # which its DAGSTER_EVENT_BATCH_SIZE sets. The project's SQLite event log writes a
        # batch in one transaction per database; Dagster's PostgreSQL one writes a batch of
        # materializations in one INSERT. Other storages keep Dagster's choice.
        # (dagster_postgres is imported wherever the event log is PostgreSQL's, and only
        # there: a SQLite home does not import psycopg2 for this.)
        postgres = sys.modules.get("dagster_postgres")
        storage = self.event_log_storage
        if isinstance(storage, OpenSqliteEventLogStorage) or (
            postgres is not None and isinstance(storage, postgres.PostgresEventLogStorage)
        ):
            return int(os.getenv("DAGSTER_EVENT_BATCH_SIZE", str(EVENT_BATCH)))
        return super()._get_event_batch_size()

    @classmethod
    def config_schema(cls) -> dict:
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> Mapping[str, ConfigurableClassData | None]:
        return {
            **InstanceRef.config_defaults(base_dir),
            "storage": ConfigurableClassData(
                __name__,
                LockedSqliteStorage.__name__,
                yaml.dump({"base_dir": base_dir}, default_flow_style=False),
            ),
        }
