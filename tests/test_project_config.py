"""Deployment defaults (issue 12): the project config file and the environment are the code
location's defaults, for the schedule, backfills and the launchpad alike; overriding one
resource field keeps the others; the profile command; partitions from the data's first day."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from recs_pipeline.data.logs import LogFormat

ROOT = Path(__file__).resolve().parents[1]

# A MovieLens-like one-file export: userId,movieId,rating,timestamp (epoch seconds). Days of
# January 2016 with events (4 and 7 are empty); on each, users 1-3 rate the day's 5 movies;
# user 4 appears on the last day only; one implausible 1956 rating.
ACTIVE_DAYS = (1, 2, 3, 5, 6, 8, 9, 10)


def _epoch(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(12), dt.UTC).timestamp())


def write_ratings(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["userId,movieId,rating,timestamp", f"1,9999,3.0,{_epoch(dt.date(1956, 5, 1))}"]
    for d in ACTIVE_DAYS:
        day = dt.date(2016, 1, d)
        for user in (1, 2, 3):
            lines += [f"{user},{d * 100 + k},4.5,{_epoch(day)}" for k in range(5)]
    lines.append(f"4,1000,5.0,{_epoch(dt.date(2016, 1, 10))}")
    path = folder / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


RATINGS_ENV = {
    "RECS_PATH_PATTERN": "ratings.csv",
    "RECS_USER_COLUMN": "userId",
    "RECS_ITEM_COLUMN": "movieId",
    "RECS_TIMESTAMP_UNIT": "s",
}


def fresh_process(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``code`` (or ``-m module`` in args) in a new interpreter from the project root, with
    only ``env``'s RECS_* settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RECS_")}
    command = [sys.executable, *args] if args else [sys.executable, "-c", code]
    return subprocess.run(
        command, cwd=ROOT, env=base | env, capture_output=True, text=True, timeout=120
    )


def test_profile_counts_days_users_items_and_suggests_a_window(tmp_path):
    from recs_pipeline.data.profile import all_files, profile_log

    path = write_ratings(tmp_path)
    fmt = LogFormat(
        user_column="userId", item_column="movieId", timestamp_unit="s", event_type_column=None
    )
    assert all_files(tmp_path, "ratings.csv") == [str(path.resolve())]
    profile = profile_log([str(path)], fmt, min_train_events=12, min_test_users=3)
    assert (profile.events, profile.users, profile.items) == (122, 4, 41)
    assert profile.first_day == dt.date(1956, 5, 1)
    # One 1956 event of 122 (< 1%), before a gap of 60 years: left out of the partitions.
    assert (profile.partition_start, profile.outlier_events) == (dt.date(2016, 1, 1), 1)
    assert profile.last_day == dt.date(2016, 1, 10)
    assert profile.empty_share == pytest.approx(0.2)  # 2 of 10 days
    last = profile.per_day[-1]
    assert (last.day, last.events, last.users, last.items) == (dt.date(2016, 1, 10), 16, 4, 5)
    # Test period: the last day holds users 1-3, seen before (user 4 is new): 3 >= 3.
    assert (profile.test_days, profile.test_users) == (1, 3)
    # Each test user's 12th most recent train event is on Jan 6: days 6..10 = 5 days.
    assert (profile.window_days, profile.covered_test_users) == (5, 3)


def test_profile_counts_the_test_users_the_window_keeps(tmp_path):
    """A newcomer's MovieLens profile promised 100 test users and the gate then judged 71:
    users active before the test period but not within the window are not in the day's graph.
    The profile says how many are."""
    from recs_pipeline.data.profile import describe, profile_log

    path = write_ratings(tmp_path)
    # User 5: active on Jan 1 and on the last day, so a test user, but not within the window.
    path.write_text(
        path.read_text()
        + f"5,4242,4.0,{_epoch(dt.date(2016, 1, 1))}\n5,4243,4.0,{_epoch(dt.date(2016, 1, 10))}\n"
    )
    fmt = LogFormat(
        user_column="userId", item_column="movieId", timestamp_unit="s", event_type_column=None
    )
    profile = profile_log([str(path)], fmt, min_train_events=12, min_test_users=3)
    assert (profile.test_days, profile.test_users, profile.window_days) == (1, 4, 5)
    assert profile.window_test_users == 3
    assert "3 have an event in it, the most the evaluation can judge" in describe(profile)


def test_profile_write_sets_the_partition_start_every_new_process_reads(tmp_path):
    """Finding 10: the partitions follow the data, in every process that loads the code
    location, with nothing set in its shell but where the project config file is."""
    write_ratings(tmp_path / "landing")
    config = tmp_path / "recs.toml"
    config.write_text("# my deployment\n\n[ops.interaction_split]\nwindow_days = 5\n")
    env = RATINGS_ENV | {
        "RECS_CONFIG": str(config),
        "RECS_LANDING_ROOT": str(tmp_path / "landing"),
    }
    profiled = fresh_process("", env, "-m", "cli.profile", "--write", "--min-test-users", "3")
    assert profiled.returncode == 0, profiled.stderr
    assert "20.0% of days empty" in profiled.stdout
    assert "suggested test_days = 1" in profiled.stdout
    text = config.read_text()
    # The suggested window replaces the one there, every other line kept (issue 25).
    assert text.startswith("# my deployment\n")
    split = tomllib.loads(text)["ops"]["interaction_split"]
    assert split["test_days"] == 1 and split["window_days"] >= 2
    assert "wrote partition_start = 2016-01-01, [ops.interaction_split]" in profiled.stdout
    load = (
        "from assets.definitions import defs\n"
        "from assets.lib.partitions import daily_partitions\n"
        "print(daily_partitions.get_first_partition_key())"
    )
    loaded = fresh_process(load, {"RECS_CONFIG": str(config)})
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split()[-1] == "2016-01-01"


def test_a_sparse_log_is_told_loudly_and_the_train_period_never_shorter_than_the_test():
    """Issue 25: MovieLens latest-small got window 1980 / test 1876 days with no word that both
    targets were missed. Here five users rate on a few days over two years."""
    import tempfile

    from recs_pipeline.data.profile import describe, profile_log

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ratings.csv"
        lines = ["userId,movieId,rating,timestamp"]
        start = dt.date(2014, 1, 1)
        for week in range(0, 104, 3):
            day = start + dt.timedelta(weeks=week)
            lines += [f"{u},{week * 10 + u},4,{_epoch(day)}" for u in range(1, 6)]
        path.write_text("\n".join(lines) + "\n")
        fmt = LogFormat(
            user_column="userId", item_column="movieId", timestamp_unit="s",
            event_type_column=None,
        )  # fmt: skip
        profile = profile_log([str(path)], fmt, min_train_events=5, min_test_users=100)
    assert profile.test_users == 5 < 100
    assert profile.window_days >= 2 * profile.test_days
    assert profile.warnings and "the most is 5" in profile.warnings[0]
    text = describe(profile)
    assert "WARNING: no test period of up to" in text
    assert "other test periods" in text and "<- suggested" in text
    assert all(c.window_days >= 2 * c.test_days for c in profile.candidates)


def test_the_profile_scores_each_candidate_window_with_the_baselines(tmp_path):
    """Issue 25, item 5: each candidate window says what it gives a model, not only users: the
    validation Recall@20 of popularity and GF-CF at their defaults, on the slice model
    selection would carve from that train period. 60 users in 3 taste groups of 30 items rate
    ten of their group's items over 40 days: GF-CF finds the groups, popularity cannot."""
    import random

    from recs_pipeline.data.profile import describe, profile_log

    rng = random.Random(0)
    lines = ["userId,movieId,rating,timestamp"]
    for user in range(60):
        group = user % 3
        for n, item in enumerate(rng.sample(range(group * 30, group * 30 + 30), 10)):
            day = dt.date(2016, 1, 1) + dt.timedelta(days=4 * n + rng.randrange(4))
            lines.append(f"{user},{item},4,{_epoch(day)}")
    path = tmp_path / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    fmt = LogFormat(
        user_column="userId", item_column="movieId", timestamp_unit="s", event_type_column=None
    )
    profile = profile_log([str(path)], fmt, min_train_events=5, min_test_users=20)
    scored = [c for c in profile.candidates if c.scores]
    assert scored, profile.candidates
    for candidate in scored:
        recalls = dict(candidate.scores)
        assert set(recalls) == {"popularity", "gfcf"}
        assert candidate.validation_users >= 20
        assert recalls["gfcf"] > recalls["popularity"]
    text = describe(profile)
    assert "val users" in text and "gfcf@20" in text and "popularity@20" in text
    quiet = profile_log([str(path)], fmt, min_train_events=5, min_test_users=20, scores=False)
    assert not any(c.scores for c in quiet.candidates)
    assert "gfcf@20" not in describe(quiet)


