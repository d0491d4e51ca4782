"""What the Dagster UI shows, read through a real webserver's GraphQL (issue 13).

A small log is ingested and the chain run for two days in this process, with the code
location's assets, against a temporary instance with the project's settings; then
``dagster-webserver`` starts on loopback over that instance (no daemon) and the test reads what
the UI's pages read: per-partition check results, each day's ingest metadata, the warehouse
assets' column schemas and row counts, owners, tags and the freshness policy, the enum choices
of the launchpad's config schema, and what a backfill launched from the UI's dialogs targets.
After the two days, an older day is published (as a backfill would) and then stopped by the
gate: the live asset still headlines the newest day, with its scorer and its freshness, and the
gate-failed run shows the verdict's sentence.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets.definitions import ALL_ASSETS, DOWNSTREAM_ASSETS
from assets.ingest import raw_interactions
from assets.lib.partitions import range_tags
from assets.model import trained_model
from recs_pipeline.data.synthetic import SyntheticLogSpec, write_landing_files
from tests.conftest import make_resources
from tests.daemon_support import TESTS_CONFIG, Deployment, sigterm_raises, write_instance

SPEC = SyntheticLogSpec(
    start=dt.date(2026, 3, 1),
    days=8,
    n_users=400,
    n_items=200,
    n_communities=6,
    events_per_day=800,
    dirty_fraction=0.01,
    seed=13,
)
DAYS = [(SPEC.start + dt.timedelta(days=i)).isoformat() for i in range(SPEC.days)]
CHAIN_DAYS = DAYS[-2:]  # X and Y: the two days the chain ran for, and the backfills target
OLDER_DAY = DAYS[-3]  # published after Y (as a backfill would), then stopped by the gate
RUN_CONFIG = {
    "ops": {
        "interaction_split": {"config": {"window_days": 6, "test_days": 2}},
        "trained_model": {"config": {"model": "gfcf"}},
        "model_evaluation": {"config": {"baselines": ["popularity"]}},
    }
}
# A trained model, a few epochs, for the first chain day after everything else: its training
# table and curves (the chain itself pins the training-free GF-CF).
TRAINED_CONFIG = {
    "ops": {"trained_model": {"config": {"model": "mf", "epochs": 4, "eval_every": 1}}}
}
# Popularity pinned cannot beat itself: the gate stops the day.
GATE_STOP_CONFIG = {
    "ops": {**RUN_CONFIG["ops"], "trained_model": {"config": {"model": "popularity"}}}
}
WAREHOUSE_TABLES = {  # asset -> its table, whose rows per day are the partition's row count
    "raw_interactions": "raw.interactions",
    "recommendations": "serving.recommendations",
}

# The metadata fields every query below reads.
METADATA = """
fragment Metadata on MetadataEntry {
  label
  __typename
  ... on IntMetadataEntry { intValue }
  ... on FloatMetadataEntry { floatValue }
  ... on TextMetadataEntry { text }
  ... on JsonMetadataEntry { jsonString }
  ... on TableSchemaMetadataEntry { schema { columns { name type description } } }
  ... on TableMetadataEntry { table { records schema { columns { name type } } } }
  ... on MarkdownMetadataEntry { mdStr }
}
"""

ASSET_NODES = (
    """
query AssetNodes {
  assetNodes {
    assetKey { path }
    owners {
      __typename
      ... on TeamAssetOwner { team }
      ... on UserAssetOwner { email }
    }
    tags { key value }
    internalFreshnessPolicy {
      __typename
      ... on CronFreshnessPolicy { deadlineCron lowerBoundDeltaSeconds timezone }
      ... on TimeWindowFreshnessPolicy { failWindowSeconds warnWindowSeconds }
    }
    metadataEntries { ...Metadata }
  }
}
"""
    + METADATA
)

MATERIALIZATIONS = (
    """
