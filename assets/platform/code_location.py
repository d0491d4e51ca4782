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
        self,
        job_name: str,
        tags: Mapping[str, str],
        run_config: Mapping | None = None,
        asset_selection: Sequence[dg.AssetKey] | None = None,
    ) -> dg.DagsterRun:
        """A run of ``job_name`` (not started), as ``dagster job launch`` creates one; with
        ``asset_selection``, of those of the job's assets only, as the UI's launchpad creates
        a run of a selection (the job's subset, under the job's name)."""
        if asset_selection is not None:
            return self._create_subset_run(job_name, tags, run_config or {}, asset_selection)
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

    def _create_subset_run(
        self,
        job_name: str,
        tags: Mapping[str, str],
        run_config: Mapping,
        asset_selection: Sequence[dg.AssetKey],
    ) -> dg.DagsterRun:
        """``dagster._cli.job._create_run`` with an asset selection (which it does not take):
        the subset job, its execution plan and the run, as the webserver's launch creates
        them (dagster_graphql's ``create_valid_pipeline_run``)."""
        from dagster._core.definitions.selector import JobSubsetSelector

        selector = JobSubsetSelector(
            location_name=self.location.name,
            repository_name=self.repository.name,
            job_name=job_name,
            op_selection=None,
            asset_selection=list(asset_selection),
        )
        remote_job = self.location.get_job(selector)
        plan = self.location.get_execution_plan(
            remote_job, dict(run_config), step_keys_to_execute=None, known_state=None,
            instance=self.instance,
        ).execution_plan_snapshot  # fmt: skip
        return self.instance.create_run(
            job_name=job_name,
            run_id=None,
            run_config=dict(run_config),
            resolved_op_selection=None,
            step_keys_to_execute=plan.step_keys_to_execute,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags=dict(tags),
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=frozenset(asset_selection),
            asset_check_selection=None,
            asset_graph=self.repository.asset_graph,
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


def execute_recorded_run(
    job_def: dg.JobDefinition,
    run: dg.DagsterRun,
    instance: dg.DagsterInstance,
    run_config: Mapping,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """Execute ``run``, created through the code location (:meth:`Location.create_run`: the
    repository's origin, the job's snapshot, its tags and asset selection), in this process,
    as ``job_def.execute_in_process`` executes the run it creates itself: in-process executor,
    ``job_def``'s resources and loggers and ``run_config`` (``run``'s with this process's
    loggers named, which the code location's job does not declare). What the run records is
    the code location's; what executes is ``job_def``, the same job."""
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.execution.api import (
        ExecuteRunWithPlanIterable,
        create_execution_plan,
        job_execution_iterator,
    )
    from dagster._core.execution.context_creation_job import (
        PlanOrchestrationContextManager,
        orchestration_context_event_generator,
    )

    # The steps read the run config from the run: the same run, the loggers named (what is
    # stored stays the code location's run config).
    run = run._replace(run_config=dict(run_config))
    selection = sorted(run.asset_selection) if run.asset_selection else None
    job = InMemoryJob(
        job_def.as_ephemeral_job(resource_defs={}, input_values={}, asset_selection=selection)
    )
    plan = create_execution_plan(
        job,
        run_config=run_config,
        instance_ref=instance.get_ref() if instance.is_persistent else None,
        tags=run.tags,
    )
    output_capture: dict = {}
    events = list(
        ExecuteRunWithPlanIterable(
            execution_plan=plan,
            iterator=job_execution_iterator,
            execution_context_manager=PlanOrchestrationContextManager(
                context_event_generator=orchestration_context_event_generator,
                job=job,
                execution_plan=plan,
                dagster_run=run,
                instance=instance,
                run_config=run_config,
                executor_defs=None,
                output_capture=output_capture,
                raise_on_error=raise_on_error,
            ),
        )
    )
    return dg.ExecuteInProcessResult(
        event_list=events,
        dagster_run=instance.get_run_by_id(run.run_id),
        output_capture=output_capture,
        job_def=job.get_definition(),
    )


def has_run_queue(instance: dg.DagsterInstance) -> bool:
    """Whether the instance queues submitted runs (``QueuedRunCoordinator`` in ``dagster.yaml``)
    rather than launching them at once."""
    from dagster._core.run_coordinator import QueuedRunCoordinator

    return isinstance(instance.run_coordinator, QueuedRunCoordinator)