def test_partition_start_env_overrides_the_file(tmp_path, monkeypatch):
    from recs_pipeline.infra import project_config

    config = tmp_path / "recs.toml"
    project_config.write_top_level("partition_start", "2016-01-01", config)
    monkeypatch.setenv("RECS_CONFIG", str(config))
    assert project_config.setting("partition_start", "RECS_PARTITION_START") == "2016-01-01"
    monkeypatch.setenv("RECS_PARTITION_START", "2015-06-01")
    assert project_config.setting("partition_start", "RECS_PARTITION_START") == "2015-06-01"


def test_schedule_ticks_and_backfills_use_the_project_configs_defaults(tmp_path):
    """Finding 2: a run built with no run config (a schedule tick, a backfill's run, `dagster
    job backfill`) gets the deployment's window, test days, model and K; the launchpad shows
    them as defaults; the lineage follows the window."""
    config = tmp_path / "recs.toml"
    config.write_text(
        "[ops.interaction_split]\nwindow_days = 90\ntest_days = 7\n"
        '[ops.trained_model]\nmodel = "gfcf"\n[ops.recommendations]\nk = 10\n'
    )
    code = """
import datetime as dt, json
import dagster as dg
from assets.definitions import defs
job = defs.resolve_job_def("daily_recommendations")
schedule = defs.resolve_schedule_def("daily_recommendations_schedule")
with dg.instance_for_test() as instance:
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=dt.datetime(2026, 3, 10, 2, tzinfo=dt.UTC))
    request = schedule.evaluate_tick(context).run_requests[0]
tick = dg.validate_run_config(job, request.run_config)["ops"]
backfill = dg.validate_run_config(job, {})["ops"]
fields = job.run_config_schema.config_type.fields["ops"].config_type.fields
shown = fields["interaction_split"].config_type.fields["config"].config_type.fields
split = [a for a in job.asset_layer.asset_graph.get(dg.AssetKey("interaction_split")).parent_keys]
from assets.features import _WINDOW
print(json.dumps({
    "tick": [tick["interaction_split"]["config"]["window_days"],
             tick["interaction_split"]["config"]["test_days"],
             tick["trained_model"]["config"]["model"], tick["recommendations"]["config"]["k"]],
    "backfill": [backfill["interaction_split"]["config"]["window_days"],
                 backfill["trained_model"]["config"]["model"]],
    "launchpad": shown["window_days"].default_value,
    "lineage": _WINDOW.start_offset,
}))
"""
    ran = fresh_process(code, {"RECS_CONFIG": str(config)})
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout.splitlines()[-1])
    assert result == {
        "tick": [90, 7, "gfcf", 10],
        "backfill": [90, "gfcf"],
        "launchpad": 90,
        "lineage": -89,
    }


