"""The runs' executor: forked step processes from a fork server primed before any pool claim; a
run of one step runs it in the run worker."""

import ast
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from assets.definitions import defs
from assets.ingest import raw_interactions
from assets.platform import run_workers
from assets.platform.executor import (
    IN_RUN_WORKER_TAG,
    PRELOAD_MODULE,
    available_cpus,
    forkserver_executor,
    threads_per_step,
)
from assets.platform.step_preload import instance_modules
from tests.daemon_support import write_instance

ROOT = Path(__file__).resolve().parents[1]


@dg.op(config_schema={"path": str})
def probe(context) -> None:
    """Records where its step process came from."""
    import torch

    Path(context.op_config["path"]).write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "parent": os.getppid(),
                "preloaded": PRELOAD_MODULE in sys.modules,
                "torch_threads": torch.get_num_threads(),
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            }
        )
    )


@dg.op
def beside() -> None:
    """A second step, so that the probe's run has steps to run side by side."""


@dg.job(executor_def=forkserver_executor)
def probe_job():
    probe()
    beside()


IN_RUN_WORKER = {IN_RUN_WORKER_TAG: "true"}


@dg.job(executor_def=forkserver_executor)
def probe_alone_job():
    probe()


@dg.job(executor_def=forkserver_executor)
def probe_in_run_worker_job():
    probe.tag(IN_RUN_WORKER)()


HELD_POOL = "held"


@dg.op(pool=HELD_POOL)
def pooled() -> None:
    """A step of a pool whose one slot another run holds."""


@dg.job(executor_def=forkserver_executor)
def pooled_job():
    pooled()


@dg.job(executor_def=forkserver_executor)
def pooled_in_run_worker_job():
    pooled.tag(IN_RUN_WORKER)()


@dg.job(executor_def=forkserver_executor)
def pooled_pair_job():
    pooled()
    beside()


def run_probe(tmp_path, start_method: str, job=probe_job) -> dict:
    """Run ``job`` as a run worker runs it, with the launchpad's ``start_method``; what
    its probe's step saw."""
    name = f"{job.name}_{start_method}"
    out = tmp_path / f"{name}.json"
    (tmp_path / name).mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / name)) as instance:
        result = dg.execute_job(
            dg.reconstructable(job),
            instance=instance,
            run_config={
                "ops": {"probe": {"config": {"path": str(out)}}},
                "execution": {"config": {"start_method": start_method}},
            },
        )
        assert result.success
    return json.loads(out.read_text())


def test_every_job_runs_on_the_primed_forkserver_executor():
    for name in ("daily_recommendations", "retrain_days", "ingest_days", "__ASSET_JOB"):
        assert defs.resolve_job_def(name).executor_def is forkserver_executor, name


def test_steps_are_forked_from_the_primed_server_and_spawn_restores_the_default(tmp_path):
    """By default a step process is forked from the run's fork server, which imported the
    preload; ``start_method: spawn`` starts each step as a child of the run worker."""
    # Here the run worker is this process: a spawned step is its child, a forked one the fork
    # server's.
    forked = run_probe(tmp_path, "forkserver")
    assert forked["preloaded"] and forked["parent"] != os.getpid()
    spawned = run_probe(tmp_path, "spawn")
    assert spawned["parent"] == os.getpid()


def test_a_run_of_one_tagged_step_runs_it_in_the_run_worker(tmp_path):
    """Nothing runs beside a lone step of the ingest: the run worker runs it itself rather than
    start a fork server that imports every step's modules, torch among them, for one fork. Only
    a step tagged so: an untagged one (training, say) is forked, so that its math libraries
    start with the run's thread share, and so is a tagged step beside another."""
    in_worker = run_probe(tmp_path, "forkserver", job=probe_in_run_worker_job)
    assert in_worker["pid"] == os.getpid()  # here the run worker is this process
    untagged = run_probe(tmp_path, "forkserver", job=probe_alone_job)
    assert untagged["pid"] != os.getpid() and untagged["preloaded"]
    with_another = run_probe(tmp_path, "forkserver")
    assert with_another["pid"] != os.getpid() and with_another["preloaded"]
    assert raw_interactions.op.tags[IN_RUN_WORKER_TAG] == "true"  # the ingest is tagged


