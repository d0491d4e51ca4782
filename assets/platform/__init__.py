"""The machinery Dagster runs the assets on: the instance, the executor, pool slots, the steps'
preload, dead run workers, Kubernetes and the code location as the ``recs`` command reaches it.

Nothing here declares an asset. It is the project's only code that imports Dagster's private
API (``dagster._``: tests/test_layers.py fails on any such import elsewhere), so it is the one
folder to re-check on every Dagster upgrade (``pyproject.toml`` pins ``dagster``): run
``tests/test_instance.py``, ``test_executor.py``, ``test_pool_slots.py``,
``test_dead_runs.py``, ``test_k8s_deploy.py``, ``test_cli.py`` and ``test_daemon_backfill.py``,
and read each name below against the new release.

Private modules named here (tests/test_layers.py keeps this list equal to the imports):

- ``dagster._cli.job``: ``_create_run``, a run as ``dagster job launch`` creates it
  (code_location)
- ``dagster._cli.workspace.cli_target``: the workspace from ``workspace.yaml`` (code_location)
- ``dagster._core.definitions.asset_checks.asset_check_evaluation``: the target of a check
  evaluation logged after its materialization (instance.check_targets)
- ``dagster._core.definitions.job_base``: ``InMemoryJob``, the job a run recorded through the
  code location executes as in this process (code_location)
- ``dagster._core.definitions.selector``: ``JobSubsetSelector``, a run of some of a job's
  assets as the UI's launchpad creates it (code_location)
- ``dagster._core.events``: ``JobFailureData``, ``RunFailureReason`` (run_workers)
- ``dagster._core.execution.api``: ``ExecuteRunWithPlanIterable``, ``create_execution_plan``,
  ``job_execution_iterator``: what ``execute_in_process`` runs, for a run created beforehand
  (code_location)
- ``dagster._core.execution.backfill``: ``PartitionBackfill``, ``BulkActionStatus``
  (code_location)
- ``dagster._core.execution.context_creation_job``: ``PlanOrchestrationContextManager``,
  ``orchestration_context_event_generator``, likewise (code_location)
- ``dagster._core.execution.job_backfill``: ``create_backfill_run`` (code_location)
- ``dagster._core.execution.plan.active``: ``ActiveExecution.get_steps_to_execute``, wrapped
  for one run so that a run waiting for a pool slot does not spin (executor)
- ``dagster._core.execution.retries``: ``RetryMode``, ``get_retries_config`` (executor)
- ``dagster._core.executor.in_process``: ``InProcessExecutor``, which runs a run of one tagged
  step in the run worker (executor)
- ``dagster._core.executor.multiprocess``: ``MultiprocessExecutor``, subclassed; its
  ``_start_method`` is read and its module is the fork server's first preload (executor)
- ``dagster._core.instance.ref``: ``InstanceRef`` (instance_storage, step_preload)
- ``dagster._core.launcher``: ``DefaultRunLauncher``, subclassed, and its health check types
  (run_workers)
- ``dagster._core.remote_representation.external_data``: ``PartitionTagsSnap`` (code_location)
- ``dagster._core.run_coordinator``: ``QueuedRunCoordinator`` (code_location)
- ``dagster._core.storage.event_log.schema``: ``ConcurrencySlotsTable`` (pool_slots)
- ``dagster._core.storage.event_log.sqlite.consolidated_sqlite_event_log`` and
  ``dagster._core.storage.event_log.sqlite.sqlite_event_log``: the SQLite event log storages,
  whose ``_claim_concurrency_slot`` pool_slots replaces when the executor is imported;
  ``SqliteEventLogStorage``, subclassed to keep the databases open (event_log: it overrides
  ``_connect``, ``store_event_batch``, ``has_table``, ``_has_asset_key_col_on_connection``,
  ``watch``, ``wipe``, ``dispose`` and ``from_config_value``, and calls ``_initdb``), and
  ``SqliteEventLogStorageWatchdog``, subclassed (its ``_log_path``, ``_process_log`` and
  watchdog's ``_patterns``)
- ``dagster._core.storage.runs.sqlite.sqlite_run_storage`` and
  ``dagster._core.storage.schedules.sqlite.sqlite_schedule_storage``: with the event log's,
  the alembic scripts that name a SQLite database's head revision (instance.repair_instance)
- ``dagster._core.storage.sql``: ``get_alembic_config`` (instance)
- ``dagster._core.storage.sqlalchemy_compat``: ``db_select`` (pool_slots)
- ``dagster._core.storage.sqlite_storage``: ``DagsterSqliteStorage``, subclassed
  (instance_storage)
- ``dagster._core.utils``: ``make_new_backfill_id`` (code_location)
- ``dagster._serdes``: ``ConfigurableClassData`` (instance_storage, event_log)
- ``dagster._time``: ``get_current_timestamp`` (code_location)
- ``dagster._utils.concurrency``: ``ConcurrencySlotStatus`` (pool_slots)
- ``dagster._utils.interrupts``: ``pop_captured_interrupt``, the run worker's interrupt while
  that step waits for a pool slot (executor)
- ``dagster._utils.merger``: ``deep_merge_dicts`` (code_location)

One private method of a public class is overridden: ``DagsterInstance._get_event_batch_size``
(instance_storage.ProjectInstance), which turns Dagster's event batches on for the project's
event log.

The home's ``dagster.yaml`` names two modules of this folder (``instance_storage``,
``run_workers``): :func:`assets.platform.instance.prepare_instance` rewrites the paths a home
created before they moved here still names.
"""
