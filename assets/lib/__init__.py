"""What the asset modules declare with: partitions, run config, catalog tags, table metadata,
shard logs, lineage and training curves.

- ``partitions``: the daily partitions and the project's paths;
- ``settings``: the run config, generated from the core's declared settings;
- ``catalog``: the catalog's owners, tags and freshness policy;
- ``tables``: the warehouse tables' metadata;
- ``shard_log``: what the sharded steps log and report about their shards;
- ``lineage``: which run an upstream artifact must come from;
- ``curves``: a training run's curve over its epochs, as the UI renders it within one run.

Helpers of the declarations, on Dagster's public API only; no asset is defined here (the asset
modules are the folder above's).
"""
