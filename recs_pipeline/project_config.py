"""The project config file: this deployment's defaults, read by every process that loads the
code location (``dagster dev``, the daemon, the CLI, ``python -m assets.main --own-logs``).

Where: the path in ``RECS_CONFIG``, else ``recs.toml`` at the project root; no file, no
overrides (``RECS_CONFIG=`` set to the empty string reads none). Format (TOML), shaped like a run
config::

    partition_start = "1996-03-29"      # the first daily partition (written by the profile)

    [ops.interaction_split]              # any setting of ops.<op>.config in the launchpad
    window_days = 365
    test_days = 30

    [ops.trained_model]
    model = "gfcf"

    [resources.log_source]               # any field of the resource (paths: relative to
    landing_root = "exports/ml-latest"   # this file's folder)
    path_pattern = "ratings.csv"
    timestamp_unit = "s"

    [instance]                           # where Dagster keeps runs, events and schedules:
    storage = "postgres"                 # "sqlite" (embedded, the default) or "postgres"
                                         # (shared; RECS_INSTANCE overrides; assets/instance.py)

Precedence, highest first: a run's own config; the environment (``RECS_*``); this file; the
built-in defaults. The values become the *defaults* of the Dagster config schema, so the
launchpad shows them, a run without config (the schedule, a backfill, ``dagster job backfill``)
uses them, and a run overriding one field keeps the others.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_ENV = "RECS_CONFIG"
DEFAULT_CONFIG_FILE = PROJECT_ROOT / "recs.toml"
TOP_LEVEL_KEYS = ("partition_start", "data_root")
# Values that are paths: resolved against the file's folder when relative.
PATH_KEYS = {
    ("resources", "log_source", "landing_root"),
    ("resources", "warehouse", "database"),
    ("resources", "warehouse", "serving_root"),
    ("resources", "artifacts", "root"),
    ("data_root",),
}


class ProjectConfigError(ValueError):
    """The project config file is unreadable or names an unknown setting."""


def config_path() -> Path | None:
    """The project config file's path (it may not exist), or None when RECS_CONFIG is empty."""
    value = os.environ.get(CONFIG_ENV)
    if value is None:
        return DEFAULT_CONFIG_FILE
    return Path(value).resolve() if value.strip() else None


def _resolve_paths(path: Path, data: dict) -> dict:
    for keys in PATH_KEYS:
        node = data
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        # A URL (the artifact store's s3://…, file:///…) is no path relative to the file.
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str):
            if "://" in node[keys[-1]]:
                continue
            value = Path(node[keys[-1]]).expanduser()
            node[keys[-1]] = str(value if value.is_absolute() else path.parent / value)
    return data


@cache
def _load(path: Path | None, mtime: float | None) -> dict:
    if path is None or mtime is None:
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ProjectConfigError(f"project config {path}: {error}") from None
    unknown = set(data) - set(TOP_LEVEL_KEYS) - {"ops", "resources", "instance"}
    if unknown:
        raise ProjectConfigError(
            f"project config {path}: unknown key(s) {sorted(unknown)}; the top level takes"
            f" {', '.join(TOP_LEVEL_KEYS)} and the tables [ops.<op>], [resources.<resource>] and [instance]"
        )
    if "partition_start" in data:
        try:
            dt.date.fromisoformat(str(data["partition_start"]))
        except ValueError:
            raise ProjectConfigError(
                f"project config {path}: partition_start must be YYYY-MM-DD,"
                f" not {data['partition_start']!r}"
            ) from None
        data["partition_start"] = str(data["partition_start"])
    return _resolve_paths(path, data)


def project_config() -> dict:
    """The project config file's contents (``{}`` without a file), paths resolved."""
    path = config_path()
    mtime = path.stat().st_mtime if path is not None and path.is_file() else None
    return _load(path, mtime)


def section(kind: str, name: str) -> dict[str, Any]:
    """The table ``[kind.name]`` of the file (``ops``/``resources``), ``{}`` when absent."""
    table = project_config().get(kind) or {}
    if not isinstance(table, dict) or not isinstance(table.get(name, {}), dict):
        raise ProjectConfigError(f"project config {config_path()}: [{kind}.{name}] must be a table")
    return dict(table.get(name) or {})


def setting(name: str, env: str | None = None, default: Any = None) -> Any:
    """A top-level setting: the environment variable ``env`` first, then the file, then
    ``default``."""
    if env and os.environ.get(env):
        return os.environ[env]
    return project_config().get(name, default)


_TOP_LEVEL_LINE = re.compile(r"^\s*{key}\s*=.*$")


def write_top_level(key: str, value: str, path: Path | None = None) -> Path:
    """Set the top-level string ``key = "value"`` in the project config file, keeping every other
    line (comments included); the file is created when missing."""
    path = path or config_path() or DEFAULT_CONFIG_FILE
    lines = path.read_text().splitlines() if path.exists() else []
    pattern = re.compile(_TOP_LEVEL_LINE.pattern.format(key=re.escape(key)))
    new = f'{key} = "{value}"'
    first_table = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), None)
    top = lines if first_table is None else lines[:first_table]
    for i, line in enumerate(top):
        if pattern.match(line):
            lines[i] = new
            break
    else:
        lines.insert(len(top), new)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tomllib.loads(tmp.read_text())  # never leave a file the code location cannot read
    os.replace(tmp, path)
    return path
