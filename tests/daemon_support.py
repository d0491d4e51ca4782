"""A real Dagster deployment on loopback for tests: ``dagster-webserver`` and ``dagster-daemon``
started as subprocesses on the project's ``workspace.yaml`` over a temporary instance, driven
through GraphQL the way the UI drives it."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import requests
import yaml
from dagster_graphql import DagsterGraphQLClient

from assets.platform.instance import prepare_instance
from recs_pipeline.data.synthetic import SyntheticLogSpec, write_landing_files

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The tests' deployment defaults (tests/conftest.py says why), for every process it starts.
TESTS_CONFIG = str(PROJECT_ROOT / "tests" / "recs.toml")
BIN = Path(sys.executable).parent

# The mutation the UI's "Launch backfill" button sends (LaunchAssetChoosePartitionsDialog).
LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

BACKFILL_STATUS = """
query BackfillStatus($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill { status error { message } }
    ... on Error { message }
  }
}
"""

BACKFILL = """
query Backfill($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill {
      status
      error { message }
      assetBackfillData {
        assetBackfillStatuses {
          __typename
          ... on AssetPartitionsStatusCounts {
            assetKey { path }
            numPartitionsTargeted
            numPartitionsInProgress
            numPartitionsMaterialized
            numPartitionsFailed
          }
        }
      }
    }
    ... on Error { message }
  }
}
"""

TAGGED_RUNS = """
query TaggedRuns($key: String!, $value: String!) {
  runsOrError(filter: {tags: [{key: $key, value: $value}]}) {
    __typename
    ... on Runs {
      results {
        runId
        status
        startTime
        endTime
        tags { key value }
        assetSelection { path }
      }
    }
    ... on Error { message }
  }
}
"""

LOCATIONS = """
query Locations {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}
"""

RUN_EVENTS = """
query RunEvents($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MessageEvent { message timestamp stepKey eventType }
        ... on ErrorEvent { error { message cause { message } } }
      }
    }
    ... on Error { message }
  }
}
"""

IN_PROGRESS = {"STARTING", "STARTED"}
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PROJECT_INSTANCE = PROJECT_ROOT / "dagster_home" / "dagster.yaml"


def project_instance_config() -> dict[str, Any]:
    """The project's ``dagster_home/dagster.yaml``: the DuckDB pool at limit 1 per op, its run
    buffer, runs queued by the QueuedRunCoordinator, at most ``max_concurrent_runs`` at once."""
    return yaml.safe_load(PROJECT_INSTANCE.read_text())


@contextlib.contextmanager
def instance_environment(instance_env: Mapping[str, str] | None) -> Iterator[None]:
    """``instance_env`` (``RECS_INSTANCE`` and ``DAGSTER_PG_*`` of a shared instance) in this
    process's environment while the block runs: Dagster resolves the ``env:`` values of
    ``dagster.yaml`` from it whenever an instance is opened."""
    with mock.patch.dict(os.environ, dict(instance_env or {})):
        yield


def write_instance(home: Path, instance_env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A fresh ``home`` with the project's instance settings, its storage created before any
    server or run starts (``assets.platform.instance``: two processes creating it at once can
    corrupt it); returns the settings. The storage is SQLite, or what ``instance_env`` selects
    (:meth:`tests.postgres_support.PostgresServer.environment`), never the caller's own
    ``RECS_INSTANCE``."""
    config = project_instance_config()
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    with instance_environment(instance_env):
        prepare_instance(home, storage=(instance_env or {}).get("RECS_INSTANCE", "sqlite"))
    return config


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while the block runs, so that ``finally`` clauses (stopping
    the servers) run when the test process is terminated."""

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Deployment:
    """``dagster-webserver`` and ``dagster-daemon`` on the project's ``workspace.yaml``.

    ``env`` is the whole environment of both, and so of the code servers and runs they start.
    Each starts in a process group of its own; :meth:`stop` ends both groups (the servers, their
    code servers, run workers and step processes), first with SIGTERM, then SIGKILL."""

    def __init__(self, env: Mapping[str, str], logs: Path):
        self.env = dict(env)
        self.logs = logs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        self.client = DagsterGraphQLClient("127.0.0.1", port_number=self.port, timeout=60)
        self.processes: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, *command: str) -> None:
        """``command``: a console script of the virtual environment, or ``-m`` and a module
        this interpreter runs."""
        if command[0] == "-m":
            argv = [sys.executable, *command]
        else:
            argv = [str(BIN / command[0]), *command[1:]]
        with open(self.logs / f"{name}.log", "wb") as log:
            self.processes[name] = subprocess.Popen(
                argv,
                cwd=PROJECT_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_webserver(self) -> None:
        self._start(
            "webserver",
            "dagster-webserver",
            *("-h", "127.0.0.1", "-p", str(self.port), "-w", "workspace.yaml"),
        )

    def start_daemon(self) -> None:
        """``dagster-daemon run``, its backfill daemon iterating every few seconds instead of
        every 30 s (``tests/dagster_daemon.py``)."""
        self._start("daemon", "-m", "tests.dagster_daemon", "run", "-w", "workspace.yaml")

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}")

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = requests.post(
            self.url, json={"query": query, "variables": variables or {}}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def wait_until_loaded(self, timeout: float) -> None:
        """Until the webserver answers and has loaded the code location."""
        deadline = time.monotonic() + timeout
        entries = None
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(requests.ConnectionError):
                entries = self.graphql(LOCATIONS)["workspaceOrError"].get("locationEntries")
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    failed = [
                        e
                        for e in entries
                        if e["locationOrLoadError"]["__typename"] == "PythonError"
                    ]
                    if failed:
                        raise RuntimeError(f"the code location failed to load: {failed}")
                    return
            time.sleep(0.5)
        raise TimeoutError(f"webserver not ready after {timeout} s: {entries}")

    def launch_backfill(self, params: dict[str, Any]) -> str:
        result = self.graphql(LAUNCH_BACKFILL, {"backfillParams": params})
        result = result["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"backfill not launched: {result}")
        return result["backfillId"]

    def backfill(self, backfill_id: str, detail: bool = True) -> dict[str, Any]:
        query = BACKFILL if detail else BACKFILL_STATUS
        result = self.graphql(query, {"backfillId": backfill_id})["partitionBackfillOrError"]
        if result["__typename"] != "PartitionBackfill":
            raise RuntimeError(f"backfill query failed: {result}")
        return result

    def runs_tagged(self, key: str, value: str) -> list[dict[str, Any]]:
        result = self.graphql(TAGGED_RUNS, {"key": key, "value": value})["runsOrError"]
        if result["__typename"] != "Runs":
            raise RuntimeError(f"runs query failed: {result}")
        return result["results"]

    def backfill_runs(self, backfill_id: str) -> list[dict[str, Any]]:
        return self.runs_tagged("dagster/backfill", backfill_id)

    def run_events(self, run_id: str) -> list[dict[str, Any]]:
        events, cursor = [], None
        while True:
            result = self.graphql(RUN_EVENTS, {"runId": run_id, "cursor": cursor})["logsForRun"]
            if result["__typename"] != "EventConnection":
                raise RuntimeError(f"event log query failed: {result}")
            events += result["events"]
            cursor = result["cursor"]
            if not result["hasMore"]:
                return events

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        # Whatever is left of either group (a code server, a run worker) goes now.
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def log_tails(self, lines: int = 80) -> str:
        out = []
        for name in self.processes:
            text = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()
            out.append(f"----- {name}.log, last {min(lines, len(text))} of {len(text)} lines -----")
            out.extend(text[-lines:])
        return "\n".join(out)


@dataclass
class BackfillOutcome:
    """What :func:`run_backfills` observed, read back through GraphQL before the services
    stopped (and ``tmp``, which holds the instance, warehouse and server logs)."""

    spec: SyntheticLogSpec
    tmp: Path
    partitions: int
    ingest_runs: list[dict] = field(default_factory=list)
    ingest_output: str = ""
    backfill_id: str = ""
    backfill: dict = field(default_factory=dict)
    runs: list[dict] = field(default_factory=list)
    events: dict[str, list[dict]] = field(default_factory=dict)
    max_in_progress: int = 0
    max_queued: int = 0
    server_logs: str = ""
    seconds: float = 0.0
    downstream_seconds: float = 0.0
    instance_env: dict[str, str] = field(default_factory=dict)

    @contextlib.contextmanager
    def open_instance(self) -> Iterator[Any]:
        """The instance the deployment used, opened here after the services stopped."""
        import dagster as dg

        with instance_environment(self.instance_env):
            with dg.DagsterInstance.from_config(str(self.tmp / "dagster_home")) as instance:
                yield instance

    @property
    def days(self) -> list[str]:
        return [(self.spec.start + dt.timedelta(days=i)).isoformat() for i in range(self.spec.days)]

    @property
    def backfilled_days(self) -> list[str]:
        return self.days[-self.partitions :]


def launch(deployment: Deployment, assets, partitions: list[str], run_config: str) -> str:
    """The parameters the UI's "Launch backfill" sends for an asset selection."""
    return deployment.launch_backfill(
        {
            "assetSelection": [{"path": list(asset.key.path)} for asset in assets],
            "partitionNames": partitions,
            "fromFailure": False,
            "runConfigData": run_config,
            "tags": [{"key": "test", "value": "daemon_backfill"}],
        }
    )


