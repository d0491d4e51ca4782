"""Daily partitions (UTC) and the project's paths and defaults."""

import datetime as dt

import dagster as dg

from assets.lib.settings import SplitSettings
from recs_pipeline.infra import project_config

DATA_ROOT = project_config.data_root()

# The first day a partition exists for, read by every process that loads the code location
# (UI, daemon, CLI): RECS_PARTITION_START, else the project config file's partition_start
# (`python -m cli.profile --write` sets it to the log's first day), else 2025-01-01.
PARTITION_START = project_config.setting("partition_start")

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITION_START, timezone="UTC")

# Lineage of interaction_split(D) over raw_interactions(D-W+1 .. D) with the default window
# (the deployment's, when the project config file sets one). A run may choose a different
# window in its config; the split reads whatever days it needs.
DEFAULT_WINDOW_DAYS = SplitSettings.model_fields["window_days"].default
DEFAULT_TEST_DAYS = SplitSettings.model_fields["test_days"].default


def partition_date(context: dg.AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def range_tags(start: dt.date | str, end: dt.date | str) -> dict[str, str]:
    """The tags of one run over the partition range [start, end] (both included): what the
    UI's and the CLI's ranged launches set, for ``dg.materialize`` and friends."""
    return {
        "dagster/asset_partition_range_start": str(start),
        "dagster/asset_partition_range_end": str(end),
    }
