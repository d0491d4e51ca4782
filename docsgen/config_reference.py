"""``docs/configuration-reference.md``, generated from the declared settings.

Every run-config setting is declared once, with its default, description, range and choices,
in a core dataclass (``recs_pipeline.config.setting``); ``assets/lib/settings.py`` generates the
launchpad's config classes from those declarations and says which names differ (``RENAMED``),
which fields are not run config (``INTERNAL``), which default means "unset" (``UNSET``) and
which fields are Dagster-only (``EXTRAS``). The resources declare their fields with pydantic,
``resources/deployment.py`` maps them to ``RECS_*`` variables (``RESOURCE_ENV``), and
``recs_pipeline/infra/project_config.py`` names the project config file's top-level keys. This page
is built from all of those, so it cannot drift from them.

The defaults shown are the built-in ones. The settings modules read the project config file and
the environment when they are imported, so :func:`render` must run in a process whose
environment sets no deployment (``python -m docsgen`` clears it first:
:func:`clean_environment`).
"""

from __future__ import annotations

import dataclasses
import enum
import os
import types
import typing
from typing import Any, Literal

from docsgen import table_cell

PAGE = "configuration-reference.md"

# What the top-level keys of the project config file mean (their variables and defaults are
# project_config.TOP_LEVEL's). A key added there without a line here is still listed.
TOP_LEVEL_MEANING = {
    "partition_start": (
        "The first daily partition (YYYY-MM-DD). `profile --write` sets it to the log's first day."
    ),
    "data_root": (
        "The folder under which the warehouse, the artifacts, the landing files and the serving"
        " files live unless their own settings say otherwise."
    ),
    "dagster_home": (
        "The Dagster instance's home (runs, event logs, schedules), which `recs` exports as"
        " `DAGSTER_HOME` to every process it starts; a `DAGSTER_HOME` already set wins."
    ),
}
# Variables that configure a process rather than a setting of the code location.
PROCESS_VARIABLES = {
    "RECS_PROGRESS": "Progress bars on stderr for long ingests and training: `0` off, `1` on"
    " (default: on in a terminal).",
}


def clean_environment() -> None:
    """Read no deployment: no project config file and no ``RECS_*`` variable."""
    for name in list(os.environ):
        if name.startswith("RECS_"):
            del os.environ[name]
    os.environ["RECS_CONFIG"] = ""


def _cell(value: Any) -> str:
    return table_cell(value)


def _code(value: Any) -> str:
    return f"`{value}`"


def toml(value: Any) -> str:
    """A default as it would be written in ``recs.toml``."""
    if value is None:
        return "unset"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return _code(str(value).lower())
    if isinstance(value, str):
        return _code(f'"{value}"')
    if isinstance(value, (list, tuple)):
        return _code("[" + ", ".join(toml(v).strip("`") for v in value) + "]")
    return _code(f"{value:g}" if isinstance(value, float) else value)


