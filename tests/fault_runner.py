"""Materialise one asset of the pipeline in this process, for the fault tests to SIGKILL.

    python -m tests.fault_runner '<json job>'

The job names the asset, the partition (or an inclusive range ``[start, end]`` for a
single-run backfill of ``raw_interactions``), the run config and the resources' locations
(``warehouse``, ``artifacts``, ``landing``). The runner prints ``RUNNER START`` once Dagster is
imported (so the parent can tell start-up from work) and ``RUNNER DONE <success>`` at the end;
Dagster's own event log goes to stderr. It changes nothing in the product: the same assets, the
same resources as ``dg.materialize`` in the tests.

A job with ``sigkill_at`` (``"module.name"``: a function as the product's code looks it up,
e.g. ``recs_pipeline.steps.publish.export_published``) dies by SIGKILL, its own, the moment the step calls
that function, after printing ``RUNNER SIGKILL``: a kill at an exact point of a step, where a
kill timed from outside would hit a window of milliseconds only by luck.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys


def sigkill_at(target: str) -> None:
    """Replace the function ``target`` (``module.name``) by a SIGKILL of this process."""
    module_name, _, name = target.rpartition(".")
    module = importlib.import_module(module_name)
    getattr(module, name)  # the name must exist: a typo would never fire

    def die(*_args, **_kwargs):
        print(f"RUNNER SIGKILL at {target}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(module, name, die)


def main(argv: list[str]) -> int:
    job = json.loads(argv[0])
    import dagster as dg

    from assets.definitions import ALL_ASSETS
    from assets.lib.partitions import range_tags
    from resources import ArtifactStore, ComputeEngine, LogSource, Warehouse

    resources = {
        "warehouse": Warehouse(database=job["warehouse"]),
        "artifacts": ArtifactStore(root=job["artifacts"]),
        "log_source": LogSource(landing_root=job["landing"]),
        "engine": ComputeEngine(),
    }
    kwargs: dict = {}
    if "range" in job:
        start, end = job["range"]
        kwargs["tags"] = range_tags(start, end)
    else:
        kwargs["partition_key"] = job["partition"]
    if "sigkill_at" in job:
        sigkill_at(job["sigkill_at"])
    print("RUNNER START", flush=True)
    result = dg.materialize(
        ALL_ASSETS,
        selection=[job["asset"]],
        instance=dg.DagsterInstance.ephemeral(),
        resources=resources,
        run_config=job.get("run_config") or {},
        raise_on_error=False,
        **kwargs,
    )
    print(f"RUNNER DONE {result.success}", flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
