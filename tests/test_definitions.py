"""The code location loads and validates, and declares what operating it relies on."""

import datetime as dt
from pathlib import Path

import dagster as dg
import yaml

from assets.definitions import ALL_ASSETS, defs
from assets.live import LIVE_KEY

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_load_and_validate():
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("daily_recommendations")
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == {
        asset.key.to_user_string() for asset in ALL_ASSETS
    }


def test_every_asset_opening_duckdb_is_in_the_duckdb_pool_of_limit_one():
    opens_duckdb = {
        "raw_interactions",
        "interaction_split",
        "interaction_graph",
        "model_evaluation",
        "recommendations",
    }
    for asset in ALL_ASSETS:
        name = asset.key.to_user_string()
        assert (asset.op.pool == "duckdb") == (name in opens_duckdb), name
        # Assets outside the pool must not take the warehouse resource.
        assert ("warehouse" in asset.required_resource_keys) == (name in opens_duckdb), name
    instance_config = yaml.safe_load((ROOT / "dagster_home" / "dagster.yaml").read_text())
    assert instance_config["concurrency"]["pools"]["default_limit"] == 1


def test_daily_schedule_targets_the_partitioned_job():
    schedule = defs.resolve_schedule_def("daily_recommendations_schedule")
    assert schedule.job_name == "daily_recommendations"
    assert schedule.cron_schedule == "0 2 * * *"


def test_run_config_is_typed_with_defaults_and_descriptions():
    job = defs.resolve_job_def("daily_recommendations")
    ops = job.run_config_schema.config_type.fields["ops"].config_type.fields
    wanted = {
        "interaction_split": {"window_days", "test_days"},
        "trained_model": {"model", "dim", "layers", "epochs", "learning_rate"},
        "recommendations": {"k"},
    }
    for op, names in wanted.items():
        fields = ops[op].config_type.fields["config"].config_type.fields
        for name in names:
            assert fields[name].description, (op, name)
            assert fields[name].default_provided, (op, name)


def test_workspace_loads_the_code_location():
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    module = workspace["load_from"][0]["python_module"]
    assert (module["module_name"], module["attribute"]) == ("assets.definitions", "defs")


def test_schedule_tick_requests_the_newest_complete_day():
    schedule = defs.resolve_schedule_def("daily_recommendations_schedule")
    tick = dt.datetime(2026, 3, 10, 2, 0, tzinfo=dt.UTC)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        requests = schedule.evaluate_tick(context).run_requests
    assert [request.partition_key for request in requests] == ["2026-03-09"]


DOWNSTREAM = [asset for asset in ALL_ASSETS if asset.key.to_user_string() != "raw_interactions"]


def _policies(job: dg.JobDefinition) -> set:
    return {
        job.asset_layer.get(key).backfill_policy for key in job.asset_layer.executable_asset_keys
    }


def test_retrain_days_job_retrains_and_republishes_one_day_per_run():
    """Issue 13, finding 3: "retrain and republish these days" is a job of its own, the six
    downstream assets, whose backfill is one run per chosen day (its assets share one policy)."""
    job = defs.resolve_job_def("retrain_days")
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == {
        asset.key.to_user_string() for asset in DOWNSTREAM
    }
    # One policy for the whole job: none, Dagster's one run per partition, each run tagged
    # dagster/partition, the tag the instance's one-run-per-day limit keys on. (An explicit
    # multi_run(1) makes asset backfills tag partition ranges instead, and that limit no longer
    # applies: tests/test_daemon_backfill.py failed that way.)
    assert _policies(job) == {None}
    assert job.backfill_policy == dg.BackfillPolicy.multi_run(1)
    ingest = defs.resolve_job_def("ingest_days")
    assert {k.to_user_string() for k in ingest.asset_layer.executable_asset_keys} == {
        "raw_interactions"
    }
    assert ingest.backfill_policy == dg.BackfillPolicy.single_run()
    # The scheduled job runs one day per run (ingest D, then the chain for D).
    assert defs.resolve_job_def("daily_recommendations").backfill_policy == (
        dg.BackfillPolicy.multi_run(1)
    )


def test_loading_the_code_location_warns_nothing():
    """The code server resolved daily_recommendations with a warning that its assets mix
    backfill policies (issue 13, finding 3); loading and resolving every job now says nothing."""
    import subprocess
    import sys

    code = (
        "import warnings\n"
        "import assets.definitions as d\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    repo = d.defs.get_repository_def()\n"
        "    [repo.get_job(name) for name in repo.job_names]\n"
        "print('\\n'.join(f'{w.category.__name__}: {w.message}' for w in caught))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", done.stdout


def test_assets_have_owners_tags_and_the_live_asset_the_freshness_policy():
    """Issue 13, finding 8: the catalog shows who owns each asset, its domain and layer.
    Issue 28 (the UI, finding 1): the freshness policy is on live_recommendations, which moves
    only when a newer day goes live, not on recommendations, whose backfilled or re-run older
    days would count as fresh."""
    layers = {
        "raw_interactions": "ingest",
        "interaction_split": "features",
        "interaction_graph": "features",
        "hard_negatives": "features",
        "model_selection": "model",
        "trained_model": "model",
        "model_evaluation": "model",
        "recommendations": "serving",
        "live_recommendations": "serving",
    }
    graph = defs.resolve_asset_graph()
    for key in [asset.key for asset in ALL_ASSETS] + [LIVE_KEY]:
        node = graph.get(key)
        name = key.to_user_string()
        assert node.owners == ["team:recs"], name
        assert node.tags.get("domain") == "recommendations", name
        assert node.tags.get("layer") == layers[name], name
    assert graph.get(dg.AssetKey("recommendations")).freshness_policy is None
    live = graph.get(LIVE_KEY)
    policy = live.freshness_policy
    assert policy is not None
    # Due each day by 08:00 UTC (the schedule starts D's run at 02:00), a newer day live
    # within the 24 hours before.
    assert policy.deadline_cron == "0 8 * * *"
    assert policy.lower_bound_delta == dt.timedelta(hours=24)
    assert policy.timezone == "UTC"


def test_the_live_asset_is_unpartitioned_reported_by_publication_and_in_no_job():
    graph = defs.resolve_asset_graph()
    live = graph.get(LIVE_KEY)
    assert live.partitions_def is None and live.group_name == "serving"
    assert not live.is_executable  # recommendations' step reports it (assets/live.py)
    assert live.parent_keys == {dg.AssetKey("recommendations")}
    for name in ("daily_recommendations", "retrain_days", "ingest_days"):
        job = defs.resolve_job_def(name)
        assert LIVE_KEY not in job.asset_layer.executable_asset_keys, name