query Materializations($path: [String!]!, $partitions: [String!]) {
  assetOrError(assetKey: {path: $path}) {
    __typename
    ... on Asset {
      assetMaterializations(partitions: $partitions) {
        partition
        runId
        metadataEntries { ...Metadata }
      }
    }
  }
}
"""
    + METADATA
)

CHECK_EXECUTIONS = """
query CheckExecutions($path: [String!]!, $check: String!) {
  assetCheckExecutions(assetKey: {path: $path}, checkName: $check, limit: 100) {
    partition
    status
    evaluation { partition success description }
  }
}
"""

CONFIG_TYPES = """
query ConfigTypes($selector: PipelineSelector!) {
  runConfigSchemaOrError(selector: $selector) {
    __typename
    ... on RunConfigSchema {
      rootConfigType { key }
      allConfigTypes {
        __typename
        key
        ... on CompositeConfigType { fields { name configTypeKey } }
        ... on EnumConfigType { values { value } }
        ... on NullableConfigType { ofType { key } }
      }
    }
    ... on PythonError { message }
  }
}
"""

REPOSITORIES = """
query Repositories {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name } } }
  }
}
"""

BACKFILL_PREVIEW = """
query Preview($params: AssetBackfillPreviewParams!) {
  assetBackfillPreview(params: $params) {
    assetKey { path }
    partitions { partitionKeys ranges { start end } }
  }
}
"""

BACKFILL_TARGETS = """
query Targets($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill {
      isAssetBackfill
      jobName
      partitionNames
      numPartitions
      assetSelection { path }
      assetBackfillData {
        assetBackfillStatuses {
          ... on AssetPartitionsStatusCounts { assetKey { path } numPartitionsTargeted }
        }
      }
    }
    ... on Error { message }
  }
}
"""

ASSET_EVENTS = (
    """
query AssetEvents($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    __typename
    ... on Asset {
      assetMaterializations(limit: 100) {
        partition
        runId
        timestamp
        description
        metadataEntries { ...Metadata }
      }
      assetObservations(limit: 100) { timestamp }
    }
  }
}
"""
    + METADATA
)

LIVE_NODE = """
query LiveNode($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    __typename
    ... on AssetNode {
      groupName
      isPartitioned
      isExecutable
      description
      dependencyKeys { path }
      freshnessStatusInfo {
        freshnessStatus
        freshnessStatusMetadata { lastMaterializedTimestamp }
      }
    }
  }
}
"""

RUN_FAILURES = (
    """
