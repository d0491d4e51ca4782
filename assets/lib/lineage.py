"""Which run an upstream artifact must come from.

The run queue starts at most one run per partition (``dagster_home/dagster.yaml``), but CLI
runs (``dagster asset materialize``) and ``dg.materialize`` bypass the queue. So a step that
reads an upstream asset this same run materialised checks that the artifact was written by this
run: if another run of the partition overwrote it in between, the step fails instead of mixing
the two runs' data. :func:`step_lineage` answers it once per step, as a
:class:`~recs_pipeline.infra.artifacts.Lineage` every read of the step consults.
"""

import dagster as dg

from recs_pipeline.infra.artifacts import DayArtifacts, Lineage, UrlArtifactStore


def step_lineage(context: dg.AssetExecutionContext) -> Lineage:
    """This run's id and the assets it materialises (those among the steps it executes): an
    upstream artifact of one of them must be this run's."""
    run = context.run
    # The steps a run executes are its most precise description (a re-execution from failure
    # lists only the steps it reruns, reusing the parent run's output of the others); runs
    # launched without them execute their job's whole (possibly subset) graph.
    if run.step_keys_to_execute is not None:
        selected = set(run.step_keys_to_execute)
    elif run.asset_selection:
        selected = {key.to_user_string() for key in run.asset_selection}
    else:
        selected = {node.name for node in context.job_def.graph.nodes}
    return Lineage(context.run_id, frozenset(selected))


def step_day(context: dg.AssetExecutionContext, store: UrlArtifactStore) -> DayArtifacts:
    """The step's partition's artifacts in ``store``, read with the step's lineage."""
    return DayArtifacts(store, context.partition_key, step_lineage(context))