def wait_until_done(deployment: Deployment, outcome: BackfillOutcome, deadline: float) -> None:
    """Poll until the daemon marks the backfill done; record how many of its runs were queued
    and in progress at once."""
    while True:
        deployment.check_alive()
        status = Counter(run["status"] for run in deployment.backfill_runs(outcome.backfill_id))
        outcome.max_in_progress = max(outcome.max_in_progress, sum(status[s] for s in IN_PROGRESS))
        outcome.max_queued = max(outcome.max_queued, status["QUEUED"])
        state = deployment.backfill(outcome.backfill_id, detail=False)["status"]
        if state in BACKFILL_DONE:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"backfill {outcome.backfill_id} {state}, runs {status}")
        time.sleep(2)


def run_backfills(
    tmp: Path,
    spec: SyntheticLogSpec,
    partitions: int,
    downstream: list,
    run_config: str,
    timeout_s: float,
    instance_env: Mapping[str, str] | None = None,
) -> BackfillOutcome:
    """A real webserver and daemon over a temporary instance with the project's settings,
    warehouse, artifact store and landing folder holding ``spec``'s log, operated as
    docs/operating.md says: the whole history ingested in one run by ``dagster asset
    materialize`` (the single-run backfill policy of ``raw_interactions``), then a backfill of
    ``downstream`` over the newest ``partitions`` days with ``run_config``, launched through
    GraphQL as the UI launches it and executed by the daemon. The instance's storage is SQLite, or the shared
    one ``instance_env`` selects (every process of the deployment gets it)."""
    write_landing_files(spec, tmp / "landing")
    write_instance(tmp / "dagster_home", instance_env)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECS_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(tmp / "dagster_home"),
        RECS_WAREHOUSE=str(tmp / "warehouse.duckdb"),
        RECS_ARTIFACTS=str(tmp / "artifacts"),
        RECS_LANDING_ROOT=str(tmp / "landing"),
        RECS_PARTITION_START=spec.start.isoformat(),
        RECS_CONFIG=TESTS_CONFIG,  # never the project's own recs.toml
        # Several runs share few cores: one math thread per process, not several spinning.
        OMP_NUM_THREADS="1",
    )
    env.update(instance_env or {})
    deployment = Deployment(env, logs=tmp)
    started = time.monotonic()
    deadline = started + timeout_s
    outcome = BackfillOutcome(spec, tmp, partitions, instance_env=dict(instance_env or {}))
    with sigterm_raises():
        try:
            deployment.start_webserver()
            ingest = subprocess.run(
                [
                    str(BIN / "dagster"),
                    *("asset", "materialize", "-m", "assets.definitions"),
                    *("--select", "raw_interactions"),
                    *("--partition-range", f"{outcome.days[0]}...{outcome.days[-1]}"),
                ],
                cwd=PROJECT_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=max(1.0, deadline - time.monotonic()),
            )
            outcome.ingest_output = ingest.stdout[-4000:] + ingest.stderr[-4000:]
            if ingest.returncode != 0:
                raise RuntimeError(f"ingest failed:\n{outcome.ingest_output}")
            deployment.wait_until_loaded(timeout=300)
            outcome.ingest_runs = deployment.runs_tagged(
                "dagster/asset_partition_range_start", outcome.days[0]
            )
            # Launched before the daemon starts, so that its first backfill tick picks it up (the
            # tests' daemon then looks for backfill work every few seconds: dagster_daemon.py).
            outcome.backfill_id = launch(
                deployment, downstream, outcome.backfilled_days, run_config
            )
            downstream_started = time.monotonic()
            deployment.start_daemon()
            wait_until_done(deployment, outcome, deadline)
            outcome.downstream_seconds = time.monotonic() - downstream_started
            outcome.backfill = deployment.backfill(outcome.backfill_id)
            outcome.runs = deployment.backfill_runs(outcome.backfill_id)
            for run in outcome.runs + outcome.ingest_runs:
                outcome.events[run["runId"]] = deployment.run_events(run["runId"])
            outcome.seconds = time.monotonic() - started
        finally:
            deployment.stop()
            # pytest shows this only when a test using it fails.
            print(deployment.log_tails())
    outcome.server_logs = "\n".join(
        (tmp / f"{name}.log").read_text(errors="replace") for name in ("webserver", "daemon")
    )
    return outcome
