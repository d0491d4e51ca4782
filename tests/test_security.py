"""Security: configuration never reaches SQL unquoted, reads stay inside the landing root, the
UI binds loopback only, and no credentials are committed.

Complements tests/test_bad_input.py (SQL-looking ids, one quoted column name) and
tests/test_logs.py (``day_files`` refusing ``..``, absolute patterns and a symlinked folder).
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import re
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets.ingest import raw_interactions
from recs_pipeline.data.item_features import read_item_features
from recs_pipeline.data.logs import LogConfigError, LogFormat, day_files, ingest_day
from recs_pipeline.infra.artifacts import Artifact, UrlArtifactStore
from recs_pipeline.infra.warehouse import quote_identifier, replace_partition
from recs_pipeline.schema import TABLES
from resources import ArtifactStore, LogSource, Warehouse

PROJECT = Path(__file__).resolve().parents[1]
DAY = dt.date(2026, 3, 2)  # a partition of the asset's daily partitions
T0 = 1772409600000  # 2026-03-02T00:00:00Z in ms
PREVIOUS = dt.date(2026, 3, 1)

EVIL_NAMES = [
    '"; DROP TABLE raw.interactions; --',
    "x'); DROP TABLE raw.interactions; --",
    "a;b",
    "col` OR 1=1 --",
    'user"id"; DELETE FROM raw.interactions',
    "back\\slash",
    "ünïcødé ✓",
    "SELECT",
]
SETTINGS = ["user_column", "item_column", "timestamp_column", "event_type_column", "weight_column"]
DEFAULT_COLUMNS = {
    "timestamp_column": "timestamp",
    "user_column": "user_id",
    "item_column": "item_id",
    "event_type_column": "event_type",
    "weight_column": "weight",
}


def csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def seed_previous_day(con) -> list[tuple]:
    """A partition of an earlier day in every raw table; returns every table's row count."""
    con.execute(
        "INSERT INTO raw.interactions VALUES (?, ?, 'u0', 'i0', 'view', 1.0, 'old.csv')",
        [PREVIOUS, dt.datetime(2026, 3, 1, 12)],
    )
    con.execute(
        "INSERT INTO raw.rejected_interactions VALUES (?, 'old.csv', 'x', 'bad')", [PREVIOUS]
    )
    return table_counts(con)


