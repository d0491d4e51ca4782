"""The installed ``recs`` command (issue 28, "No single command, and the terminal hides
failures"), run as a user runs it: the console script in a real process, on a deployment of its
own (a temporary data root, its settings in a recs.toml that also names the Dagster home, no
DAGSTER_HOME exported).

One small demo is run once for the module and read by the checks after it; the backfill then
runs two more days through the code location (its runs started by ``recs`` itself: no daemon).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[1]
RECS = Path(sys.executable).parent / "recs"
SUBCOMMANDS = (
    "demo",
    "profile",
    "ingest",
    "run",
    "backfill",
    "status",
    "show",
    "ui",
    "daemon",
    "doctor",
)


def environment(**settings: str) -> dict[str, str]:
    """The caller's environment without any deployment setting or Dagster home; this
    checkout's code first on the path (the console script imports the installed project)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("RECS_") and key != "DAGSTER_HOME"
    }
    return env | {"PYTHONPATH": str(ROOT)} | settings


def recs(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``recs ARGS`` in a process group of its own, which is killed when the command ends:
    whatever it started and left (its code server, a run worker waiting for a pool slot when
    the command timed out) does not outlive the test and slow the rest of the suite."""
    if not RECS.exists():
        pytest.fail(f"no {RECS}: install the project (pip install -e .) for its console script")
    command = [str(RECS), *args]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise subprocess.TimeoutExpired(command, timeout) from expired
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def output(ran: subprocess.CompletedProcess) -> str:
    return ran.stdout + ran.stderr


def test_every_subcommand_has_help_and_a_one_line_summary():
    env = environment()
    ran = recs("--help", env=env)
    assert ran.returncode == 0, output(ran)
    listed = dict(re.findall(r"^  (\w+)\s+(\S.*)$", ran.stdout.split("Commands:")[1], re.MULTILINE))
    assert set(listed) == set(SUBCOMMANDS), ran.stdout
    for command in SUBCOMMANDS:
        ran = recs(command, "--help", env=env)
        assert ran.returncode == 0, output(ran)
        assert ran.stdout.startswith(f"Usage: recs {command} "), ran.stdout
        assert len(ran.stdout.splitlines()) > 3, ran.stdout


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """The demo (``recs demo --small``) in a temporary data root, then a deployment reading its
    data: the landing files, warehouse and artifacts the demo wrote, a quick model selection,
    and the Dagster home ``home/`` named in the file."""
    root = tmp_path_factory.mktemp("recs_cli")
    demo_config = root / "demo.toml"
    demo_config.write_text('dagster_home = "home"\n')
    config = root / "recs.toml"
    config.write_text(
        'dagster_home = "home"\n\n'
        '[resources.log_source]\nlanding_root = "data/demo/landing"\n\n'
        '[resources.warehouse]\ndatabase = "data/demo/warehouse.duckdb"\n\n'
        '[resources.artifacts]\nroot = "data/demo/artifacts"\n\n'
        '[ops.model_selection]\ntrials = 2\ncandidates = ["popularity", "gfcf"]\n'
    )
    env = environment(RECS_DATA_ROOT=str(root / "data"), RECS_CONFIG=str(demo_config))
    started = time.perf_counter()
    ran = recs("demo", "--small", "--days", "12", "--model", "gfcf", "--trials", "2", env=env)
    print(f"recs demo --small: {time.perf_counter() - started:.1f}s")
    assert ran.returncode == 0, output(ran)
    day = dt.date.fromisoformat(re.search(r"published lists as of (\S+)", ran.stdout)[1])
    return SimpleNamespace(root=root, env=env | {"RECS_CONFIG": str(config)}, day=day, demo=ran)


def test_the_demo_is_recorded_in_the_home_recs_toml_names(deployment):
    runs = deployment.root / "home" / "history" / "runs.db"
    assert runs.exists(), output(deployment.demo)
    with sqlite3.connect(runs) as con:
        (recorded,) = con.execute("SELECT count(*) FROM runs").fetchone()
    assert recorded == 2  # the ingest and the chain


def demo_runs(deployment) -> list:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(deployment.root / "home")) as instance:
        return instance.get_runs()


def test_the_demos_runs_carry_the_code_locations_origin(deployment):
    """Issue 28 (the UI, finding 2): the runs `make run` made had no repository origin, so the
    UI left them out of Jobs → daily_recommendations → Runs and the Overview timeline, and
    warned on re-execution. They are now created through the code location (the ingest, then
    the chain): each names the location and repository, as a run the UI launches does."""
    import dagster as dg

    runs = sorted(demo_runs(deployment), key=lambda run: run.run_id)
    assert len(runs) == 2
    for run in runs:
        assert run.job_name == "daily_recommendations", run
        assert run.status == dg.DagsterRunStatus.SUCCESS, run
        origin = run.remote_job_origin
        assert origin is not None, run
        assert origin.location_name == "recs_pipeline"
        assert origin.repository_origin.repository_name == "__repository__"
        assert origin.job_name == "daily_recommendations"
        assert run.tags["dagster/code_location"] == "recs_pipeline"
    selections = sorted(tuple(sorted(k.to_user_string() for k in r.asset_selection)) for r in runs)
    assert ("raw_interactions",) in selections  # the ingest; the chain is the other assets
    # What the job page's filter finds (the repository label Dagster stores with the origin).
    with dg.DagsterInstance.from_config(str(deployment.root / "home")) as instance:
        listed = instance.get_runs(
            dg.RunsFilter(
                job_name="daily_recommendations",
                tags={".dagster/repository": "__repository__@recs_pipeline"},
            )
        )
    assert {r.run_id for r in listed} == {r.run_id for r in runs}


# The query of the job page's Runs tab (RunsFeedRootQuery), with the filter it sends.
RUNS_FEED = """
query RunsFeedRootQuery($limit: Int!, $cursor: String, $filter: RunsFilter,
                        $view: RunsFeedView!) {
  runsFeedOrError(limit: $limit, cursor: $cursor, filter: $filter, view: $view) {
    __typename
    ... on RunsFeedConnection {
      results {
        id
        ... on Run {
          runId
          pipelineName
          pipelineSnapshotId
          parentPipelineSnapshotId
          repositoryOrigin { repositoryLocationName repositoryName }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""
JOB_SNAPSHOT = """
query Job($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) {
    __typename
    ... on Pipeline { pipelineSnapshotId }
  }
}
"""


def test_the_ui_lists_the_demos_runs_on_the_jobs_page_as_the_loaded_version(deployment):
    """The webserver on the demo's state (its recs.toml, as `recs ui` opens it without a
    deployment): the job page's query lists both demo runs, with their origin, and each run's
    job snapshot is the loaded job's, so re-executing it warns of no other version (the UI
    matches the origin, then the snapshot: the parent's for a run of some of the assets)."""
    from tests.daemon_support import Deployment

    env = environment(
        DAGSTER_HOME=str(deployment.root / "home"),
        RECS_CONFIG=str(deployment.root / "data" / "demo" / "recs.toml"),
        RECS_DATA_ROOT=str(deployment.root / "data"),
    )
    server = Deployment(env, logs=deployment.root)
    try:
        server.start_webserver()
        server.wait_until_loaded(timeout=300)
        label = "__repository__@recs_pipeline"
        feed = server.graphql(
            RUNS_FEED,
            {
                "limit": 25,
                "view": "RUNS",
                "filter": {
                    "pipelineName": "daily_recommendations",
                    "tags": [{"key": ".dagster/repository", "value": label}],
                },
            },
        )["runsFeedOrError"]
        job = server.graphql(
            JOB_SNAPSHOT,
            {
                "selector": {
                    "pipelineName": "daily_recommendations",
                    "repositoryName": "__repository__",
                    "repositoryLocationName": "recs_pipeline",
                }
            },
        )["pipelineOrError"]
    finally:
        server.stop()
    assert feed["__typename"] == "RunsFeedConnection", feed
    listed = {run["runId"]: run for run in feed["results"]}
    assert set(listed) == {run.run_id for run in demo_runs(deployment)}, feed
    assert job["__typename"] == "Pipeline", job
    for run in listed.values():
        assert run["repositoryOrigin"] == {
            "repositoryLocationName": "recs_pipeline",
            "repositoryName": "__repository__",
        }
        version = run["parentPipelineSnapshotId"] or run["pipelineSnapshotId"]
        assert version == job["pipelineSnapshotId"], (run, job)


def test_show_prints_a_users_published_list_and_says_when_it_is_the_fallback(deployment):
    ran = recs("show", "u000000", env=deployment.env)
    assert ran.returncode == 0, output(ran)
    assert f"u000000 on {deployment.day}, scored by gfcf" in ran.stdout
    ranks = re.findall(r"^\s+(\d+)\s+(i\d+)\s+[\d.]+$", ran.stdout, re.MULTILINE)
    assert [int(rank) for rank, _ in ranks] == list(range(1, 21)), ran.stdout

    database = deployment.root / "data" / "demo" / "serving" / "published.duckdb"
    with duckdb.connect(str(database), read_only=True) as con:
        (fallback_user,) = con.execute(
            "SELECT min(user_id) FROM serving.latest_recommendations WHERE model = 'popularity'"
        ).fetchone()
    ran = recs("show", fallback_user, "--day", str(deployment.day), env=deployment.env)
    assert ran.returncode == 0, output(ran)
    assert "the popularity fallback: the model does not know this user" in ran.stdout


def test_ingest_over_unchanged_daily_files_starts_no_run(deployment):
    """Issue 28: `recs ingest` over daily files (the demo's `{date}` folders) read every day
    of its range again. Each day now records its own files' fingerprint: unchanged days start
    no run (a day whose files changed is read again: test_history.py)."""
    last = deployment.day
    first = last - dt.timedelta(days=2)
    again = recs("ingest", "--from", str(first), "--to", str(last), env=deployment.env)
    assert again.returncode == 0, output(again)
    assert (
        f"{first}..{last}: every day is ingested, from their landing files as they are now;"
        " nothing to do"
    ) in again.stdout, output(again)
    assert "loading the code location" not in again.stderr, output(again)  # no run started


def test_ingest_reads_each_stretch_of_changed_days_in_a_run_of_its_own(tmp_path):
    """`recs ingest` read the days to read again in one run from the first to the last: a day
    between whose daily folder was archived made that run refuse to empty it, and the command
    failed. Each stretch of consecutive days is now a run of its own (test_history.py: the
    days between keep their rows)."""
    import os

    landing = tmp_path / "landing"
    days = ["2024-03-01", "2024-03-02", "2024-03-03"]
    for n, day in enumerate(days):
        noon = int(dt.datetime.fromisoformat(f"{day}T12:00:00+00:00").timestamp())
        folder = landing / day
        folder.mkdir(parents=True)
        (folder / "ratings.csv").write_text(
            "userId,movieId,rating,timestamp\n"
            + "".join(f"{u},{u + n},4,{noon + u}\n" for u in range(4))
        )
    config = tmp_path / "recs.toml"
    config.write_text(
        'dagster_home = "home"\npartition_start = "2024-03-01"\n\n'
        '[resources.log_source]\nlanding_root = "landing"\npath_pattern = "{date}/*.csv"\n'
        'user_column = "userId"\nitem_column = "movieId"\ntimestamp_unit = "s"\n\n'
        '[resources.warehouse]\ndatabase = "warehouse.duckdb"\n'
    )
    env = environment(RECS_DATA_ROOT=str(tmp_path / "data"), RECS_CONFIG=str(config))
    window = ("--from", days[0], "--to", days[-1])
    first = recs("ingest", *window, env=env)
    assert first.returncode == 0, output(first)

    (landing / days[1] / "ratings.csv").unlink()  # archived: its day keeps its rows
    for day in (days[0], days[2]):  # re-exported
        file = landing / day / "ratings.csv"
        stat = file.stat()
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = recs("ingest", *window, env=env)
    assert again.returncode == 0, output(again)
    assert f"reading {days[0]}, {days[2]} (2 runs)" in again.stdout, output(again)
    for day in (days[0], days[2]):
        assert f"ingested {day}: 4 events on 1 of 1 days" in again.stdout, output(again)

    # --force reads the whole range, the archived day too, which is refused. The terminal says
    # why: it said only 'Error occurred while executing op "raw_interactions":'.
    forced = recs("ingest", *window, "--force", env=env)
    assert forced.returncode == 1, output(forced)
    refusal = (
        "1 day(s) without landing files have stored rows that ingesting would delete:"
        f" {days[1]} (4 rows)"
    )
    assert f"raw_interactions     FAILED: {refusal}" in forced.stderr, output(forced)
    assert f"failed at raw_interactions: {refusal}" in forced.stderr, output(forced)


def test_backfill_wait_prints_verdicts_a_gate_block_is_a_plain_reason_status_says_it(
    deployment,
):
    days = [deployment.day - dt.timedelta(days=n) for n in (2, 1)]
    started = time.perf_counter()
    # Popularity pinned: it cannot beat itself, so the gate blocks both days.
    ran = recs(
        "backfill",
        "--from",
        str(days[0]),
        "--to",
        str(days[1]),
        "--wait",
        "--model",
        "popularity",
        env=deployment.env,
        timeout=600,
    )
    print(f"recs backfill --wait, 2 days: {time.perf_counter() - started:.1f}s")
    text = output(ran)
    assert ran.returncode == 1, text
    assert "Traceback" not in text, text
    assert re.search(r"^backfill \S+: retrain_days, 2 runs", ran.stdout, re.MULTILINE)
    for day in days:
        # Each run's steps (which model selection chose, and why), then its verdict.
        assert re.search(rf"^  {day} model_selection      model selection: \S+ chosen", text, re.M)
        assert f"  {day} model_evaluation     check beats_popularity failed (error)" in text
        assert f"  {day} recommendations      skipped: model_evaluation failed" in text
        assert (
            f"FAILED {day}: scorer popularity, gate failed (lift +0.0%); not published: the"
            f" quality gate blocked {day}: the model is popularity itself" in ran.stderr
        ), text
    assert "0 of 2 days published" in ran.stdout
    assert f"error: 2 of 2 days failed ({days[0]}, {days[1]})" in ran.stderr

    # The reader's error on a day the gate blocked says so, and where to look.
    ran = recs("show", "u000000", "--day", str(days[1]), env=deployment.env)
    assert ran.returncode == 1, output(ran)
    assert ran.stderr.startswith(f"error: nothing published for {days[1]}"), ran.stderr
    assert f"the quality gate blocked {days[1]}" in ran.stderr
    assert "recs status" in ran.stderr
    assert "does not exist" not in ran.stderr and "Traceback" not in ran.stderr

    # The latest days: the demo's day published, the two blocked, each with its reason.
    ran = recs("status", env=deployment.env)
    assert ran.returncode == 0, output(ran)
    lines = {line[:10]: line for line in ran.stdout.splitlines()}
    assert re.match(
        rf"{deployment.day}\s+gfcf\s+passed \(lift \+[\d.]+%\)\s+yes, \d+ users",
        lines[str(deployment.day)],
    ), ran.stdout
    for day in days:
        assert re.match(
            rf"{day}\s+popularity\s+failed \(lift \+0.0%\)\s+no: the quality gate blocked {day}:",
            lines[str(day)],
        ), ran.stdout


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90m", 5400), ("2h", 7200), ("1h30m", 5400), ("45s", 45), ("600", 600), ("1.5h", 5400)],
)
def test_a_timeout_reads_as_a_person_writes_it(text, seconds):
    import click

    from cli.main import DURATION, duration_text

    assert DURATION.convert(text, None, None) == seconds
    assert DURATION.convert(duration_text(seconds), None, None) == seconds
    for wrong in ("soon", "0", "30m1h", "1m1m", "10s5", "5 m"):
        with pytest.raises(click.BadParameter):
            DURATION.convert(wrong, None, None)


def test_a_timeout_stops_waiting_not_the_run_and_says_how_to_follow_it(deployment):
    """Issue 28 (the terminal): `recs backfill --wait` followed its runs with no end in sight.
    --timeout stops the waiting: the runs still going are named with how to follow them, the
    exit status is 3 (said in --help), and the run goes on to its end without recs."""
    ran = recs("backfill", "--help", env=deployment.env)
    text = " ".join(ran.stdout.split())
    assert "--timeout DURATION" in text and "the exit status is 3" in text, ran.stdout
    for command in ("run", "ingest"):
        ran = recs(command, "--help", env=deployment.env)
        assert "--timeout DURATION" in ran.stdout, ran.stdout
    ran = recs("backfill", "--from", "2026-01-01", "--to", "2026-01-01", "--wait",
               "--timeout", "soon", env=deployment.env)  # fmt: skip
    assert ran.returncode == 2 and "'soon' is not a duration" in ran.stderr, output(ran)

    day = deployment.day - dt.timedelta(days=3)
    process = subprocess.Popen(
        [str(RECS), "backfill", "--from", str(day), "--to", str(day), "--wait",
         "--model", "gfcf", "--timeout", "1s"],
        cwd=ROOT, env=deployment.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=300)
        text = stdout + stderr
        assert process.returncode == 3, text
        assert "Traceback" not in text, text
        going = re.search(rf"^  {day} run (\w{{8}}) \w+", stderr, re.MULTILINE)
        assert going, text
        assert "stopped waiting after 1s (--timeout); the runs go on" in stderr, text
        assert "recs status" in stderr and "recs ui" in stderr, text
        assert "error: stopped waiting for 1 run after 1s" in stderr, text
        # The run was not stopped: it ends, and publishes the day, without recs.
        import dagster as dg

        with dg.DagsterInstance.from_config(str(deployment.root / "home")) as instance:
            deadline = time.monotonic() + 300
            while True:
                [run] = [
                    r for r in instance.get_runs() if r.run_id.startswith(going[1])
                ]  # fmt: skip
                if run.is_finished or time.monotonic() > deadline:
                    break
                time.sleep(1)
        assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    ran = recs("status", env=deployment.env)
    assert re.search(rf"^{day}\s+gfcf\s+passed", ran.stdout, re.MULTILINE), output(ran)


def test_ui_takes_a_free_port_when_the_one_asked_for_is_busy(tmp_path):
    home = tmp_path / "caller_home"
    env = environment(DAGSTER_HOME=str(home), RECS_CONFIG="", RECS_DATA_ROOT=str(tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = subprocess.Popen(
            [str(RECS), "ui", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        lines = []
        try:
            while not lines or not lines[-1].startswith(("Dagster UI on", "error")):
                line = process.stdout.readline()
                if not line:
                    break
                lines.append(line)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                # dagster dev shuts down slowly on a busy machine (61 s of a loaded suite, where
                # it waited 60 s here): its whole group is killed, nothing is left to wait for.
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=60)
    text = "".join(lines)
    moved = re.search(rf"port {port} is busy \(another dagster dev\?\): using port (\d+)", text)
    assert moved, text
    assert int(moved[1]) != port
    # The caller's DAGSTER_HOME is honoured (given its dagster.yaml).
    assert f"DAGSTER_HOME={home.resolve()}" in text, text
    assert (home / "dagster.yaml").exists()


@pytest.mark.parametrize(
    "message",
    [
        # The quality gate's stop as `recs run` saw it: Dagster's Failure, by its full path.
        "dagster._core.definitions.events.Failure: lightgcn failed the quality gate of D",
        "Failure: lightgcn failed the quality gate of D",
        "recs_pipeline.evaluation.gate.GateError: lightgcn failed the quality gate of D",
        "lightgcn failed the quality gate of D\n\nStack Trace:\n  File ...",
    ],
)
def test_a_steps_failure_is_printed_without_its_class(message):
    from cli.days import first_line

    assert first_line(message) == "lightgcn failed the quality gate of D"


def test_status_columns_never_run_into_each_other():
    """A newcomer's MovieLens day read "insufficient_evidence (lift -4.3%)yes, 452 users": the
    gate column was 30 characters wide whatever its verdict."""
    from cli.main import aligned

    header, row = aligned(
        [
            ("day", "scorer", "gate", "published"),
            ("1998-04-22", "lightgcn", "insufficient_evidence (lift -4.3%)", "yes, 452 users"),
        ]
    )
    assert "(lift -4.3%)  yes, 452 users" in row
    assert header.index("published") == row.index("yes")


def test_ingest_reads_an_unchanged_export_once(tmp_path):
    """Issue 28 (history ingest): `recs ingest` over an export already ingested read it again,
    one run over every day. Now a second call finds every day ingested from the export as it is
    and starts no run (pending_days: a changed export is read again, test_history.py); a lost
    warehouse, or --force, ingests the range again."""
    landing = tmp_path / "landing"
    landing.mkdir()
    noon = dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC)
    lines = ["userId,movieId,rating,timestamp"]
    for n in range(60):  # 60 ratings over 5 days, the last day's last
        when = noon + dt.timedelta(days=n // 12)
        lines.append(f"{n % 7},{n % 11},4,{int(when.timestamp())}")
    (landing / "ratings.csv").write_text("\n".join(lines) + "\n")
    config = tmp_path / "recs.toml"
    config.write_text(
        'dagster_home = "home"\npartition_start = "2024-03-01"\n\n'
        '[resources.log_source]\nlanding_root = "landing"\npath_pattern = "ratings.csv"\n'
        'user_column = "userId"\nitem_column = "movieId"\ntimestamp_unit = "s"\n\n'
        '[resources.warehouse]\ndatabase = "warehouse.duckdb"\n'
    )
    env = environment(RECS_DATA_ROOT=str(tmp_path / "data"), RECS_CONFIG=str(config))
    window = ("--from", "2024-03-01", "--to", "2024-03-05")

    ingested = "ingested 2024-03-01..2024-03-05: 60 events on 5 of 5 days"
    first = recs("ingest", *window, env=env)
    assert first.returncode == 0, output(first)
    assert ingested in first.stdout, output(first)

    again = recs("ingest", *window, env=env)
    assert again.returncode == 0, output(again)
    assert "2024-03-01..2024-03-05: every day is ingested" in again.stdout, output(again)
    assert "60 events on 5 of 5 days; --force ingests them again" in again.stdout, output(again)
    assert "loading the code location" not in again.stderr, output(again)  # no run started

    early = recs("ingest", "--from", "2024-02-28", "--to", "2024-03-05", env=env)
    assert early.returncode == 2, output(early)
    assert "--from 2024-02-28 is before the first partition, 2024-03-01" in early.stderr

    # The instance's records say ingested, but the warehouse is gone: the days are read again.
    (tmp_path / "warehouse.duckdb").unlink()
    lost = recs("ingest", *window, env=env)
    assert lost.returncode == 0, output(lost)
    assert "the warehouse holds no ingested day; reading them all" in lost.stdout, output(lost)
    assert ingested in lost.stdout, output(lost)

    forced = recs("ingest", *window, "--force", env=env)
    assert forced.returncode == 0, output(forced)
    assert ingested in forced.stdout, output(forced)
    import dagster as dg

    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        assert instance.get_runs_count() == 3
