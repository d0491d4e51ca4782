"""``dagster-daemon`` for the tests' deployments (``tests/daemon_support.py``): Dagster's own
daemon CLI, with its backfill daemon looking for work every ``BACKFILL_INTERVAL_S`` seconds
instead of every 30 s.

Dagster's backfill daemon sleeps ``DEFAULT_DAEMON_INTERVAL_SECONDS`` (30 s) between iterations,
and a backfill is marked complete only at the iteration after its last run ended: on average
15 s of every test backfill were spent waiting for that tick, with nothing running. Everything
else is the real daemon, started the way ``dagster-daemon run ...`` starts it (the same
arguments). The same constant is the asset daemon's interval when the instance sets none; the
code location declares no automation conditions, so that daemon has nothing to evaluate."""

import sys

import dagster._daemon.controller as controller

# Often enough that a finished backfill is marked complete soon after its last run; seldom
# enough that the daemon's iterations (each evaluates the backfill) take little of 2 cores.
BACKFILL_INTERVAL_S = 3

if __name__ == "__main__":
    controller.DEFAULT_DAEMON_INTERVAL_SECONDS = BACKFILL_INTERVAL_S
    from dagster._daemon.cli import main

    sys.exit(main())
