"""What the catalog shows about every asset besides its data: owner, tags, the warehouse pool,
and the freshness policy of what is live (live_recommendations); :func:`daily_asset` declares
them once for every daily asset."""

import datetime as dt
from collections.abc import Iterable

import dagster as dg

from assets.lib.partitions import daily_partitions
from assets.lib.tables import table_metadata
from assets.platform.instance import WAREHOUSE_POOL

# Who answers for the assets (the catalog's "Owners"; a team, not a person).
OWNERS = ["team:recs"]

# A newer day must have gone live within the 24 hours before 08:00 UTC each day: the policy of
# live_recommendations (assets/live.py), which moves only when a publication makes a newer day
# live, so a backfilled or re-run older day does not count. The schedule starts day D's run at
# 02:00; a day whose run failed, was not launched or was stopped by the quality gate makes no
# day live, and at 08:00 the asset turns stale (FAIL) in the catalog and the asset graph (the
# daemon's freshness evaluation, every 30 s).
PUBLICATION_FRESHNESS = dg.FreshnessPolicy.cron(
    deadline_cron="0 8 * * *", lower_bound_delta=dt.timedelta(hours=24), timezone="UTC"
)


def tags(layer: str) -> dict[str, str]:
    """Tags of an asset of ``layer`` (ingest, features, model, serving): filterable in the
    catalog."""
    return {"domain": "recommendations", "layer": layer}


def daily_asset(layer: str, *, writes: Iterable[str] = (), kinds: Iterable[str] = (), **asset):
    """``dg.asset`` for a daily partition of ``layer`` (its group, tags and owners). A step
    that ``writes`` warehouse tables opens the warehouse, so it is in the warehouse pool, of
    kind duckdb, and its table metadata names the tables (the first is its own); ``asset``
    holds the asset's other arguments."""
    tables = list(writes)
    if tables:
        asset["pool"] = WAREHOUSE_POOL
        asset["metadata"] = table_metadata(*tables) | asset.get("metadata", {})
        kinds = ["duckdb", *kinds]
    return dg.asset(
        partitions_def=daily_partitions,
        group_name=layer,
        kinds=set(kinds),
        owners=OWNERS,
        tags=tags(layer),
        **asset,
    )
