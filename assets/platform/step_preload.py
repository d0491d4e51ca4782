"""Imported once per run of several steps by the executor's fork server
(``assets.platform.executor``) before it forks the run's step processes, so that a step starts
with everything it needs already loaded: the code location (dagster, duckdb), the steps its asset
bodies import where they run (with torch and scipy, ~1 s: the code location itself loads neither,
``assets/__init__.py`` says why), polars (which the core loads lazily, only where publication and
item features need it) and the storage classes of the Dagster instance that every step process
opens (their imports, sqlalchemy and alembic among them, take ~1 s).

It also makes every step process die with the run: a step forked from this server kills itself
as soon as the run worker (the server's parent) has ended. Without that, a run worker killed or
stopped left its step processes running as orphans, one holding the warehouse file's lock (the
server itself outlives its parent while any step it forked runs: each holds its end of the
server's "alive" pipe). Once the steps are gone, the server and Dagster's log tailers end too.
"""

import importlib
import os
import select
import signal
import threading
import time

import polars  # noqa: F401
import torch  # noqa: F401

import assets.definitions  # noqa: F401

# What the asset bodies import (tests/test_executor.py checks this list against them).
import recs_pipeline.evaluation.selection  # noqa: F401
import recs_pipeline.graph.bipartite  # noqa: F401
import recs_pipeline.graph.negatives  # noqa: F401
import recs_pipeline.steps.day  # noqa: F401
import recs_pipeline.steps.evaluate  # noqa: F401
import recs_pipeline.steps.publish  # noqa: F401
import recs_pipeline.steps.train  # noqa: F401


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


# The run worker: this server's parent. Steps watch it through a process file descriptor, which
# becomes readable when the process ends (Linux 5.3+); elsewhere they poll its PID.
_SERVER_PID = os.getpid()
_RUN_WORKER = os.getppid()
_forking_pid = 0
POLL_SECONDS = 1.0


def _open_run_worker() -> int | None:
    try:
        return os.pidfd_open(_RUN_WORKER)
    except (AttributeError, OSError):
        return None


_RUN_WORKER_FD = _open_run_worker()


def _before_fork() -> None:
    global _forking_pid
    _forking_pid = os.getpid()


def _wait_for_run_worker() -> None:
    if _RUN_WORKER_FD is not None:
        select.select([_RUN_WORKER_FD], [], [])
    else:
        while True:
            try:
                os.kill(_RUN_WORKER, 0)
            except ProcessLookupError:
                break
            time.sleep(POLL_SECONDS)
    os.kill(os.getpid(), signal.SIGKILL)


def _die_with_run_worker() -> None:
    """In a step process just forked from this server (not in a process a step forks): a
    daemon thread that kills the step as soon as the run worker has ended."""
    if _forking_pid != _SERVER_PID:
        return
    threading.Thread(target=_wait_for_run_worker, name="die-with-run-worker", daemon=True).start()


# Not where the server's parent is already gone (or is init: nothing to follow).
if _RUN_WORKER > 1:
    os.register_at_fork(before=_before_fork, after_in_child=_die_with_run_worker)
