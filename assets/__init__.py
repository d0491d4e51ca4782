"""The Dagster layer: the asset modules and the code location's definitions, with what they
declare with (``lib/``) and what they run on (``platform/``).

Thin by design: each asset reads its inputs, calls its step in ``recs_pipeline.steps`` (or one
or two other functions of the core), and reports metadata; no SQL and no dispatch between
local and distributed execution here (``tests/test_layers.py`` holds that). The folder's root holds only the asset modules and
``definitions.py``; what they declare with (partitions, run config, catalog tags, table
metadata, lineage) is in ``lib/``, and the machinery Dagster runs them on (the instance, the
executor, pool slots, the step preload, Kubernetes), the only code that imports Dagster's
private ``dagster._`` API, is in ``platform/`` (docs/layout.md says why;
``tests/test_layers.py`` holds it).

An asset body imports the step it calls (and torch with it) where it runs, once its run
config is checked, not at the top of its module: every Dagster process loads the code location
(the webserver's and the daemon's code servers, each run worker, every ``dagster`` and ``recs``
command), and only a step computes. What the assets declare with (settings, artifact and model
names) imports without torch, so loading the code location does not pay for it
(``tests/test_layers.py`` holds that too); the executor's fork server imports the steps once
per run, before it forks them (``platform/step_preload.py``).
"""

import warnings


def silence_unfixable_warnings() -> None:
    """Filter, narrowly, the warnings this project cannot fix at their cause:

    - Dagster's BetaWarning/PreviewWarning for the beta parameters the code location relies on
      (``backfill_policy``, ``allow_nonexistent_upstream_partitions``), raised while the asset
      modules are imported;
    - torch's "Sparse CSR tensor support is in beta state", raised once per process by the
      first CSR tensor (no argument opts out of it).
    """
    import dagster as dg

    for category in (dg.BetaWarning, dg.PreviewWarning):
        warnings.filterwarnings("ignore", category=category, module=r"(dagster|assets)(\.|$)")
    # Raised wherever a CSR tensor is first built: our code, or torch.load rebuilding a saved
    # adjacency (module torch._utils); the message is specific enough to filter on alone.
    warnings.filterwarnings(
        "ignore", message="Sparse CSR tensor support is in beta state", category=UserWarning
    )


# Before any asset module is imported, in every process that loads the code location (the main
# job, the CLI, the webserver's code server, the daemon, run workers): the beta warnings of the
# Dagster parameters the assets rely on say nothing a user can act on.
silence_unfixable_warnings()