def test_a_bad_project_config_fails_at_load_naming_the_file_and_setting(tmp_path, monkeypatch):
    from assets.lib import settings
    from recs_pipeline.data.split import SplitConfig
    from recs_pipeline.infra import project_config

    config = tmp_path / "recs.toml"
    monkeypatch.setenv("RECS_CONFIG", str(config))
    config.write_text("[ops.interaction_split]\nwindow_days = 2\ntest_days = 2\n")
    with pytest.raises(project_config.ProjectConfigError, match=r"recs.toml.*test_days"):
        settings.derived(SplitConfig, op="interaction_split")
    config.write_text("[ops.interaction_split]\nwindow = 30\n")
    with pytest.raises(project_config.ProjectConfigError, match=r"no setting\(s\) \['window'\]"):
        settings.derived(SplitConfig, op="interaction_split")


def test_overriding_one_resource_field_keeps_the_environments_others(tmp_path, monkeypatch):
    """Finding 8: a run config setting only weight_column on log_source keeps landing_root
    and the column mapping from the environment."""
    from assets.definitions import default_resources
    from assets.ingest import raw_interactions

    landing = tmp_path / "landing" / "2026-03-01"
    landing.mkdir(parents=True)
    (landing / "events.csv").write_text(
        "ts,uid,sku,w\n2026-03-01T10:00:00Z,u1,i1,2.5\n2026-03-01T11:00:00Z,u2,i1,0.5\n"
    )
    for name, value in {
        "RECS_LANDING_ROOT": str(tmp_path / "landing"),
        "RECS_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        "RECS_ARTIFACTS": str(tmp_path / "artifacts"),
        "RECS_USER_COLUMN": "uid",
        "RECS_ITEM_COLUMN": "sku",
        "RECS_TIMESTAMP_COLUMN": "ts",
        "RECS_TIMESTAMP_UNIT": "iso",
    }.items():
        monkeypatch.setenv(name, value)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [raw_interactions],
            partition_key="2026-03-01",
            instance=instance,
            resources=default_resources(),
            run_config={
                "resources": {
                    "log_source": {"config": {"weight_column": "w", "event_type_column": None}}
                }
            },
            raise_on_error=False,
        )
        errors = [e.event_specific_data.error.message for e in result.all_events if e.is_failure]
        assert result.success, errors
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT user_id, weight FROM raw.interactions ORDER BY user_id"
        ).fetchall()
    assert rows == [("u1", 2.5), ("u2", 0.5)]


