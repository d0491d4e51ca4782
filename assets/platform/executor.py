"""The executor of every run launched from the UI, the schedule or a backfill.

Dagster's multiprocess executor, with the forkserver start method and a fork server primed before
the run's first step: one server process per run imports what a step needs
(``assets.platform.step_preload``: the code location, polars, Dagster's instance storage) and forks
every step process of the run from it.

Why: a step of the ``duckdb`` pool claims the pool's single slot before its process starts, and
holds it until the process ends, so whatever a step process spends starting up is serialised
across all runs. With Dagster's default start method (spawn) each step process is a fresh
interpreter that imports the code location and the instance storage (~1–4 s); with a plain
forkserver, the first step of each run waits, slot held, for the server to boot (~4 s). Here the
server boots before any slot is claimed, and forked steps start in ~0.1 s.

A run whose only step is tagged :data:`IN_RUN_WORKER_TAG` (the ingest: ``recs ingest``, the
window's ingest of ``recs run``, the demo's, a UI backfill of ``raw_interactions``) runs it in the
run worker itself, as Dagster's in-process executor does: nothing runs beside it, and a step
process would only add a fork server's start-up (it imports every step's modules, torch among
them: a third of a one-day ``recs ingest``'s wall time). Only a step that runs no math library
may carry the tag: numpy is already loaded in the run worker, so the run's thread share below
would not reach its BLAS. A run interrupted (terminated from the UI, Ctrl-C) while its step waits
for a pool slot stops there, as a forked one does.

Threads: the step processes run torch with the run's share of the cores, ``cores //
max_concurrent_runs`` of the instance's run queue (at least 1), unless ``OMP_NUM_THREADS`` is
set: several runs each using every core slowed training ~60x in a UI backfill.
``benchmarks/backfill.py`` measures the difference on a daemon backfill.

Dead runs: before the run claims any slot, its worker records itself in the run's tags and
marks failed the runs whose worker was killed (their slots freed); while the run executes, a
watchdog thread does so again every few seconds, so a run waiting for the slot of a run killed
meanwhile gets it (``assets.platform.run_workers``). The step processes die with the run worker
(``assets.platform.step_preload``).

Waiting: while every step a run could start waits for a pool slot (or a retry) and none of its
steps runs, Dagster's multiprocess loop asks for steps to start again at once, ~190,000 times a
second: every run worker waiting for the warehouse pool spun a core that the step holding the
slot needed (its own wait, ``ActiveExecution.sleep_interval``, is 0 with claims pending in this
Dagster version). The run worker here pauses ``WAIT_SECONDS`` between such asks
(:func:`waiting_without_spinning`); Dagster still decides when a claim is retried.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator, Mapping

import dagster as dg
from annotated_types import Ge

# Dagster's own multiprocess executor and its retry settings; the project pins dagster.
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.executor.in_process import InProcessExecutor
from dagster._core.executor.multiprocess import MultiprocessExecutor
from dagster._utils.interrupts import pop_captured_interrupt

from assets.platform import pool_slots, run_workers
from recs_pipeline.infra import project_config

# Pool slots are claimed by this executor (in the run worker): on SQLite, atomically.
pool_slots.install()

PRELOAD_MODULE = "assets.platform.step_preload"
THREADS_VARIABLE = "OMP_NUM_THREADS"
# Dagster's executor puts this module first in any preload list; so does the priming, so that
# the server it starts is the one Dagster's executor would have started.
_DAGSTER_PRELOAD = "dagster._core.executor.multiprocess"
# The pause between asks for steps to start while all of a run's startable steps wait.
WAIT_SECONDS = 0.2
# An op tag ("true"): the step may run in the run worker when it is its run's only step. For a
# step that runs no math library (module docstring).
IN_RUN_WORKER_TAG = "recs/in_run_worker"


@contextlib.contextmanager
def waiting_without_spinning(interruptible: bool = False) -> Iterator[None]:
    """Within it, a run's ask for steps to start that finds none startable while none runs and
    the run is not over (its steps wait for pool slots or retries) pauses ``WAIT_SECONDS``
    before the executor's loop goes round again. Installed for one run's execution: a run
    worker executes one run. ``interruptible``: such an ask raises the interrupt the run worker
    received meanwhile (Dagster's in-process loop checks for none; its multiprocess loop does,
    and forwards it to its step processes)."""
    ask = ActiveExecution.get_steps_to_execute

    def get_steps_to_execute(self, limit=None):
        steps = ask(self, limit=limit)
        if not steps and not self.has_in_flight_steps and not self.is_complete:
            if interruptible and pop_captured_interrupt():
                raise dg.DagsterExecutionInterruptedError("interrupted while waiting to start")
            time.sleep(WAIT_SECONDS)
        return steps

    ActiveExecution.get_steps_to_execute = get_steps_to_execute
    try:
        yield
    finally:
        ActiveExecution.get_steps_to_execute = ask


def available_cpus() -> int:
    """The cores this process may run on (its affinity mask, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_step(max_concurrent_runs: int | None, cpus: int, environ: Mapping[str, str]) -> int:
    """Math threads (torch, OpenMP) for each step process of a run: ``OMP_NUM_THREADS`` when set,
    else the run's share of the cores when the queue lets ``max_concurrent_runs`` runs go at
    once: ``cpus // max_concurrent_runs``, at least 1. Without a queue (None) a run has the
    machine; an unlimited queue (-1) may run one run per core."""
    if environ.get(THREADS_VARIABLE, "").strip():
        return project_config.check_value(
            environ[THREADS_VARIABLE].strip(), int, env=THREADS_VARIABLE, constraints=[Ge(1)]
        )
    if max_concurrent_runs is None:
        return max(1, cpus)
    if max_concurrent_runs < 1:
        return 1
    return max(1, cpus // max_concurrent_runs)


def _why(queue) -> str:
    """Why the step processes get the threads :func:`threads_per_step` gives them, in words;
    ``queue``: the instance's run queue config (None: no queue)."""
    if os.environ.get(THREADS_VARIABLE, "").strip():
        return f"{THREADS_VARIABLE} is set"
    if queue is None:
        return f"{available_cpus()} cores, no run queue"
    share = (
        f"{available_cpus()} cores shared by up to {queue.max_concurrent_runs} runs"
        if queue.max_concurrent_runs > 0
        else "no limit on concurrent runs"
    )
    return f"{share}; set {THREADS_VARIABLE} to choose"


def runs_in_run_worker(execution_plan) -> bool:
    """Whether the plan's one step to execute carries :data:`IN_RUN_WORKER_TAG`."""
    keys = execution_plan.step_keys_to_execute
    if len(keys) != 1:
        return False
    tags = execution_plan.get_step_by_key(keys[0]).tags or {}
    return tags.get(IN_RUN_WORKER_TAG) == "true"


def prime_fork_server(preload: list[str]) -> None:
    """Start this process's fork server with ``preload`` imported, and wait until it serves.

    ``ensure_running`` only launches the server; the first process started through it blocks
    until the server has imported its preload modules. Starting and joining a no-op process
    waits for exactly that."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(preload)
    process = context.Process(target=os.getpid)
    process.start()
    process.join()


class DeadRunWatchdog:
    """Reaps runs whose worker died (:func:`assets.platform.run_workers.reap_dead_runs`) every
    ``interval`` seconds in a daemon thread, until stopped."""

    def __init__(self, instance: dg.DagsterInstance, log, interval: float) -> None:
        self._instance = instance
        self._log = log
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="dead-run-watchdog", daemon=True)

    def reap(self) -> None:
        try:
            run_workers.reap_dead_runs(self._instance, self._log)
        except Exception as error:  # a busy database: the next round tries again
            self._log(f"checking for runs whose worker died failed: {error!r}")

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            self.reap()

    def __enter__(self) -> DeadRunWatchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 5)


class PrimedForkserverExecutor(MultiprocessExecutor):
    """Dagster's ``MultiprocessExecutor`` whose fork server is started and ready before the run
    claims any pool slot."""

    def execute(self, plan_context, execution_plan) -> Iterator[dg.DagsterEvent]:
        queue = plan_context.instance.get_concurrency_config().run_queue_config
        threads = threads_per_step(
            queue.max_concurrent_runs if queue else None, available_cpus(), os.environ
        )
        in_run_worker = runs_in_run_worker(execution_plan)
        if in_run_worker:
            plan_context.log.info("its only step runs in the run worker (it runs no math library)")
        else:
            plan_context.log.info(f"step processes use {threads} math thread(s) ({_why(queue)})")
        # Before any slot is claimed: this worker in the run's tags, and the slots of runs
        # whose worker is gone freed.
        run_workers.record_run_worker(plan_context.instance, plan_context.run_id)
        watchdog = DeadRunWatchdog(
            plan_context.instance, plan_context.log.warning, run_workers.WATCH_SECONDS
        )
        watchdog.reap()
        # The step processes (and the fork server they are forked from) inherit the run
        # worker's environment; torch reads the variable when it starts. Set for this run only.
        previous = os.environ.get(THREADS_VARIABLE)
        os.environ[THREADS_VARIABLE] = str(threads)
        try:
            with watchdog, waiting_without_spinning(interruptible=in_run_worker):
                if in_run_worker:
                    yield from InProcessExecutor(
                        retries=self.retries, step_dependency_config=self.step_dependency_config
                    ).execute(plan_context, execution_plan)
                    return
                if self._start_method == "forkserver":
                    prime_fork_server([_DAGSTER_PRELOAD, PRELOAD_MODULE])
                yield from super().execute(plan_context, execution_plan)
        finally:
            if previous is None:
                os.environ.pop(THREADS_VARIABLE, None)
            else:
                os.environ[THREADS_VARIABLE] = previous


@dg.executor(
    name="multiprocess_forkserver",
    config_schema={
        "max_concurrent": dg.Field(
            dg.Noneable(int),
            default_value=None,
            description="Step processes at once; by default the number of CPUs.",
        ),
        "retries": get_retries_config(),
        "start_method": dg.Field(
            dg.Enum("StartMethod", [dg.EnumValue("forkserver"), dg.EnumValue("spawn")]),
            default_value="forkserver",
            description="forkserver: steps forked from the run's primed server (the default);"
            " spawn: a fresh interpreter per step, Dagster's default (slower to start, for"
            " code that must not be forked). A run of one step tagged recs/in_run_worker"
            " runs it in the run worker either way.",
        ),
    },
    requirements=dg.multiple_process_executor_requirements(),
)
def forkserver_executor(init_context: dg.InitExecutorContext) -> PrimedForkserverExecutor:
    """Steps in processes forked from a per-run server that has imported the code location."""
    config = init_context.executor_config
    return PrimedForkserverExecutor(
        retries=RetryMode.from_config(config["retries"]),
        max_concurrent=config["max_concurrent"],
        start_method=config["start_method"],
        explicit_forkserver_preload=[PRELOAD_MODULE],
    )