query RunFailures($runId: ID!) {
  logsForRun(runId: $runId, limit: 1000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepFailureEvent {
          stepKey
          error { message stack }
          failureMetadata { metadataEntries { ...Metadata } }
        }
      }
    }
  }
}
"""
    + METADATA
)

PARTITIONS_TARGETED = """
query Targeted($backfillId: String!, $path: [String!]!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    ... on PartitionBackfill {
      partitionsTargetedForAssetKey(assetKey: {path: $path}) {
        partitionKeys
        ranges { start end }
      }
    }
  }
}
"""


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """The log ingested and the chain run for the last two days, in process, then for an older
    day twice: published, then stopped by the gate; then a webserver over the same instance
    and warehouse. Yields (deployment, instance home, resources, {"older"|"stopped": run id})."""
    tmp = tmp_path_factory.mktemp("ui_graphql")
    write_landing_files(SPEC, tmp / "landing")
    home = tmp / "dagster_home"
    write_instance(home)
    resources = make_resources(tmp / "landing", tmp)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        ingest = dg.materialize(
            [raw_interactions],
            instance=instance,
            resources=resources,
            tags=range_tags(DAYS[0], DAYS[-1]),
        )
        assert ingest.success
        for day in CHAIN_DAYS:
            chain = dg.materialize(
                ALL_ASSETS,
                selection=DOWNSTREAM_ASSETS,
                partition_key=day,
                instance=instance,
                resources=resources,
                run_config=RUN_CONFIG,
            )
            assert chain.success
        runs = {}
        for name, config in (("older", RUN_CONFIG), ("stopped", GATE_STOP_CONFIG)):
            older = dg.materialize(
                ALL_ASSETS,
                selection=DOWNSTREAM_ASSETS,
                partition_key=OLDER_DAY,
                instance=instance,
                resources=resources,
                run_config=config,
                raise_on_error=False,
            )
            assert older.success == (name == "older"), name
            runs[name] = older.run_id
        trained = dg.materialize(
            ALL_ASSETS,
            selection=[trained_model],
            partition_key=CHAIN_DAYS[0],
            instance=instance,
            resources=resources,
            run_config=TRAINED_CONFIG,
        )
        assert trained.success
        runs["trained"] = trained.run_id
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECS_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(home),
        RECS_WAREHOUSE=resources["warehouse"].database,
        RECS_ARTIFACTS=resources["artifacts"].root,
        RECS_LANDING_ROOT=str(tmp / "landing"),
        RECS_CONFIG=TESTS_CONFIG,
    )
    deployment = Deployment(env, logs=tmp)
    with sigterm_raises():
        try:
            deployment.start_webserver()
            deployment.wait_until_loaded(timeout=300)
            yield deployment, home, resources, runs
        finally:
            deployment.stop()
            print(deployment.log_tails())


def metadata(entries: list[dict]) -> dict[str, dict]:
    return {entry["label"]: entry for entry in entries}


def materializations(deployment, asset: str, partitions: list[str]) -> dict[str, dict]:
    """The newest materialisation of each of ``partitions``: partition -> metadata by label."""
    result = deployment.graphql(MATERIALIZATIONS, {"path": [asset], "partitions": partitions})
    newest = {}
    for event in reversed(result["assetOrError"]["assetMaterializations"]):  # newest first
        newest[event["partition"]] = metadata(event["metadataEntries"])
    return newest


def warehouse_rows(resources, table: str, column: str) -> dict[str, int]:
    with duckdb.connect(resources["warehouse"].database, read_only=True) as con:
        rows = con.execute(f"SELECT {column}, count(*) FROM {table} GROUP BY 1").fetchall()
    return {day.isoformat(): n for day, n in rows}


def asset_nodes(deployment) -> dict[str, dict]:
    nodes = deployment.graphql(ASSET_NODES)["assetNodes"]
    return {"/".join(node["assetKey"]["path"]): node for node in nodes}


def expand(partitions: dict | None) -> list[str]:
    """The partition keys of an AssetBackfillTargetPartitions (keys, or inclusive day ranges)."""
    if partitions is None:
        return []
    keys = list(partitions.get("partitionKeys") or [])
    for day_range in partitions.get("ranges") or []:
        day = dt.date.fromisoformat(day_range["start"])
        while day <= dt.date.fromisoformat(day_range["end"]):
            keys.append(day.isoformat())
            day += dt.timedelta(days=1)
    return sorted(keys)


def repository(deployment) -> dict:
    [node] = deployment.graphql(REPOSITORIES)["repositoriesOrError"]["nodes"]
    return {"repositoryLocationName": node["location"]["name"], "repositoryName": node["name"]}


# --- what the catalog and the Checks tab show ----------------------------------------------


def test_ingest_check_results_are_per_day(ui):
    deployment, *_ = ui
    executions = deployment.graphql(
        CHECK_EXECUTIONS, {"path": ["raw_interactions"], "check": "rows_accepted"}
    )["assetCheckExecutions"]
    by_day = {e["evaluation"]["partition"]: e for e in executions if e["evaluation"]}
    assert set(DAYS) <= set(by_day), sorted(by_day)
    for day in DAYS:
        assert by_day[day]["evaluation"]["success"], by_day[day]
        assert by_day[day]["partition"] == day


def test_quality_gate_results_are_per_day(ui):
    """beats_popularity attaches to model_evaluation's partition, one result per evaluated day
    (issue 13, finding 1: the uimeta branch)."""
    deployment, *_ = ui
    executions = deployment.graphql(
        CHECK_EXECUTIONS, {"path": ["model_evaluation"], "check": "beats_popularity"}
    )["assetCheckExecutions"]
    evaluated = [e for e in executions if e["evaluation"] is not None]
    assert sorted(str(e["partition"]) for e in evaluated) == [OLDER_DAY, OLDER_DAY, *CHAIN_DAYS]
    for execution in evaluated:
        assert execution["evaluation"]["partition"] == execution["partition"]
        assert execution["evaluation"]["description"], execution


def test_each_ingested_day_shows_its_own_counts(ui):
    """A ranged ingest: each day's materialisation carries that day's rows, not the range's
    (issue 13, finding 2: the uimeta branch)."""
    deployment, _, resources, _ = ui
    stored = warehouse_rows(resources, "raw.interactions", "event_date")
    landing = Path(resources["log_source"].landing_root)
    shown = materializations(deployment, "raw_interactions", DAYS)
    assert set(shown) == set(DAYS)
    for day in DAYS:
        entries = shown[day]
        assert entries["rows_ingested"]["intValue"] == stored[day], (day, entries)
        files = list((landing / day).glob("*")) if (landing / day).is_dir() else []
        assert entries["files"]["intValue"] == len(files), (day, entries)
    # The per-day counts differ between days (a range's totals would be the same on every day).
    assert len({shown[day]["rows_ingested"]["intValue"] for day in DAYS}) > 1


def test_warehouse_assets_declare_table_columns_and_row_counts(ui):
    """The catalog's columns and row counts (issue 13, finding 5: the uimeta branch)."""
    deployment, _, resources, _ = ui
    nodes = asset_nodes(deployment)
    partition_column = {"raw_interactions": "event_date", "recommendations": "as_of_date"}
    for asset, table in WAREHOUSE_TABLES.items():
        definition = metadata(nodes[asset]["metadataEntries"])
        assert definition["dagster/table_name"]["text"].endswith(table), definition.keys()
        columns = definition["dagster/column_schema"]["schema"]["columns"]
        assert partition_column[asset] in {column["name"] for column in columns}
        assert all(column["description"] for column in columns), columns
        stored = warehouse_rows(resources, table, partition_column[asset])
        days = DAYS if asset == "raw_interactions" else CHAIN_DAYS
        shown = materializations(deployment, asset, days)
        for day in days:
            assert shown[day]["dagster/row_count"]["intValue"] == stored[day], (asset, day)


