"""Dagster layer: assets, checks, partitions, jobs, schedules and the Definitions object.

Thin by design: each asset reads its inputs, calls one or two functions of ``recs_pipeline``,
writes, and reports metadata.
"""
