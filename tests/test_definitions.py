"""The code location loads and validates, and declares what operating it relies on."""

import datetime as dt
from pathlib import Path

import dagster as dg
import yaml

from assets.definitions import ALL_ASSETS, defs

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
