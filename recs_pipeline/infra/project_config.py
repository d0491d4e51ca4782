"""The project config file: this deployment's defaults, read by every process that loads the
code location (``dagster dev``, the daemon, the CLI, ``python -m cli.demo --own-logs``).

Where: the path in ``RECS_CONFIG``, else ``recs.toml`` at the project root; no file, no
overrides (``RECS_CONFIG=`` set to the empty string reads none). Format (TOML), shaped like a run
config::

    partition_start = "1996-03-29"      # the first daily partition (written by the profile)
    dagster_home = "dagster_home"        # the Dagster instance's home, which the `recs` command
                                         # exports as DAGSTER_HOME (default: dagster_home/ in
                                         # the project; a DAGSTER_HOME already set wins)

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
                                         # (shared; RECS_INSTANCE overrides;
                                         # assets/platform/instance.py)

Every value from this file or a ``RECS_*`` variable is checked against its declared setting
(type and range) when the code location loads, by :func:`check_value`: a wrong one fails with an
error naming the key or variable, the value and what is allowed, before any step runs.

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
import types
import typing
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import TypeAdapter, ValidationError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_ENV = "RECS_CONFIG"
DEFAULT_CONFIG_FILE = PROJECT_ROOT / "recs.toml"
# The top-level settings: each one's environment variable, which wins over the file, and its
# built-in default. :func:`setting` is their one resolver.
TOP_LEVEL = {
    "partition_start": ("RECS_PARTITION_START", "2025-01-01"),
    "data_root": ("RECS_DATA_ROOT", str(PROJECT_ROOT / "data")),
    "dagster_home": ("DAGSTER_HOME", str(PROJECT_ROOT / "dagster_home")),
}
TOP_LEVEL_KEYS = tuple(TOP_LEVEL)
# Values that are paths: resolved against the file's folder when relative.
PATH_KEYS = {
    ("resources", "log_source", "landing_root"),
    ("resources", "warehouse", "database"),
    ("resources", "warehouse", "serving_root"),
    ("resources", "artifacts", "root"),
    ("data_root",),
    ("dagster_home",),
}


class DeploymentSettingError(ValueError):
    """A deployment setting, from the project config file or the environment, is invalid; the
    message names the key or variable, the value and what is allowed."""


class ProjectConfigError(DeploymentSettingError):
    """The project config file is unreadable, names an unknown setting or gives one a value it
    does not allow."""


class EnvironmentSettingError(DeploymentSettingError):
    """A ``RECS_*`` environment variable holds a value its setting does not allow."""


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _plural(annotation: Any) -> str:
    words = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}
    return words.get(annotation, describe_type(annotation))


def describe_type(annotation: Any, constraints: Iterable[Any] = ()) -> str:
    """What a setting of type ``annotation`` (with pydantic/annotated-types ``constraints``:
    ``Ge(1)``, ``Gt(0)``) allows, in words: "an integer >= 1", "one of 'local', 'ray'"."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        words = " or ".join(describe_type(a) for a in args)
    elif origin is Literal:
        words = "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    elif origin in (list, tuple):
        words = f"a list of {_plural(args[0])}"
    elif origin is dict or annotation is dict:
        words = "a table"
    else:
        words = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
            annotation, getattr(annotation, "__name__", str(annotation))
        )
    bounds = [
        f"{op} {getattr(c, attr):g}"
        for c in constraints
        for attr, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
        if getattr(c, attr, None) is not None
    ]
    return " ".join([words, " and ".join(bounds)]) if bounds else words


def range_constraints(metadata: dict) -> list[Any]:
    """The ``ge``/``gt``/``le``/``lt`` of a core setting's declaration
    (:func:`recs_pipeline.config.setting`) as annotated-types constraints."""
    kinds = {"ge": annotated_types.Ge, "gt": annotated_types.Gt}
    kinds |= {"le": annotated_types.Le, "lt": annotated_types.Lt}
    return [kind(metadata[key]) for key, kind in kinds.items() if metadata.get(key) is not None]


def _constrained(annotation: Any, constraints: list[Any]) -> Any:
    """``annotation`` with the bounds on its number (``int | None``: on the int, None allowed)."""
    if not constraints:
        return annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return typing.Union[(*(_constrained(a, constraints) for a in inner), None)]
    if annotation in (int, float):
        return Annotated[annotation, *constraints]
    return annotation