def test_fork_server_has_imported_its_preload_when_priming_returns(tmp_path):
    """Priming returns only once the server has imported its modules, so no step that claims
    a pool slot afterwards waits for the server to boot."""
    probe = tmp_path / "probe"
    script = (
        "import time; from pathlib import Path;"
        " from assets.platform.executor import prime_fork_server\n"
        "prime_fork_server(['tests.preload_probe'])\n"
        f"pid, at = Path({str(probe)!r}).read_text().split()\n"
        "assert int(pid) != __import__('os').getpid() and float(at) <= time.time()\n"
        "print('primed')\n"
    )
    env = {**os.environ, "PRELOAD_PROBE": str(probe)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "primed"


def test_preload_covers_the_instance_storage_a_step_opens(tmp_path):
    assert instance_modules(None) == []
    assert instance_modules(str(tmp_path / "missing")) == []
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster_home" / "dagster.yaml").read_text())
    modules = instance_modules(str(home))
    assert {"dagster._core.storage.runs", "dagster._core.storage.event_log"} <= set(modules)

    # Opening the instance in a fresh interpreter imports ~500 modules (sqlalchemy, alembic,
    # Dagster's storage: ~1 s); after the preload's imports, only a few small ones remain.
    def new_modules(preload: bool) -> list[str]:
        # Only dagster and (with ``preload``) the modules named: the code location itself
        # imports some storage modules (assets.platform.pool_slots), which would warm the cold case.
        script = (
            "import importlib, json, sys, dagster as dg\n"
            f"[importlib.import_module(m) for m in {modules!r}] if {preload} else None\n"
            "before = set(sys.modules)\n"
            f"dg.DagsterInstance.from_config({str(home)!r})\n"
            "print(json.dumps(sorted(set(sys.modules) - before)))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    cold, preloaded = new_modules(False), new_modules(True)
    heavy = (
        "sqlalchemy",
        "alembic",
        "dagster._core.storage.runs",
        "dagster._core.storage.event_log",
    )
    assert any(m.startswith(heavy) for m in cold)
    assert not any(m.startswith(heavy) for m in preloaded), preloaded
    assert len(preloaded) * 10 < len(cold), (len(preloaded), len(cold))


def imported_in_functions(path: Path) -> set[str]:
    """The core modules ``path`` imports inside its functions (an asset body's step)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and inner.module:
                    found.add(inner.module)
                elif isinstance(inner, ast.Import):
                    found.update(alias.name for alias in inner.names)
    return {module for module in found if module.startswith("recs_pipeline.")}


def test_preload_imports_torch_and_the_steps_the_asset_bodies_import():
    """The code location imports no torch (tests/test_layers.py): an asset body imports its
    step where it runs. The fork server's preload imports every one of those, and torch, so
    that a forked step starts with them loaded."""
    steps = set().union(*(imported_in_functions(p) for p in (ROOT / "assets").glob("*.py")))
    assert {"recs_pipeline.steps.train", "recs_pipeline.steps.publish"} <= steps  # seen
    wanted = sorted(steps | {"torch", "scipy"})
    script = (
        "import json, sys\n"
        "import assets.platform.step_preload\n"
        f"print(json.dumps([m for m in {wanted!r} if m not in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == [], "assets/platform/step_preload.py misses these"


def test_threads_per_step_divide_the_cores_among_the_runs_the_queue_lets_run():
    """Issue 13, finding 11: each of max_concurrent_runs runs gets its share of the cores;
    OMP_NUM_THREADS, when set, wins."""
    assert threads_per_step(max_concurrent_runs=4, cpus=16, environ={}) == 4
    assert threads_per_step(max_concurrent_runs=4, cpus=2, environ={}) == 1
    assert threads_per_step(max_concurrent_runs=3, cpus=8, environ={}) == 2
    assert threads_per_step(max_concurrent_runs=1, cpus=8, environ={}) == 8
    # No run queue (runs start as launched: the CLI, an in-process run): the whole machine.
    assert threads_per_step(max_concurrent_runs=None, cpus=8, environ={}) == 8
    # An unlimited queue (-1): as many runs as there are cores, at worst.
    assert threads_per_step(max_concurrent_runs=-1, cpus=8, environ={}) == 1
    assert threads_per_step(max_concurrent_runs=4, cpus=16, environ={"OMP_NUM_THREADS": "3"}) == 3
    # The project's instance: max_concurrent_runs 4.
    with dg.DagsterInstance.from_config(str(ROOT / "dagster_home")) as instance:
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4
    assert available_cpus() >= 1


STEP_THREADS_SCRIPT = """
import json, sys
import dagster as dg
from tests.test_executor import probe_job
with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    result = dg.execute_job(
        dg.reconstructable(probe_job),
        instance=instance,
        run_config={"ops": {"probe": {"config": {"path": sys.argv[2]}}}},
    )
    assert result.success
"""


def test_a_step_process_runs_with_its_share_of_the_cores(tmp_path):
    """A step process of a run on the project's instance (max_concurrent_runs 4) runs torch with
    cores // 4 threads (at least 1), unless OMP_NUM_THREADS says otherwise. Each run is a fresh
    interpreter, as a run worker is (its fork server starts with the run's environment)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster_home" / "dagster.yaml").read_text())

    def step_saw(name: str, **env: str) -> dict:
        out = tmp_path / f"{name}.json"
        base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "DAGSTER_HOME")}
        done = subprocess.run(
            [sys.executable, "-c", STEP_THREADS_SCRIPT, str(home), str(out)],
            cwd=ROOT,
            env={**base, "DAGSTER_HOME": str(home), **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(out.read_text())

    expected = max(1, available_cpus() // 4)
    default = step_saw("default")
    assert default["torch_threads"] == expected, default
    assert default["omp_num_threads"] == str(expected), default
    chosen = 1 if expected != 1 else 2  # torch takes at most as many threads as cores
    overridden = step_saw("overridden", OMP_NUM_THREADS=str(chosen))
    assert overridden["torch_threads"] == chosen, overridden


def hold_the_pool(instance: dg.DagsterInstance):
    """The one slot of ``HELD_POOL`` held by a run in progress, ``other-run``, whose worker (this
    process) is alive; returns the instance's event log storage."""
    storage = instance.event_log_storage
    storage.set_concurrency_slots(HELD_POOL, 1)
    holder = dg.DagsterRun(
        job_name="holder",
        run_id="other-run",
        status=dg.DagsterRunStatus.STARTED,
        tags={run_workers.WORKER_TAG: run_workers.this_worker()},
    )
    instance.add_run(holder)
    assert storage.claim_concurrency_slot(HELD_POOL, "other-run", "other-step").is_claimed
    return storage


@pytest.mark.parametrize(
    "job", [pooled_in_run_worker_job, pooled_pair_job], ids=["in the run worker", "forked"]
)
def test_a_run_waiting_for_a_pool_slot_waits_instead_of_spinning(tmp_path, monkeypatch, job):
    """Its one step ready, the pool's one slot held by another run for a few seconds: Dagster's
    multiprocess loop asked for steps to start again at once, thousands of times a second, so
    every run worker waiting for the warehouse pool spun a core that the running step of
    another run needed. It now asks a few times a second."""
    from dagster._core.execution.plan.active import ActiveExecution

    asks = []
    ask = ActiveExecution.get_steps_to_execute

    def counted(self, limit=None):
        asks.append(time.monotonic())
        return ask(self, limit=limit)

    monkeypatch.setattr(ActiveExecution, "get_steps_to_execute", counted)
    hold_seconds = 3.0
    home = tmp_path / "home"
    write_instance(home)  # the project's instance: pools claimed per step (op granularity)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = hold_the_pool(instance)
        released = []

        def release() -> None:
            # hold_seconds from the run's first ask (after its start-up), then free the slot
            while not asks:
                time.sleep(0.05)
            time.sleep(hold_seconds)
            storage.free_concurrency_slots_for_run("other-run")
            released.append(time.monotonic())

        timer = threading.Thread(target=release)
        timer.start()
        try:
            result = dg.execute_job(dg.reconstructable(job), instance=instance)
        finally:
            timer.join()
    assert result.success
    # The loop asked until the slot was free (the step then ran), a few times a second (every
    # 0.2 s: ~15 asks in 3 s), not in a busy loop.
    waiting = [t for t in asks if t < released[0]]
    assert waiting[-1] - waiting[0] > hold_seconds / 2
    assert len(waiting) < 100, f"{len(waiting)} asks in {waiting[-1] - waiting[0]:.1f} s"


INTERRUPTED_SCRIPT = """
import sys
import dagster as dg
from dagster._utils.interrupts import capture_interrupts
from tests.test_executor import pooled_in_run_worker_job
# As a run worker runs its run: an interrupt (the UI's Terminate) is captured, not raised.
with dg.DagsterInstance.from_config(sys.argv[1]) as instance, capture_interrupts():
    result = dg.execute_job(dg.reconstructable(pooled_in_run_worker_job), instance=instance)
    print("success" if result.success else "stopped", flush=True)
"""


def test_a_step_waiting_for_a_slot_in_the_run_worker_stops_when_interrupted(tmp_path):
    """A run worker keeps the interrupt it receives (Terminate in the UI, Ctrl-C) for its steps;
    Dagster's in-process loop never looks for it while the step waits for a pool slot, so such a
    run waited, CANCELING, until the slot's holder ended (a training run: minutes). It now stops
    at once and gives up its place in the pool's queue."""
    home = tmp_path / "home"
    write_instance(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = hold_the_pool(instance)
        waiting = subprocess.Popen(
            [sys.executable, "-c", INTERRUPTED_SCRIPT, str(home)],
            cwd=ROOT,
            env={**os.environ, "DAGSTER_HOME": str(home)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            while not waiting_runs(storage):
                assert waiting.poll() is None and time.monotonic() < deadline, "never waited"
                time.sleep(0.2)
            # As the UI's Terminate: the run marked canceling, then its worker interrupted.
            (run_id,) = waiting_runs(storage)
            instance.report_run_canceling(instance.get_run_by_id(run_id))
            waiting.send_signal(signal.SIGINT)
            output, _ = waiting.communicate(timeout=30)
        finally:
            waiting.kill()
        assert waiting.returncode == 0 and output.strip().endswith("stopped"), output[-3000:]
        assert not waiting_runs(storage)
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED


def waiting_runs(storage) -> set[str]:
    """The runs with a step waiting for a slot of the held pool (not the holder)."""
    info = storage.get_concurrency_info(HELD_POOL)
    return {step.run_id for step in info.pending_steps} - {"other-run"}