def type_name(annotation: Any) -> str:
    """A short name of a setting's type: ``int``, ``float or unset``, ``list of str``."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        inner = " or ".join(type_name(a) for a in args)
        return f"{inner} or unset" if type(None) in typing.get_args(annotation) else inner
    if origin is Literal:
        return "choice"
    if origin in (list, tuple):
        return f"list of {type_name(args[0])}"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "choice"
    if origin is typing.Annotated:
        return type_name(args[0])
    return getattr(annotation, "__name__", str(annotation))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _op_rows(settings: Any, settings_cls: type) -> tuple[list[list[str]], list[str]]:
    from recs_pipeline.config import describe_range

    rows: list[list[str]] = []
    internal: list[str] = []
    for core in settings.SETTINGS[settings_cls]:
        hints = typing.get_type_hints(core)
        for field in dataclasses.fields(core):
            reason = settings.INTERNAL.get(core, {}).get(field.name)
            if reason:
                internal.append(f"`{core.__name__}.{field.name}`: {reason}")
                continue
            name = settings.RENAMED.get(core, {}).get(field.name, field.name)
            unset = settings.UNSET.get(core, {}).get(field.name)
            default = "unset" if unset else toml(field.default)
            description = field.metadata["doc"] + (f" {unset}" if unset else "")
            if name != field.name:
                description += f" (`{core.__name__}.{field.name}` in the code.)"
            hint = hints[field.name] | None if unset else hints[field.name]
            allowed = describe_range(field.metadata)
            rows.append([_code(name), type_name(hint), default, allowed, description])
    for extra in settings.EXTRAS.get(settings_cls, ()):
        info = settings_cls.model_fields[extra]
        rows.append(
            [_code(extra), type_name(info.annotation), toml(info.default), "", info.description]
        )
    return rows, internal


def _ops(lines: list[str]) -> None:
    from assets.lib import settings
    from assets.lib.settings import IngestSettings

    lines += [
        "## Run config: `[ops.<op>]`",
        "",
        "What a run computes, op by op: in the launchpad under `ops.<op>.config`, in `recs.toml`"
        " as a table `[ops.<op>]` (the deployment's defaults). Ranges and cross-field rules are"
        " checked by the first step of every run; choices are checked by Dagster at launch.",
        "",
    ]
    header = ["setting", "type", "default", "allowed", "description"]
    for op, settings_cls in settings.OPS.items():
        rows, internal = _op_rows(settings, settings_cls)
        cores = ", ".join(f"`{c.__name__}`" for c in settings.SETTINGS[settings_cls])
        lines += [f"### `{op}`", "", f"Declared in {cores}.", ""]
        lines += _table(header, rows)
        if internal:
            lines += ["", "Not run config:", ""] + [f"- {reason}" for reason in internal]
        lines.append("")
    rows = [
        [_code(name), type_name(info.annotation), toml(info.default), "", info.description]
        for name, info in IngestSettings.model_fields.items()
    ]
    lines += [
        "### `raw_interactions`",
        "",
        "Run config only (the launchpad's `ops.raw_interactions.config`, or `--config-json` on"
        " the command line): `recs.toml` takes no `[ops.raw_interactions]`, since these"
        " settings are meant for one run.",
        "",
    ]
    lines += _table(header, rows)
    lines.append("")


def _resources(lines: list[str]) -> None:
    from assets.lib.partitions import DATA_ROOT
    from recs_pipeline.infra.project_config import describe_type
    from resources import deployment

    lines += [
        "## Resources: `[resources.<name>]`",
        "",
        "Where things are and how the heavy steps run: in `recs.toml` as `[resources.<name>]`,"
        " in the environment (the variable beside each field, which wins over the file), or per"
        " run in the launchpad's `resources.<name>.config`. Relative paths in `recs.toml` are"
        " relative to the file's folder.",
        "",
    ]
    for key, cls in deployment.RESOURCE_CLASSES.items():
        env = deployment.RESOURCE_ENV.get(key, {})
        builtin = deployment.deployment_defaults(key)
        rows = []
        for name, info in cls.model_fields.items():
            default = info.get_default(call_default_factory=True)
            default = builtin.get(name, default)
            if isinstance(default, str) and default.startswith(str(DATA_ROOT)):
                default = "{data_root}" + default[len(str(DATA_ROOT)) :]
            if name in ("database", "root", "landing_root") and name in builtin:
                shown = _code(default)
            else:
                shown = toml(default)
            literal = typing.get_origin(info.annotation) is Literal
            allowed = (
                describe_type(info.annotation, info.metadata) if info.metadata or literal else ""
            )
            rows.append(
                [
                    _code(name),
                    _code(env[name]) if name in env else "",
                    type_name(info.annotation),
                    shown,
                    allowed,
                    info.description or "",
                ]
            )
        doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split()).replace("``", "`")
        doc = doc.rstrip(":") + ("." if doc.endswith(":") else "")
        lines += [f"### `{key}`", "", f"`{cls.__module__}.{cls.__name__}`: {doc}", ""]
        header = ["field", "variable", "type", "default", "allowed", "description"]
        lines += _table(header, rows)
        lines.append("")


def _top_level(lines: list[str]) -> None:
    from assets.platform.instance import INSTANCE_ENV, STORAGES
    from recs_pipeline.infra.project_config import CONFIG_ENV, PROJECT_ROOT, TOP_LEVEL

    rows = []
    for key, (variable, default) in TOP_LEVEL.items():
        if default.startswith(str(PROJECT_ROOT)):
            shown = f"`{default[len(str(PROJECT_ROOT)) + 1 :]}` (in the project)"
        else:
            shown = _code(default)
        rows.append([_code(key), _code(variable), shown, TOP_LEVEL_MEANING.get(key, "")])
    lines += [
        "## The project config file: top level",
        "",
        f"`recs.toml` at the project root, or the file `{CONFIG_ENV}` names (empty: none). Its"
        " keys, besides the tables below:",
        "",
    ]
    lines += _table(["key", "variable", "default", "meaning"], rows)
    lines += [
        "",
        "## `[instance]`",
        "",
        "Where Dagster keeps runs, event logs, schedules and pool slots.",
        "",
    ]
    lines += _table(
        ["key", "variable", "default", "allowed"],
        [["`storage`", _code(INSTANCE_ENV), _code(STORAGES[0]), "one of " + ", ".join(STORAGES)]],
    )
    lines.append("")


def _variables(lines: list[str]) -> None:
    from assets.platform.instance import INSTANCE_ENV, POSTGRES_ENV
    from assets.platform.kubernetes import EXECUTOR_ENV, GPU_ENV
    from recs_pipeline.infra.project_config import CONFIG_ENV, TOP_LEVEL
    from resources import deployment

    rows = [[_code(CONFIG_ENV), "the project config file", "Its path; empty: read none."]]
    for key, (variable, _) in TOP_LEVEL.items():
        rows.append([_code(variable), _code(key), TOP_LEVEL_MEANING.get(key, "")])
    rows.append([_code(INSTANCE_ENV), "`[instance] storage`", "Dagster's instance storage."])
    for key, fields in deployment.RESOURCE_ENV.items():
        cls = deployment.RESOURCE_CLASSES[key]
        for field, variable in fields.items():
            description = cls.model_fields[field].description or ""
            rows.append([_code(variable), f"`[resources.{key}] {field}`", description])
    rows += [
        [
            _code(EXECUTOR_ENV),
            "the code location's executor",
            "`forkserver` (the default) or `k8s`: each step in a Kubernetes Job of its own.",
        ],
        [
            _code(GPU_ENV),
            "`trained_model`'s step pod",
            "`1`: asks for one GPU (`nvidia.com/gpu`) with the GPU node selector and toleration;"
            " takes effect with `RECS_EXECUTOR=k8s`.",
        ],
    ]
    rows += [[_code(v), "the process", d] for v, d in PROCESS_VARIABLES.items()]
    for field, variable in POSTGRES_ENV.items():
        rows.append([_code(variable), "the shared instance", f"PostgreSQL connection: `{field}`."])
    lines += [
        "## Environment variables",
        "",
        "Each variable wins over the same setting in `recs.toml`; a run's own config wins over"
        " both. A value of the wrong type or out of range fails the code location's load, naming"
        " the variable.",
        "",
    ]
    lines += _table(["variable", "sets", "meaning"], rows)
    lines.append("")


def render() -> str:
    """The page's text (call :func:`clean_environment` first, before any ``assets`` import)."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m docsgen` from the declared settings: do not edit. -->",
        "",
        "Every setting, generated from its declaration in the code, with its built-in default."
        " Precedence, highest first: a run's own config (the launchpad), the environment"
        " (`RECS_*`), `recs.toml`, the built-in default. [Configuration](configuration.md)"
        " explains how the pieces fit together.",
        "",
    ]
    _top_level(lines)
    _ops(lines)
    _resources(lines)
    _variables(lines)
    return "\n".join(lines).rstrip("\n") + "\n"
