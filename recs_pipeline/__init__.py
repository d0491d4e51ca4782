"""recs_pipeline: the domain core of the recommender pipeline.

Plain Python, DuckDB SQL, polars and torch. Nothing here imports Dagster, so every function is
usable from a notebook, a benchmark or a test.
"""
