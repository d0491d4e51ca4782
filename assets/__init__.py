"""Dagster layer: assets, checks, partitions, jobs, schedules and the Definitions object.

Thin by design: each asset reads its inputs, calls one or two functions of ``recs_pipeline``,
writes, and reports metadata.
"""

from recs_pipeline.console import silence_unfixable_warnings

# Before any asset module is imported, in every process that loads the code location (the main
# job, the CLI, the webserver's code server, the daemon, run workers): the beta warnings of the
# Dagster parameters the assets rely on say nothing a user can act on.
silence_unfixable_warnings()