def test_assets_show_owners_tags_and_the_freshness_policy(ui):
    deployment, *_ = ui
    nodes = asset_nodes(deployment)
    for name in [asset.key.to_user_string() for asset in ALL_ASSETS] + ["live_recommendations"]:
        node = nodes[name]
        assert node["owners"] == [{"__typename": "TeamAssetOwner", "team": "recs"}], node
        tags = {tag["key"]: tag["value"] for tag in node["tags"]}
        assert tags["domain"] == "recommendations" and tags["layer"], node
    # On the live asset: a backfilled or re-run older day of recommendations does not count.
    assert nodes["recommendations"]["internalFreshnessPolicy"] is None
    assert nodes["live_recommendations"]["internalFreshnessPolicy"] == {
        "__typename": "CronFreshnessPolicy",
        "deadlineCron": "0 8 * * *",
        "lowerBoundDeltaSeconds": 24 * 3600,
        "timezone": "UTC",
    }


def test_launchpad_lists_the_model_choices(ui):
    deployment, *_ = ui
    selector = {**repository(deployment), "pipelineName": "daily_recommendations"}
    schema = deployment.graphql(CONFIG_TYPES, {"selector": selector})["runConfigSchemaOrError"]
    assert schema["__typename"] == "RunConfigSchema", schema
    types = {t["key"]: t for t in schema["allConfigTypes"]}

    def field(type_key: str, name: str) -> dict:
        kind = types[type_key]
        while kind["__typename"] == "NullableConfigType":
            kind = types[kind["ofType"]["key"]]
        fields = {f["name"]: f["configTypeKey"] for f in kind["fields"]}
        return types[fields[name]]

    model = schema["rootConfigType"]["key"]
    for name in ("ops", "trained_model", "config", "model"):
        model = field(model if isinstance(model, str) else model["key"], name)
    while model["__typename"] == "NullableConfigType":
        model = types[model["ofType"]["key"]]
    assert model["__typename"] == "EnumConfigType", model
    choices = {value["value"] for value in model["values"]}
    assert {"lightgcn", "mf", "ngcf", "pinsage", "popularity", "gfcf"} <= choices, choices


# --- what is live (issue 28, the UI findings 1 and 4) ----------------------------------------