def check_value(
    value: Any,
    annotation: Any,
    *,
    key: str | None = None,
    env: str | None = None,
    constraints: Iterable[Any] = (),
) -> Any:
    """``value`` checked against its setting's type ``annotation`` and ``constraints``, as the
    setting's default will hold it (an environment variable's text parsed: ``"4"`` -> 4).

    The one check of every deployment setting: ``key`` names a key of the project config file
    (``"[resources.warehouse] lock_timeout_seconds"``), whose TOML value must have the type
    itself (no ``"5"`` for a number); ``env`` names the environment variable the text came
    from. Raises :class:`ProjectConfigError` / :class:`EnvironmentSettingError` naming the key
    or variable, the value and what is allowed."""
    constraints = list(constraints)
    adapter = TypeAdapter(_constrained(annotation, constraints))
    try:
        return adapter.validate_python(value, strict=env is None)
    except ValidationError:
        allowed = describe_type(annotation, constraints)
        if env is not None:
            raise EnvironmentSettingError(
                f"{env}={value!r} is not allowed: it must be {allowed}"
                " (fix or unset the environment variable)"
            ) from None
        raise ProjectConfigError(
            f"project config {config_path()}: {key} = {value!r} is not allowed:"
            f" it must be {allowed}"
        ) from None


def check_top_level(name: str, value: Any, *, env: str | None = None) -> Any:
    """A top-level setting (``partition_start``: a date; ``data_root``, ``dagster_home``: paths)
    checked, from the file (a TOML date or a "YYYY-MM-DD" string) or its environment variable;
    as a string."""
    if name == "partition_start":
        text = value.isoformat() if type(value) is dt.date else value
        try:
            if not (isinstance(text, str) and _ISO_DATE.fullmatch(text.strip())):
                raise ValueError(text)
            return dt.date.fromisoformat(text.strip()).isoformat()
        except ValueError:
            allowed = "a date YYYY-MM-DD, the first daily partition (e.g. 2025-01-01)"
            if env is not None:
                raise EnvironmentSettingError(
                    f"{env}={value!r} is not allowed: it must be {allowed}"
                ) from None
            raise ProjectConfigError(
                f"project config {config_path()}: partition_start = {value!r} is not allowed:"
                f" it must be {allowed}"
            ) from None
    return check_value(value, str, key=None if env else name, env=env)


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
    for name in TOP_LEVEL_KEYS:
        if name in data:
            data[name] = check_top_level(name, data[name])
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


def setting(name: str, builtin: bool = True) -> str | None:
    """The top-level setting ``name`` (:data:`TOP_LEVEL`): its environment variable first,
    then the file, then its built-in default (None with ``builtin=False``: "not configured");
    a value the setting does not allow raises :class:`DeploymentSettingError`."""
    env, default = TOP_LEVEL[name]
    if os.environ.get(env):
        return check_top_level(name, os.environ[env], env=env)
    return project_config().get(name, default if builtin else None)


def data_root() -> Path:
    """Where the deployment's files live unless a resource names its own place."""
    return Path(setting("data_root")).expanduser()


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


def write_table_value(table: str, key: str, value: int, path: Path | None = None) -> Path:
    """Set ``key = value`` (a number) in the ``[table]`` of the project config file, keeping
    every other line; the table is added at the end when missing, the file created."""
    path = path or config_path() or DEFAULT_CONFIG_FILE
    lines = path.read_text().splitlines() if path.exists() else []
    header = re.compile(r"^\s*\[\s*" + re.escape(table) + r"\s*\]\s*(#.*)?$")
    line_of_key = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
    new = f"{key} = {value}"
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        lines += ([""] if lines and lines[-1].strip() else []) + [f"[{table}]", new]
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")),
            len(lines),
        )
        at = next((i for i in range(start + 1, end) if line_of_key.match(lines[i])), None)
        if at is None:
            lines.insert(start + 1, new)
        else:
            lines[at] = new
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tomllib.loads(tmp.read_text())  # never leave a file the code location cannot read
    os.replace(tmp, path)
    return path
