"""Daily partitions (UTC) and the project's paths and defaults."""

import datetime as dt
import os
from pathlib import Path

import dagster as dg

from recs_pipeline.split import SplitConfig

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("RECS_DATA_ROOT", PROJECT_ROOT / "data"))

# The first day a partition exists for. Set RECS_PARTITION_START (YYYY-MM-DD) before loading
# the code location when your logs start earlier.
PARTITION_START = os.environ.get("RECS_PARTITION_START", "2025-01-01")

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITION_START, timezone="UTC")

# Lineage of interaction_split(D) over raw_interactions(D-W+1 .. D) with the default window.
# A run may choose a different window in its config; the split reads whatever days it needs.
DEFAULT_WINDOW_DAYS = SplitConfig.window_days
DEFAULT_TEST_DAYS = SplitConfig.test_days


def partition_date(context: dg.AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)
