"""Ingest a range of days into a warehouse, for tests/test_disk_full.py.

    python -m tests.disk_full_runner '<json job>'

The job names the warehouse, the landing root, the inclusive range ``[start, end]`` and, when
``fsize_limit`` is set, caps the size of every file this process writes (``RLIMIT_FSIZE``, with
``SIGXFSZ`` ignored, so that a write past it fails with EFBIG like a full disk fails with
ENOSPC). It prints one JSON line: ``RUNNER RESULT {"success", "error", "metadata"}`` with the
message of the error the asset raised (under Dagster's step wrapper) and its metadata. Same assets and resources as production.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    job = json.loads(argv[0])
    if job.get("fsize_limit"):
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (job["fsize_limit"], job["fsize_limit"]))
    import dagster as dg

    from assets.ingest import raw_interactions
    from assets.lib.partitions import range_tags
    from resources import LogSource, Warehouse

    start, end = job["range"]
    result = dg.materialize(
        [raw_interactions],
        instance=dg.DagsterInstance.ephemeral(),
        resources={
            "warehouse": Warehouse(database=job["warehouse"]),
            "log_source": LogSource(landing_root=job["landing"]),
        },
        tags=range_tags(start, end),
        raise_on_error=False,
    )
    error, metadata = None, {}
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        info = data.error  # the user code's error, under Dagster's step wrapper
        while info is not None and info.cls_name == "DagsterExecutionStepExecutionError":
            info = info.cause
        error = info.message if info is not None else None
        if data.user_failure_data is not None:
            metadata = {key: value.value for key, value in data.user_failure_data.metadata.items()}
    print(
        "RUNNER RESULT "
        + json.dumps(
            {"success": result.success, "error": error, "metadata": metadata}, default=str
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