def _load_deployment() -> None:
    """What loading the code location reads of the deployment: the file's top level, every
    resource's defaults (environment over file) and every op's defaults."""
    from assets.definitions import default_resources
    from assets.lib import settings
    from recs_pipeline.infra import project_config

    project_config.setting("partition_start", "RECS_PARTITION_START")
    project_config.setting("data_root", "RECS_DATA_ROOT")
    default_resources()
    for settings_cls, cores in settings.SETTINGS.items():
        op = next(op for op, cls in settings.OPS.items() if cls is settings_cls)
        settings.derived(*cores, op=op)


# (recs.toml, what the error must say): the key with its value, and what is allowed.
BAD_FILE = [
    (
        '[resources.warehouse]\nlock_timeout_seconds = "soon"\n',
        r"\[resources.warehouse\] lock_timeout_seconds = 'soon' .* must be a number > 0",
    ),
    (
        "[resources.warehouse]\nlock_timeout_seconds = -5\n",
        r"\[resources.warehouse\] lock_timeout_seconds = -5 .* must be a number > 0",
    ),
    (
        '[resources.log_source]\npath_pattern = ["a/*.csv", "b/*.csv"]\n',
        r"\[resources.log_source\] path_pattern = \['a/\*.csv', 'b/\*.csv'\] .* must be a string",
    ),
    (
        '[resources.engine]\nworkers = "4"\n',
        r"\[resources.engine\] workers = '4' .* must be an integer >= 1",
    ),
    (
        "[ops.interaction_split]\nwindow_days = 2.5\n",
        r"\[ops.interaction_split\] window_days = 2.5 .* must be an integer >= 2",
    ),
    (
        '[ops.trained_model]\nepochs = "ten"\n',
        r"\[ops.trained_model\] epochs = 'ten' .* must be an integer >= 1",
    ),
    ("partition_start = 20260101\n", r"partition_start = 20260101 .* must be a date YYYY-MM-DD"),
    ('partition_start = "2026-13-01"\n', r"partition_start = '2026-13-01' .* must be a date"),
    ("data_root = 5\n", r"data_root = 5 .* must be a string"),
    ("dagster_home = 5\n", r"dagster_home = 5 .* must be a string"),
    (
        '[ops.recommendations]\nindex = "annoy"\n',  # the run-config name, not the core's (kind)
        r"\[ops.recommendations\]: index must be one of auto, exact, ivf, not 'annoy'",
    ),
    (  # a training-free model's own settings: a table, checked against the model
        '[ops.trained_model]\nmodel = "dnfilter"\n[ops.trained_model.model_params]\nsharpness = 1\n',
        r"\[ops.trained_model\]: model_params: dnfilter has no parameter 'sharpness'; its"
        r" parameters: beta, gamma, weight, sharpen, k",
    ),
    (
        '[ops.trained_model]\nmodel = "dnfilter"\n[ops.trained_model.model_params]\nk = 1.5\n',
        r"\[ops.trained_model\]: model_params: dnfilter's k must be an integer >= 1, not 1.5",
    ),
    (
        "[ops.trained_model]\nmodel_params = 3\n",
        r"\[ops.trained_model\] model_params = 3 .* must be a table",
    ),
    (
        '[resources.log_source]\nformat = "xlsx"\n',
        r"\[resources.log_source\] format = 'xlsx' .* format must be csv, parquet or json",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILE, ids=[b[0].strip() for b in BAD_FILE])
def test_a_wrong_value_in_the_project_config_names_the_file_key_and_whats_allowed(
    tmp_path, monkeypatch, text, message
):
    """Issue 27: a value of the wrong type or out of range in recs.toml fails as the code
    location loads, with one error naming the file, the key, the value and what is allowed
    (not Dagster's "Invalid default_value for Field" or a bare traceback; -5 not accepted)."""
    from recs_pipeline.infra import project_config

    config = tmp_path / "recs.toml"
    config.write_text(text)
    monkeypatch.setenv("RECS_CONFIG", str(config))
    with pytest.raises(project_config.ProjectConfigError, match=message) as error:
        _load_deployment()
    assert str(config) in str(error.value)


def test_the_project_config_takes_each_setting_in_its_own_type(tmp_path, monkeypatch):
    """The check refuses no value of the right type: a TOML date, an integer for a number,
    lists and tables where a setting takes them."""
    from recs_pipeline.infra import project_config
    from resources.deployment import deployment_defaults

    config = tmp_path / "recs.toml"
    config.write_text(
        "partition_start = 2016-01-01\n"
        "[resources.warehouse]\nlock_timeout_seconds = 5\n"
        '[resources.log_source]\nevent_types = ["click", "buy"]\n'
        '[resources.artifacts]\nstorage_options = { endpoint_url = "http://minio:9000" }\n'
        '[ops.model_evaluation]\nbaselines = ["popularity"]\n'
    )
    monkeypatch.setenv("RECS_CONFIG", str(config))
    _load_deployment()
    assert project_config.setting("partition_start", "RECS_PARTITION_START") == "2016-01-01"
    assert deployment_defaults("warehouse")["lock_timeout_seconds"] == 5.0


def test_model_params_in_the_project_config_become_the_runs_default(tmp_path, monkeypatch):
    from assets.lib import settings
    from recs_pipeline.training import TrainConfig

    config = tmp_path / "recs.toml"
    config.write_text(
        '[ops.trained_model]\nmodel = "dnfilter"\n'
        "[ops.trained_model.model_params]\nsharpen = 1\nuser_exponent = 0.3\n"
    )
    monkeypatch.setenv("RECS_CONFIG", str(config))
    fields = settings.derived(TrainConfig, op="trained_model")
    run = type("Run", (fields, settings._Derived), {})()
    assert run.model_params == {"sharpen": 1, "user_exponent": 0.3}
    assert run._core(TrainConfig).model_params == {"sharpen": 1.0, "user_exponent": 0.3}


# (variable, value, what the error must say)
BAD_ENV = [
    ("RECS_WORKERS", "abc", r"RECS_WORKERS='abc' .* must be an integer >= 1"),
    ("RECS_WORKERS", "0", r"RECS_WORKERS='0' .* must be an integer >= 1"),
    ("RECS_ENGINE", "spark", r"RECS_ENGINE='spark' .* must be one of 'local', 'ray'"),
    ("RECS_PARTITION_START", "notadate", r"RECS_PARTITION_START='notadate' .* YYYY-MM-DD"),
    ("RECS_PARTITION_START", "20260101", r"RECS_PARTITION_START='20260101' .* YYYY-MM-DD"),
    ("RECS_TIMESTAMP_UNIT", "sec", r"RECS_TIMESTAMP_UNIT='sec' .* must be s, ms, us or iso"),
    ("RECS_MIN_PLAUSIBLE_DATE", "1.1.2000", r"RECS_MIN_PLAUSIBLE_DATE='1.1.2000' .* YYYY-MM-DD"),
]


@pytest.mark.parametrize(
    ("var", "value", "message"), BAD_ENV, ids=[f"{b[0]}={b[1]}" for b in BAD_ENV]
)
def test_a_wrong_environment_variable_names_itself_and_whats_allowed(
    monkeypatch, var, value, message
):
    """Issue 27: RECS_WORKERS=abc, RECS_PARTITION_START=notadate gave tracebacks that never
    named the variable."""
    from recs_pipeline.infra import project_config

    monkeypatch.setenv(var, value)
    with pytest.raises(project_config.EnvironmentSettingError, match=message):
        _load_deployment()


def test_the_executor_and_deployment_variables_name_themselves(monkeypatch):
    from assets.platform.executor import threads_per_step
    from assets.platform.kubernetes import gpu_op_tags
    from recs_pipeline.infra import project_config

    with pytest.raises(project_config.EnvironmentSettingError, match=r"OMP_NUM_THREADS='abc'"):
        threads_per_step(None, 8, {"OMP_NUM_THREADS": "abc"})
    with pytest.raises(project_config.EnvironmentSettingError, match=r"OMP_NUM_THREADS='0'"):
        threads_per_step(None, 8, {"OMP_NUM_THREADS": "0"})
    monkeypatch.setenv("RECS_K8S_GPU", "ture")
    with pytest.raises(project_config.EnvironmentSettingError, match=r"RECS_K8S_GPU='ture'"):
        gpu_op_tags()


def test_the_cli_refuses_a_wrong_variable_in_one_line_before_writing(tmp_path):
    """The message, not a traceback, and nothing written under the data root."""
    ran = fresh_process(
        "",
        {"RECS_WORKERS": "abc", "RECS_DATA_ROOT": str(tmp_path / "data"), "RECS_CONFIG": ""},
        "-m",
        "cli.demo",
        "--small",
        "--days",
        "3",
    )
    assert ran.returncode == 2, ran.stderr
    assert "Traceback" not in ran.stderr
    assert ran.stderr.strip().splitlines()[-1] == (
        "error: RECS_WORKERS='abc' is not allowed: it must be an integer >= 1"
        " (fix or unset the environment variable)"
    )
    assert not (tmp_path / "data").exists()


def test_without_settings_every_process_puts_the_data_under_the_projects_data_folder():
    """No ``recs.toml`` and no variable: the code location's resources, the commands and the
    demo agree on ``<project>/data`` (the code location once resolved it on its own, from its
    module's folder, and put the warehouse under ``assets/data``)."""
    script = """
import json
from assets.lib.partitions import DATA_ROOT
from cli.environment import demo_config
from resources.deployment import deployment_defaults
print(json.dumps({
    "code_location": str(DATA_ROOT),
    "warehouse": deployment_defaults("warehouse")["database"],
    "landing": deployment_defaults("log_source")["landing_root"],
    "demo": str(demo_config()),
}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECS_")}
    env |= {"RECS_CONFIG": "", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd="/", capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    data = ROOT / "data"
    assert found == {
        "code_location": str(data),
        "warehouse": str(data / "warehouse.duckdb"),
        "landing": str(data / "landing"),
        "demo": str(data / "demo" / "recs.toml"),
    }