def evaluate_freshness(home: Path) -> None:
    """One pass of the daemon's freshness evaluation (``dagster dev``'s daemon runs it every
    30 s) over the code location, in this process, recording each asset's freshness state in
    the instance, where the webserver reads it."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon.freshness import FreshnessDaemon

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="assets.definitions", attribute="defs"),
        location_name="assets.definitions",
    )
    with dg.DagsterInstance.from_config(str(home)) as instance:
        with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as context:
            for _ in FreshnessDaemon().run_iteration(context):
                pass


def test_the_live_asset_headlines_the_newest_day_after_an_older_one_was_published(ui):
    """After Y went live, the older day was published and then stopped by the gate: the
    partitioned recommendations now headlines the older day (its latest materialization), while
    live_recommendations still shows Y: its scorer, how it was chosen, the gate's verdict, the
    published model's sha256 and the test metrics with lifts; two materializations, X's and
    Y's, and its freshness (on the live asset alone) dates from Y going live."""
    deployment, home, resources, runs = ui
    live_day = CHAIN_DAYS[-1]
    node = deployment.graphql(LIVE_NODE, {"path": ["live_recommendations"]})["assetNodeOrError"]
    assert node["groupName"] == "serving" and not node["isPartitioned"], node
    assert not node["isExecutable"]  # reported by publication, in no job
    assert node["dependencyKeys"] == [{"path": ["recommendations"]}]
    assert node["description"].startswith("What applications are served now")

    events = deployment.graphql(ASSET_EVENTS, {"path": ["live_recommendations"]})["assetOrError"]
    live_events = events["assetMaterializations"]  # newest first
    assert [metadata(e["metadataEntries"])["day"]["text"] for e in live_events] == [
        CHAIN_DAYS[1],
        CHAIN_DAYS[0],
    ]
    assert events["assetObservations"] == []
    newest = live_events[0]
    shown = metadata(newest["metadataEntries"])
    assert newest["description"].startswith(f"{live_day} is live: gfcf (pinned), gate passed")
    assert shown["scorer"]["text"] == "gfcf" and shown["chosen_by"]["text"] == "pinned"
    assert shown["gate"]["text"] == "passed"
    with duckdb.connect(resources["warehouse"].database, read_only=True) as con:
        (sha256,) = con.execute(
            "SELECT model_sha256 FROM serving.publications WHERE as_of_date = ?", [live_day]
        ).fetchone()
        (latest,) = con.execute(
            "SELECT DISTINCT as_of_date FROM serving.latest_recommendations"
        ).fetchone()
    assert latest.isoformat() == live_day and shown["model_sha256"]["text"] == sha256
    labels = [entry["label"] for entry in newest["metadataEntries"]]
    assert labels[:2] == ["day", "scorer"] and "Recall@20" in labels
    assert shown["Recall@20"]["floatValue"] > shown["popularity_recall@20"]["floatValue"]
    assert "lift_vs_popularity_recall@20_%" in shown

    # The partitioned asset's newest materialization is the older day's (what it headlines).
    published = deployment.graphql(
        MATERIALIZATIONS, {"path": ["recommendations"], "partitions": None}
    )["assetOrError"]["assetMaterializations"]
    assert published[0]["partition"] == OLDER_DAY  # newest first
    older = materializations(deployment, "recommendations", [OLDER_DAY])[OLDER_DAY]
    assert older["live"]["text"] == f"{OLDER_DAY} published; the live day stays {live_day}"

    # Freshness: after one evaluation pass, the live asset is fresh, dated from Y going live.
    evaluate_freshness(home)
    node = deployment.graphql(LIVE_NODE, {"path": ["live_recommendations"]})["assetNodeOrError"]
    freshness = node["freshnessStatusInfo"]
    assert freshness["freshnessStatus"] == "HEALTHY", freshness
    assert freshness["freshnessStatusMetadata"]["lastMaterializedTimestamp"] == pytest.approx(
        int(newest["timestamp"]) / 1000, abs=1
    )
    assert runs["older"] != newest["runId"] and runs["stopped"] != newest["runId"]
    plain = deployment.graphql(LIVE_NODE, {"path": ["recommendations"]})["assetNodeOrError"]
    assert plain["freshnessStatusInfo"] is None


def test_a_gate_stopped_run_shows_the_verdicts_sentence(ui):
    """The run page's failure is the gate's sentence with the scores as metadata (a Failure),
    not the blocking check's DagsterAssetCheckFailedError."""
    deployment, _, _, runs = ui
    events = deployment.graphql(RUN_FAILURES, {"runId": runs["stopped"]})["logsForRun"]["events"]
    failures = [e for e in events if e["__typename"] == "ExecutionStepFailureEvent"]
    assert [f["stepKey"] for f in failures] == ["model_evaluation"], failures
    (failure,) = failures
    message = failure["error"]["message"]
    assert "DagsterAssetCheckFailedError" not in message
    assert f"failed the quality gate of {OLDER_DAY}: Recall@20 " in message, message
    assert "so nothing is published for the day" in message
    shown = metadata(failure["failureMetadata"]["metadataEntries"])
    assert shown["verdict"]["text"] == "failed" and shown["model"]["text"] == "popularity"
    assert "popularity_recall@20" in shown and "lift_%" in shown


# --- what trained_model shows of its training (issue 28, the UI finding 5) ------------------


