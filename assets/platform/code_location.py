"""The code location as Dagster's own CLI reaches it: loaded in a code server from a workspace
file, its jobs' runs created as ``dagster job launch`` creates them, a job backfill recorded as
``dagster job backfill`` records one, and whether the instance queues runs.

Dagster has no public API for any of these; the ``recs`` command (``cli/launch.py``) uses them
through this module only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import dagster as dg


class LaunchError(RuntimeError):
    """The code location does not load, or a run cannot be created; the message says why."""


@dataclasses.dataclass
class Location:
    instance: dg.DagsterInstance
    workspace: object  # WorkspaceRequestContext
    location: object  # CodeLocation
    repository: object  # RemoteRepository

    def remote_job(self, name: str):
        return self.repository.get_full_job(name)

    def create_run(
        self, job_name: str, tags: Mapping[str, str], run_config: Mapping | None = None
    ) -> dg.DagsterRun:
        """A run of ``job_name`` (not started), as ``dagster job launch`` creates one."""
        from dagster._cli.job import _create_run

        return _create_run(
            instance=self.instance,
            code_location=self.location,
            remote_repo=self.repository,
            remote_job=self.remote_job(job_name),
            run_config=dict(run_config or {}),
            tags=dict(tags),
            op_selection=None,
            run_id=None,
        )

    def partition_tags(self, job_name: str, day: dt.date) -> dict[str, str]:
        from dagster._core.remote_representation.external_data import PartitionTagsSnap

        tags = self.location.get_partition_tags_from_repo(
            self.repository.handle, job_name, day.isoformat(), self.instance
        )
        if not isinstance(tags, PartitionTagsSnap):
            raise LaunchError(f"no partition {day} of {job_name}: {tags.error.message.strip()}")
        return dict(tags.tags)

    def day_run(self, job_name: str, day: dt.date, run_config: Mapping | None) -> dg.DagsterRun:
        return self.create_run(job_name, self.partition_tags(job_name, day), run_config)

    def backfill_runs(
        self, job_name: str, days: Sequence[dt.date], run_config: Mapping | None
    ) -> tuple[str, list[dg.DagsterRun]]:
        """A job backfill over ``days``, recorded as ``dagster job backfill`` records one: one
        run per day, each tagged with the backfill's id. Returns the id and the runs."""
        from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
        from dagster._core.execution.job_backfill import create_backfill_run
        from dagster._core.utils import make_new_backfill_id
        from dagster._time import get_current_timestamp
        from dagster._utils.merger import deep_merge_dicts

        remote_job = self.remote_job(job_name)
        partition_set = next(
            ps for ps in self.repository.get_partition_sets() if ps.job_name == job_name
        )
        names = [day.isoformat() for day in days]
        backfill = PartitionBackfill(
            backfill_id=make_new_backfill_id(),
            partition_set_origin=partition_set.get_remote_origin(),
            # Recorded as done once its runs exist: a requested job backfill would be picked up
            # by the daemon's backfill loop, which would create the runs a second time.
            status=BulkActionStatus.REQUESTED,
            partition_names=names,
            from_failure=False,
            reexecution_steps=None,
            tags={},
            backfill_timestamp=get_current_timestamp(),
        )
        params = self.location.get_partition_set_execution_params(
            repository_handle=self.repository.handle,
            partition_set_name=partition_set.name,
            partition_names=names,
            instance=self.instance,
        )
        if not hasattr(params, "partition_data"):
            raise LaunchError(f"cannot backfill {job_name}: {params.error.message.strip()}")
        runs = []
        for data in params.partition_data:
            config = deep_merge_dicts(dict(data.run_config or {}), dict(run_config or {}))
            run = create_backfill_run(
                self.workspace,
                self.instance,
                self.location,
                remote_job,
                partition_set,
                backfill,
                data.name,
                data.tags or {},
                config,
            )
            runs.append(run)
        self.instance.add_backfill(
            backfill.with_status(BulkActionStatus.COMPLETED).with_end_timestamp(
                get_current_timestamp()
            )
        )
        return backfill.backfill_id, runs


@contextlib.contextmanager
def open_workspace(instance: dg.DagsterInstance, workspace_file: Path) -> Iterator[object]:
    """The workspace (``WorkspaceRequestContext``) ``workspace_file`` describes, its code
    locations loaded in code servers, as ``dagster dev -w`` loads them."""
    from dagster import __version__
    from dagster._cli.workspace.cli_target import WorkspaceOpts, get_workspace_from_cli_opts

    opts = WorkspaceOpts(workspace=(str(workspace_file),))
    with get_workspace_from_cli_opts(instance, __version__, opts, log_level="warning") as context:
        yield context


def location_in(instance: dg.DagsterInstance, workspace, name: str) -> Location:
    """The code location ``name`` of a loaded ``workspace`` and its one repository."""
    location = workspace.get_code_location(name)
    repository = next(iter(location.get_repositories().values()))
    return Location(instance, workspace, location, repository)


def has_run_queue(instance: dg.DagsterInstance) -> bool:
    """Whether the instance queues submitted runs (``QueuedRunCoordinator`` in ``dagster.yaml``)
    rather than launching them at once."""
    from dagster._core.run_coordinator import QueuedRunCoordinator

    return isinstance(instance.run_coordinator, QueuedRunCoordinator)
