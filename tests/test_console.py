"""What the terminal shows (issue 12, finding 11): summary lines, not one line per empty day;
no DEBUG events and no Python warnings from the main job; warnings fixed at their cause."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import dagster as dg
import torch

from assets.ingest import raw_interactions
from assets.lib.partitions import range_tags
from recs_pipeline.graph.bipartite import bipartite_csr, interaction_csr, normalized_adjacency
from recs_pipeline.infra.artifacts import ADJACENCY, UrlArtifactStore
from recs_pipeline.infra.console import days_summary
from resources import LogSource, Warehouse

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_days_summary():
    days = [dt.date(2011, 1, 1) + dt.timedelta(days=i) for i in range(2037)]
    assert days_summary("no landing files", days, 2100) == (
        "no landing files for 2,037 of 2,100 days: 2011-01-01, 2011-01-02, 2011-01-03,"
        " 2011-01-04, 2011-01-05 … (first 5)"
    )
    assert days_summary("no landing files", ["2011-01-01"], 3) == (
        "no landing files for 1 of 3 days: 2011-01-01"
    )


def test_ingest_warns_once_for_a_range_of_empty_days(tmp_path):
    landing = tmp_path / "landing"
    day = dt.date(2026, 3, 1)
    (landing / day.isoformat()).mkdir(parents=True)
    ms = int(dt.datetime.combine(day, dt.time(12), dt.UTC).timestamp() * 1000)
    (landing / day.isoformat() / "events.csv").write_text(
        "timestamp,user_id,item_id,event_type\n"
        + "\n".join(f"{ms + i},u{i},i{i},view" for i in range(5))
        + "\n"
    )
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [raw_interactions],
        instance=instance,
        resources={
            "warehouse": Warehouse(database=str(tmp_path / "warehouse.duckdb")),
            "log_source": LogSource(landing_root=str(landing)),
        },
        tags=range_tags("2026-03-01", "2026-03-10"),
        run_config={"ops": {"raw_interactions": {"config": {"allow_empty_days": True}}}},
    )
    messages = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.dagster_event is None and "no landing files" in entry.user_message
    ]
    assert messages == [
        "no landing files for 9 of 10 days: 2026-03-02, 2026-03-03, 2026-03-04, 2026-03-05,"
        " 2026-03-06 … (first 5)"
    ]


def test_sparse_tensors_and_artifacts_raise_no_warnings(tmp_path):
    users, items = torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adjacency = normalized_adjacency(users, items, 3, 3)
        interaction_csr(users, items, 3, 3)
        bipartite_csr(users, items, 3, 3)
        store = UrlArtifactStore(tmp_path, run_id="run")
        store.put(ADJACENCY, "2026-03-01", adjacency)
        store.get(ADJACENCY, "2026-03-01")
    messages = [str(w.message) for w in caught]
    # The one left, "Sparse CSR tensor support is in beta state", has no opt-out (main filters it).
    assert [m for m in messages if "beta state" not in m] == []


def test_main_job_prints_progress_and_results_without_noise(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster_home" / "dagster.yaml", home)  # as `make run` uses
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECS_", "PYTHONWARNINGS"))}
    env |= {"RECS_DATA_ROOT": str(tmp_path / "data"), "DAGSTER_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-m", "cli.demo", "--days", "12", "--small", "--epochs", "1"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, err
    assert " - DEBUG - " not in out + err
    assert not re.search(r"\w+Warning\b", out + err), err
    assert "no landing files" not in out + err
    for step in ("raw_interactions", "interaction_split", "trained_model", "recommendations"):
        assert re.search(rf"^  {step} +done in \d+\.\ds$", out, re.M), out
    assert "full-ranking test metrics as of" in out
    assert "published lists as of" in out
    assert err.strip() == "", err
    # The runs are the code location's job's (issue 13, finding 10): the UI lists them on
    # daily_recommendations' Runs tab, not under __ephemeral_asset_job__.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
    assert len(runs) == 2
    assert {run.job_name for run in runs} == {"daily_recommendations"}
    selected = sorted(sorted(key.to_user_string() for key in run.asset_selection) for run in runs)
    assert ["raw_interactions"] in selected, selected
