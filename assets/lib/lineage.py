"""Which run an upstream artifact must come from.

The run queue starts at most one run per partition (``dagster_home/dagster.yaml``), but CLI
runs (``dagster asset materialize``) and ``dg.materialize`` bypass the queue. So a step that
reads an upstream asset this same run materialised checks that the artifact was written by this
run: if another run of the partition overwrote it in between, the step fails instead of mixing
the two runs' data.
"""

import dagster as dg


def expected_writer(context: dg.AssetExecutionContext, upstream: str) -> str | None:
    """This run's id when this run materialises ``upstream`` before the current step (it is in
    the run's asset selection and among the steps it executes), else None (any writer will do:
    the artifact is an earlier run's output)."""
    run = context.run
    # The steps a run executes are its most precise description (a re-execution from failure
    # lists only the steps it reruns, reusing the parent run's output of the others); runs
    # launched without them execute their job's whole (possibly subset) graph.
    if run.step_keys_to_execute is not None:
        selected = upstream in run.step_keys_to_execute
    elif run.asset_selection:
        selected = dg.AssetKey(upstream) in run.asset_selection
    else:
        selected = context.job_def.has_node_named(upstream)
    return context.run_id if selected else None