def table_counts(con) -> list[tuple]:
    """(table, rows) for every warehouse table: raises if one was dropped."""
    return [(t, con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in sorted(TABLES)]


@pytest.mark.parametrize("name", EVIL_NAMES)
@pytest.mark.parametrize("setting", SETTINGS)
def test_column_settings_are_quoted_identifiers_or_a_config_error(setting, name, con, tmp_path):
    before = seed_previous_day(con)
    columns = {**DEFAULT_COLUMNS, setting: name}
    values = {
        "timestamp_column": str(T0 + 5),
        "user_column": "u1",
        "item_column": "i1",
        "event_type_column": "click",
        "weight_column": "2.5",
    }
    header = ",".join(csv_field(columns[s]) for s in values)
    row = ",".join(values.values())
    path = tmp_path / "land" / "part.csv"
    path.parent.mkdir()
    path.write_text(header + "\n" + row + "\n")
    # Configured the way a user does it: through the resource (launchpad / environment).
    fmt = LogSource(landing_root=str(tmp_path / "land"), **columns).log_format()

    # The column exists under that exact name: it is read as a literal identifier.
    report = ingest_day(con, [str(path)], fmt, DAY)
    assert (report.accepted, report.rejected) == (1, 0), report
    assert con.execute(
        "SELECT user_id, item_id, event_type, weight, epoch_ms(event_ts) FROM raw.interactions"
        " WHERE event_date = ?",
        [DAY],
    ).fetchall() == [("u1", "i1", "click", 2.5, T0 + 5)]

    # The files lack it: a required column is a config error naming the setting; an optional
    # one is NULL / the default. Either way nothing else changed and every table survives.
    other = tmp_path / "land" / "other.csv"
    other.write_text(",".join(csv_field(DEFAULT_COLUMNS[s]) for s in values) + "\n" + row + "\n")
    if setting in ("event_type_column", "weight_column"):
        assert ingest_day(con, [str(other)], fmt, DAY).accepted == 1
    else:
        with pytest.raises(LogConfigError, match=re.escape(f"{setting} maps to column {name!r}")):
            ingest_day(con, [str(other)], fmt, DAY)
    after = table_counts(con)
    assert [t for t, _ in after] == [t for t, _ in before]
    assert con.execute(
        "SELECT count(*) FROM raw.interactions WHERE event_date = ?", [PREVIOUS]
    ).fetchone() == (1,)


def test_event_types_are_bound_values_and_enum_settings_are_checked(con, tmp_path):
    seed_previous_day(con)
    evil_type = "view'); DROP TABLE raw.interactions; --"
    path = tmp_path / "part.csv"
    path.write_text(
        "timestamp,user_id,item_id,event_type\n"
        f"{T0},u1,i1,{csv_field(evil_type)}\n{T0},u2,i2,view\n"
    )
    fmt = LogSource(landing_root=str(tmp_path), event_types=[evil_type]).log_format()
    report = ingest_day(con, [str(path)], fmt, DAY)
    assert (report.accepted, report.rejected) == (1, 1)
    assert con.execute(
        "SELECT user_id, event_type FROM raw.interactions WHERE event_date = ?", [DAY]
    ).fetchall() == [("u1", evil_type)]
    # Settings that choose SQL fragments (reader, timestamp expression) accept known values only.
    for field, value in (
        ("timestamp_unit", "ms) * 0; DROP TABLE raw.interactions; --"),
        ("format", "csv', header=true); DROP TABLE raw.interactions; --"),
    ):
        with pytest.raises(LogConfigError, match=field):
            LogSource(landing_root=str(tmp_path), **{field: value}).log_format()
    assert dict(table_counts(con))["raw.interactions"] == 2


def test_warehouse_identifiers_are_checked_or_quoted(con):
    seed_previous_day(con)
    before = table_counts(con)
    for table in ("raw.interactions; DROP TABLE ml.metrics", "raw.interactions --", "x"):
        with pytest.raises(ValueError, match="unknown warehouse table"):
            replace_partition(con, table, DAY, "SELECT 1")
    for name in EVIL_NAMES:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _q AS SELECT 42 AS {quote_identifier(name)}")
        assert con.execute("DESCRIBE _q").fetchall()[0][0] == name
        assert con.execute(f"SELECT {quote_identifier(name)} FROM _q").fetchone() == (42,)
    for bad in ("", "nul\x00byte", None):
        with pytest.raises(ValueError):
            quote_identifier(bad)
    assert table_counts(con) == before


# --- reads confined to the landing root -------------------------------------------------------


def landing_with_outside(tmp_path: Path) -> tuple[Path, Path]:
    """A landing root with one clean day, and a folder beside it holding a secret day file."""
    root = tmp_path / "land"
    (root / DAY.isoformat()).mkdir(parents=True)
    (root / DAY.isoformat() / "events-0.csv").write_text(
        f"timestamp,user_id,item_id,event_type\n{T0},u_inside,i1,view\n"
    )
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text(
        f"timestamp,user_id,item_id,event_type\n{T0},u_SECRET,i1,view\n"
    )
    return root, outside


@pytest.mark.parametrize(
    "kind",
    ["dotdot in the date format", "absolute from the date format", "symlinked file", "dotdot"],
)
def test_ingest_refuses_paths_that_leave_the_landing_root(kind, tmp_path):
    """Through the asset: the run fails with a config error naming path_pattern, nothing from
    outside the root is read, and the day ingested before is untouched."""
    root, outside = landing_with_outside(tmp_path)
    pattern = {
        # '..' produced by strftime text, not visible as a path part of the raw pattern
        "dotdot in the date format": "{date:%Y-%m-%d/../../outside}/*.csv",
        "absolute from the date format": "{date:" + str(outside) + "/%Y}*.csv",
        "symlinked file": "{date:%Y-%m-%d}/*.csv",
        "dotdot": "{date:%Y-%m-%d}/../../outside/*.csv",
    }[kind]
    if kind == "symlinked file":
        os.symlink(outside / "secret.csv", root / DAY.isoformat() / "events-1.csv")
    warehouse = Warehouse(database=str(tmp_path / "warehouse.duckdb"))
    with warehouse.session() as con:
        seed_previous_day(con)
        before = table_counts(con)
    result = dg.materialize(
        [raw_interactions],
        partition_key=DAY.isoformat(),
        instance=dg.DagsterInstance.ephemeral(),
        resources={
            "warehouse": warehouse,
            "artifacts": ArtifactStore(root=str(tmp_path / "artifacts")),
            "log_source": LogSource(landing_root=str(root), path_pattern=pattern),
        },
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "LogConfigError" in message and "path_pattern" in message, message
    gc.collect()  # the failed step's connection may wait for the collector: see test_faults
    with duckdb.connect(warehouse.database, read_only=True) as con:
        assert table_counts(con) == before
        assert con.execute(
            "SELECT count(*) FROM raw.interactions WHERE user_id = 'u_SECRET'"
        ).fetchone() == (0,)


def test_a_symlinked_landing_root_is_followed_but_not_escaped(tmp_path):
    """The root may itself be a link (a mounted export); the check is against where it points."""
    real_root, outside = landing_with_outside(tmp_path)
    link = tmp_path / "land-link"
    os.symlink(real_root, link)
    files = day_files(link, "{date:%Y-%m-%d}/*.csv", DAY)
    assert files == [str((real_root / DAY.isoformat() / "events-0.csv").resolve())]
    with pytest.raises(LogConfigError, match="outside landing_root"):
        day_files(link, "../outside/*.csv", DAY)


def test_a_landing_file_named_like_a_glob_is_read_as_itself(con, tmp_path):
    folder = tmp_path / "land" / DAY.isoformat()
    folder.mkdir(parents=True)
    for name, user in (("*.csv", "u_star"), ("b.csv", "u_b"), ("c[d].csv", "u_c")):
        (folder / name).write_text(f"timestamp,user_id,item_id,event_type\n{T0},{user},i1,view\n")
    (folder.parent / "cd.csv").write_text("not,in,the,day\n")
    files = day_files(tmp_path / "land", "{date:%Y-%m-%d}/*.csv", DAY)
    assert len(files) == 3
    ingest_day(con, files, LogFormat(), DAY)
    rows = con.execute(
        "SELECT user_id, source_file FROM raw.interactions ORDER BY user_id"
    ).fetchall()
    assert sorted((u, Path(f).name) for u, f in rows) == [
        ("u_b", "b.csv"),
        ("u_c", "c[d].csv"),
        ("u_star", "*.csv"),
    ]


def test_a_landing_root_with_glob_characters_in_its_name_is_taken_literally(tmp_path):
    root, _ = landing_with_outside(tmp_path)
    odd = tmp_path / "exports[1]"
    shutil.move(root, odd)
    assert day_files(odd, "{date:%Y-%m-%d}/*.csv", DAY) == [
        str((odd / DAY.isoformat() / "events-0.csv").resolve())
    ]


def test_item_catalogue_is_confined_to_the_landing_root(tmp_path):
    root, outside = landing_with_outside(tmp_path)
    (outside / "items.csv").write_text("item_id,genre\ni1,1\n")
    os.symlink(outside / "items.csv", root / "items.csv")
    for relative in ("items.csv", f"{DAY.isoformat()}/../../outside/items.csv"):
        with pytest.raises(LogConfigError, match="item_features_path .* outside landing_root"):
            LogSource(landing_root=str(root), item_features_path=relative).item_features_file()


def test_item_catalogue_columns_are_quoted_identifiers(tmp_path):
    """The item column comes from configuration, the feature columns from the file itself:
    both reach SQL quoted."""
    item_column, feature = EVIL_NAMES[0], 'genre"; DROP TABLE catalogue; --'
    (tmp_path / "items.csv").write_text(
        f"{csv_field(item_column)},{csv_field(feature)}\ni1,1\ni2,0\n"
    )
    source = LogSource(landing_root=str(tmp_path), item_column=item_column)
    features = read_item_features(source.item_features_file(), item_column, ["i2", "i1", "i3"])
    assert features.columns == [feature]
    assert features.values.flatten().tolist() == [0.0, 1.0, 0.0]


def test_a_catalogue_named_like_a_glob_is_read_as_itself(tmp_path):
    (tmp_path / "items[1].csv").write_text("item_id,genre\ni1,1\n")
    (tmp_path / "items1.csv").write_text("item_id,genre\ni1,0\n")
    path = LogSource(
        landing_root=str(tmp_path), item_features_path="items[1].csv"
    ).item_features_file()
    assert read_item_features(path, "item_id", ["i1"]).values.tolist() == [[1.0]]


def test_artifact_paths_are_confined_to_the_store(tmp_path):
    store = UrlArtifactStore(tmp_path / "artifacts")
    for asset, partition, name in (
        ("trained_model", "../../etc", "model.pt"),
        ("trained_model", "2026-03-01", "../model.pt"),
        ("..", "2026-03-01", "model.pt"),
        ("trained_model", "2026/03/01", "model.pt"),
        ("trained_model", "2026-03-01", "/etc/passwd"),
        ("trained_model", ".", "model.pt"),
        ("trained_model", "2026-03-01", ""),
    ):
        with pytest.raises(ValueError, match="unsafe artifact path"):
            store.put(Artifact(asset, name), partition, {})
    assert not any((tmp_path).rglob("*.pt")) and not (tmp_path / "etc").exists()


# --- the UI binds loopback; no credentials in the repository -------------------------------


def tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (PROJECT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=PROJECT, capture_output=True, check=True
    ).stdout
    return [PROJECT / name for name in out.decode().split("\0") if name]


def text_of(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None  # tracked but deleted in the working tree
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def test_make_ui_and_documented_webserver_commands_bind_loopback():
    makefile = (PROJECT / "Makefile").read_text()
    recipe = re.search(r"^ui:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "Makefile has no ui target"
    command = recipe.group(1)
    # `make ui` runs `recs ui`, which starts `dagster dev` on --host, loopback by default.
    assert re.search(r"\brecs ui\b", command), command
    assert not re.search(r"--host[ =](?!127\.0\.0\.1\b)", command), command
    from click.testing import CliRunner

    from cli.main import recs

    shown = CliRunner().invoke(recs, ["ui", "--help"]).output
    assert "127.0.0.1" in shown and "Loopback only by default" in shown, shown
    ui_source = (PROJECT / "cli" / "main.py").read_text()
    assert re.search(r'"dagster", "dev", .*"-h", host', ui_source)
    # Every documented or scripted webserver command that names a host names loopback, and no
    # code, script or config binds every interface (prose may warn against doing so).
    invocation = re.compile(r"(dagster dev|dagster-webserver)([^`\n]*)")
    host = re.compile(r"(?:-h|--host)[ =](\S+)")
    wildcard = re.compile(r"0\.0\.0\.0|--host[ =]::|-h ::(\s|$)|\[::\]")
    for path in tracked_files():
        if path.name == Path(__file__).name:
            continue
        text = text_of(path)
        if text is None:
            continue
        if path.suffix not in (".md", ".rst", ".txt"):
            assert not wildcard.search(text), f"{path}: binds every interface"
        for match in invocation.finditer(text):
            for named in host.findall(match.group(2)):
                assert named.strip("'\"`") in ("127.0.0.1", "localhost", "::1"), (path, match[0])


SECRET_PATTERNS = {
    "AWS access key id": r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
    "AWS secret key": r"(?i)aws_secret_access_key\s*[=:]\s*\S{20,}",
    "private key": r"-----BEGIN (RSA |EC |DSA |OPENSSH |PGP )?PRIVATE KEY",
    "GitHub token": r"\b(gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})\b",
    "Slack token": r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    "Google API key": r"\bAIza[0-9A-Za-z_-]{35}\b",
    "password assignment": r"(?i)\b(password|passwd|pwd)\s*[=:]\s*['\"][^'\"\s]{4,}['\"]",
    "secret or token assignment": (
        r"(?i)\b(secret|token|api[_-]?key|access[_-]?key)\s*[=:]\s*['\"][A-Za-z0-9+/_=-]{16,}['\"]"
    ),
    "credentials in a URL": r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:[^/\s@'\"]+@[^\s/]+",
}
SECRET_FILES = re.compile(r"(^|/)(\.env(\..*)?|id_rsa|id_ed25519|.*\.pem|.*\.p12|credentials)$")


def test_no_credentials_in_tracked_files():
    findings = []
    for path in tracked_files():
        relative = str(path.relative_to(PROJECT))
        if SECRET_FILES.search(relative):
            findings.append((relative, "credential file"))
        if path.name == Path(__file__).name:
            continue  # the patterns themselves
        text = text_of(path)
        if text is None:
            continue
        for label, pattern in SECRET_PATTERNS.items():
            for match in re.finditer(pattern, text):
                findings.append((relative, label, match.group(0)[:40]))
    assert not findings, findings
