"""A real Dagster deployment on loopback for tests: ``dagster-webserver`` and ``dagster-daemon``
started as subprocesses on the project's ``workspace.yaml`` over a temporary instance, driven
through GraphQL the way the UI drives it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import requests
import yaml
from dagster_graphql import DagsterGraphQLClient

PROJECT_ROOT = Path(__file__).resolve().parents[1]
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

BACKFILL_RUNS = """
query BackfillRuns($backfillId: String!) {
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $backfillId}]}) {
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


def write_instance(home: Path, max_concurrent_runs: int, run_buffer: int) -> dict[str, Any]:
    """The project's ``dagster_home/dagster.yaml`` (the DuckDB pool at limit 1 per op, runs
    queued by the QueuedRunCoordinator) in ``home``, with at most ``max_concurrent_runs`` runs
    in progress of which ``run_buffer`` may have started while their first step waits for the
    pool (so that they start their processes while another run holds the pool's slot)."""
    config = yaml.safe_load((PROJECT_ROOT / "dagster_home" / "dagster.yaml").read_text())
    config["concurrency"]["runs"]["max_concurrent_runs"] = max_concurrent_runs
    config["concurrency"]["pools"]["op_granularity_run_buffer"] = run_buffer
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
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
        with open(self.logs / f"{name}.log", "wb") as log:
            self.processes[name] = subprocess.Popen(
                [str(BIN / command[0]), *command[1:]],
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
        self._start("daemon", "dagster-daemon", "run", "-w", "workspace.yaml")

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

    def backfill_runs(self, backfill_id: str) -> list[dict[str, Any]]:
        result = self.graphql(BACKFILL_RUNS, {"backfillId": backfill_id})["runsOrError"]
        if result["__typename"] != "Runs":
            raise RuntimeError(f"runs query failed: {result}")
        return result["results"]

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
