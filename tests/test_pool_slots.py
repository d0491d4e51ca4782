"""A pool slot is claimed once, even on SQLite (the daemon backfill saw two steps of the
``duckdb`` pool overlap: Dagster's claim is select-then-update, and SQLite ignores FOR UPDATE)."""

import subprocess
import sys
import time
from collections import Counter

import dagster as dg

from assets.platform.pool_slots import SQLITE_STORAGES
from tests.daemon_support import PROJECT_ROOT, write_instance

PROCESSES = 6
ROUNDS = 12
ROUND_SECONDS = 0.4

# Each process claims one slot of pool r at the same moment as the others, round after round,
# as the run workers of a backfill claim the duckdb pool; it prints the pools it got.
CLAIMER = """
import sys, time
import dagster as dg
import assets.platform.executor  # the project's executor: what every run worker imports
home, start, rounds, step, me = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
storage = dg.DagsterInstance.from_config(home).event_log_storage
for r in range(rounds):
    time.sleep(max(0.0, start + r * step - time.time()))
    if storage.claim_concurrency_slot(f"pool{r}", f"run-{me}", "step").is_claimed:
        print(r, flush=True)
"""


def test_each_slot_of_a_limit_1_pool_is_claimed_once_on_sqlite(tmp_path):
    home = tmp_path / "dagster_home"
    write_instance(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        # The project's SQLite event log (assets/platform/instance_storage.py), Dagster's with
        # its engines kept: the claim below is still SQLite's.
        assert isinstance(instance.event_log_storage, SQLITE_STORAGES)
        for r in range(ROUNDS):
            instance.event_log_storage.set_concurrency_slots(f"pool{r}", 1)
    start = time.time() + 10  # after every process has imported dagster
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(home), str(start), str(ROUNDS)]
            + [str(ROUND_SECONDS), str(me)],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me in range(PROCESSES)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0] * PROCESSES, [e[-2000:] for _, e in outputs]
    claims = Counter(int(line) for out, _ in outputs for line in out.split())
    # Every pool was claimed, and none twice.
    assert claims == {r: 1 for r in range(ROUNDS)}, claims