def test_trained_model_shows_its_training_table_and_curve(ui):
    """The table the UI renders leads with epoch and best, every epoch has its learning rate,
    and the curve within the run comes as text sparklines and a markdown chart whose image is
    an SVG data: URL (which this UI's markdown renders: assets/lib/curves.py)."""
    import base64
    import json
    import re

    deployment, *_, runs = ui
    events = deployment.graphql(
        MATERIALIZATIONS, {"path": ["trained_model"], "partitions": [CHAIN_DAYS[0]]}
    )["assetOrError"]["assetMaterializations"]
    (event,) = [e for e in events if e["runId"] == runs["trained"]]
    shown = metadata(event["metadataEntries"])
    table = shown["training_history"]
    assert table["__typename"] == "TableMetadataEntry"
    columns = [c["name"] for c in table["table"]["schema"]["columns"]]
    assert columns[:6] == ["epoch", "best", "loss", "val_recall@20", "val_ndcg@20", "lr"]
    assert columns[-1] == "seconds"
    rows = [json.loads(record) for record in table["table"]["records"]]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert all(isinstance(r["lr"], float) and r["lr"] > 0 for r in rows), rows
    assert sum(r["best"] for r in rows) == 1
    for label in ("loss_curve", "val_recall@20_curve"):
        assert shown[label]["__typename"] == "TextMetadataEntry"
        assert len(shown[label]["text"].split()[0]) == 4, shown[label]
    chart = shown["training_curve"]
    assert chart["__typename"] == "MarkdownMetadataEntry"
    (encoded,) = re.findall(r"\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", chart["mdStr"])
    assert base64.b64decode(encoded).startswith(b"<svg ")


# --- what a backfill from the UI's dialogs targets (issue 13, finding 3) ---------------------


def test_retrain_days_backfill_targets_exactly_the_chosen_days(ui):
    """Jobs -> retrain_days -> Partitions -> days X and Y -> Launch backfill: the dialog sends
    the job's partition set with its assets; the backfill is of that job over X and Y, one run
    per day (its backfill policy), every asset of it on X and Y only."""
    deployment, home, *_ = ui
    backfill_id = deployment.launch_backfill(
        {
            "selector": {
                "partitionSetName": "retrain_days_partition_set",
                "repositorySelector": repository(deployment),
            },
            "assetSelection": [{"path": list(a.key.path)} for a in DOWNSTREAM_ASSETS],
            "partitionNames": CHAIN_DAYS,
            "fromFailure": False,
        }
    )
    backfill = deployment.graphql(BACKFILL_TARGETS, {"backfillId": backfill_id})
    backfill = backfill["partitionBackfillOrError"]
    assert backfill["jobName"] == "retrain_days", backfill
    assert sorted(backfill["partitionNames"]) == CHAIN_DAYS
    assert sorted(a["path"][0] for a in backfill["assetSelection"]) == sorted(
        a.key.to_user_string() for a in DOWNSTREAM_ASSETS
    )
    # The instance's record of it, as the daemon will read it.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        record = instance.get_backfill(backfill_id)
    assert record.job_name == "retrain_days"
    assert sorted(record.partition_names) == CHAIN_DAYS


def test_downstream_assets_backfill_from_the_asset_graph_targets_exactly_the_chosen_days(ui):
    """The asset graph: select the six downstream assets, Materialize, days X and Y: each asset
    is targeted on X and Y only. (With raw_interactions selected too, Dagster follows the
    28-day window downstream: docs/operating.md says so, and the preview shows it.)"""
    deployment, *_ = ui
    selection = [{"path": list(a.key.path)} for a in DOWNSTREAM_ASSETS]
    preview = deployment.graphql(
        BACKFILL_PREVIEW, {"params": {"assetSelection": selection, "partitionNames": CHAIN_DAYS}}
    )["assetBackfillPreview"]
    assert {p["assetKey"]["path"][0]: expand(p["partitions"]) for p in preview} == {
        a.key.to_user_string(): CHAIN_DAYS for a in DOWNSTREAM_ASSETS
    }
    backfill_id = deployment.launch_backfill(
        {"assetSelection": selection, "partitionNames": CHAIN_DAYS, "fromFailure": False}
    )
    for asset in DOWNSTREAM_ASSETS:
        targeted = deployment.graphql(
            PARTITIONS_TARGETED, {"backfillId": backfill_id, "path": list(asset.key.path)}
        )["partitionBackfillOrError"]["partitionsTargetedForAssetKey"]
        assert expand(targeted) == CHAIN_DAYS, (asset.key, targeted)

    everything = [{"path": list(a.key.path)} for a in ALL_ASSETS]
    wide = deployment.graphql(
        BACKFILL_PREVIEW,
        {"params": {"assetSelection": everything, "partitionNames": CHAIN_DAYS[:1]}},
    )["assetBackfillPreview"]
    wide = {p["assetKey"]["path"][0]: expand(p["partitions"]) for p in wide}
    assert wide["raw_interactions"] == CHAIN_DAYS[:1]
    assert len(wide["interaction_split"]) > 1  # the window passes the raw day forward
