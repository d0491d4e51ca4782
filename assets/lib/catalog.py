"""What the catalog shows about every asset besides its data: owner, tags, and the freshness
policy of what is live (live_recommendations)."""

import datetime as dt

import dagster as dg

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
