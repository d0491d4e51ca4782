"""Run config: what a user tunes per run, shown with defaults, ranges and choices in the
launchpad.

One source of truth: the core dataclasses (``IngestConfig``, ``TrainConfig``, ``SplitConfig``,
``HardNegativeConfig``, ``EvaluationConfig``, ``PublishConfig``, ``PublishIndex``) declare every
setting once, with its default, description, range and choices
(:func:`recs_pipeline.config.setting`). The ``dg.Config`` classes here are generated from
those declarations by :func:`derived`: a choice becomes a ``Literal`` (or an ``Enum`` inside a
list or an optional), which Dagster turns into an enum config type, so the launchpad lists
the choices and a run with any other value is rejected at launch. The only differences from
the core are declared below, each in one place: ``RENAMED`` (run-config names that differ from
the core's), ``INTERNAL`` (core fields kept out of the run config, with the reason) and
``EXTRAS`` (Dagster-only fields that steer the asset, not the computation).

Ranges are checked by the core dataclasses. Dagster checks only types at launch, so every asset
calls :func:`check_run_config` first: it builds every op's core config from the run's whole
config and fails the step, before it writes anything, with one error naming the op and setting.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from typing import Any, Literal

import dagster as dg
from pydantic import ConfigDict, Field, ValidationError, create_model

from recs_pipeline.config import SettingError, describe_range
from recs_pipeline.data.split import SplitConfig
from recs_pipeline.evaluation.config import EvaluationConfig, SelectionConfig
from recs_pipeline.graph.config import HardNegativeConfig
from recs_pipeline.infra.project_config import (
    ProjectConfigError,
    check_value,
    config_path,
    project_config,
    range_constraints,
    section,
)
from recs_pipeline.serving.config import PublishConfig, PublishIndex
from recs_pipeline.steps.ingest import IngestConfig
from recs_pipeline.training import TrainConfig

# Core field -> run-config name, where they differ. The run-config names are the documented,
# user-facing ones (docs/configuration-reference.md); the core names are used throughout the code
# and its tests.
RENAMED: dict[type, dict[str, str]] = {
    TrainConfig: {"lr": "learning_rate"},
    PublishIndex: {
        "kind": "index",
        "list_size": "ivf_list_size",
        "probes": "ivf_probes",
        "overlap_users": "ivf_overlap_users",
        "seed": "ivf_seed",
    },
}

# Core fields whose run-config default is unset (None), and what unset means there. The
# core's own default serves code that builds the core config directly (benchmarks, tests).
UNSET: dict[type, dict[str, str]] = {
    TrainConfig: {
        "model": "Unset (the default): the champion model_selection chose for the day, with its"
        " settings. Set: that model is pinned, and model_selection only reports.",
    },
}

# Core fields that are not run config, and why.
INTERNAL: dict[type, dict[str, str]] = {
    TrainConfig: {
        "threads": "torch's thread count is process-wide: set by a run, an in-process run"
        " (dg.materialize, tests) would change it for its caller and every later step; the"
        " executor gives each run's step processes their share of the cores instead"
        " (assets/platform/executor.py: cores // max_concurrent_runs, or OMP_NUM_THREADS).",
    },
}


def _choice_type(name: str, choices: tuple[str, ...], optional: bool, many: bool) -> Any:
    """The run-config type of a choice: Literal (Dagster: Enum) when it stands alone; a
    Python Enum of the same values inside an optional or a list, where Dagster takes no
    Literal. ``use_enum_values`` keeps the values plain strings in the Config object."""
    if not optional and not many:
        return Literal[choices]  # type: ignore[valid-type]
    choice = enum.Enum(name, [(c, c) for c in choices], type=str)  # type: ignore[misc]
    if many:
        return list[choice]  # type: ignore[valid-type]
    return choice | None


def _run_type(core: type, field: dataclasses.Field, hint: Any) -> Any:
    optional = type(None) in typing.get_args(hint)
    inner = (
        next((a for a in typing.get_args(hint) if a is not type(None)), hint) if optional else hint
    )
    many = typing.get_origin(inner) is tuple
    choices = field.metadata.get("choices")
    if choices:
        return _choice_type(f"{core.__name__}_{field.name}", choices, optional, many)
    if many:  # tuple[X, ...]: a list in the run config
        inner = list[typing.get_args(inner)[0]]  # type: ignore[misc]
        return inner | None if optional else inner
    return hint


def _file_type(hint: Any) -> Any:
    """The type a project-config value of a core field must have: a TOML array for a tuple."""
    if typing.get_origin(hint) is tuple:
        return list[typing.get_args(hint)[0]]  # type: ignore[misc]
    if type(None) in typing.get_args(hint):
        inner = next(a for a in typing.get_args(hint) if a is not type(None))
        return _file_type(inner) | None
    return hint


def choices_of(annotation: Any) -> tuple[str, ...]:
    """The choices a generated run-config type accepts (for the parity test)."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    for arg in typing.get_args(annotation):
        if arg is not type(None):
            return choices_of(arg)
    return tuple(member.value for member in annotation)


def derived(*cores: type, op: str | None = None) -> type[dg.Config]:
    """A ``dg.Config`` class with one field per run-config field of ``cores``: name (after
    ``RENAMED``), type, default and description (with the allowed range) from the core. The
    default is the deployment's where the project config file sets one (``[ops.<op>]``,
    :mod:`recs_pipeline.infra.project_config`): the launchpad shows it and every run without that
    setting (schedule ticks, backfills) uses it."""
    fields: dict[str, Any] = {}
    overrides = section("ops", op) if op else {}
    for core in cores:
        hints = typing.get_type_hints(core)
        for field in dataclasses.fields(core):
            if field.name in INTERNAL.get(core, {}):
                continue
            if "doc" not in field.metadata:
                raise TypeError(
                    f"{core.__name__}.{field.name} is not declared with setting() (description,"
                    " range): declare it, or list it in INTERNAL with the reason"
                )
            name = RENAMED.get(core, {}).get(field.name, field.name)
            if name in fields:
                raise TypeError(f"run-config name {name!r} is taken twice: rename one in RENAMED")
            unset = UNSET.get(core, {}).get(field.name)
            default = None if unset else field.default
            if name in overrides:
                # The type and range here, before Dagster sees it as a schema default (its own
                # error names neither the file nor the setting); choices and cross-field rules
                # in _check_defaults, by the core.
                default = check_value(
                    overrides.pop(name),
                    _file_type(hints[field.name]),
                    key=f"[ops.{op}] {name}",
                    constraints=range_constraints(field.metadata),
                )
            if isinstance(default, tuple):
                default = list(default)
            allowed = describe_range(field.metadata)
            description = field.metadata["doc"] + (f" Allowed: {allowed}." if allowed else "")
            hint = hints[field.name]
            if unset:
                description += " " + unset
                hint = hint | None
            fields[name] = (
                _run_type(core, field, hint),
                Field(default=default, description=description),
            )
    if overrides:
        raise ProjectConfigError(
            f"project config {config_path()}: [ops.{op}] has no setting(s) {sorted(overrides)};"
            f" its settings: {', '.join(fields)}"
        )
    model = create_model(  # type: ignore[call-overload]
        "_".join(core.__name__ for core in cores) + "Fields",
        __base__=dg.Config,
        **fields,
    )
    if op:
        _check_defaults(model, cores, op)
    return model


def _check_defaults(model: type[dg.Config], cores: tuple[type, ...], op: str) -> None:
    """The deployment's defaults pass the core's checks (ranges, cross-field rules), so a bad
    project config file fails at code-location load, naming the file and setting."""
    for core in cores:
        values = {}
        for field in dataclasses.fields(core):
            if field.name in INTERNAL.get(core, {}):
                continue
            value = model.model_fields[RENAMED.get(core, {}).get(field.name, field.name)].default
            if value is None and field.name in UNSET.get(core, {}):
                continue  # the core's default stands in
            values[field.name] = tuple(value) if isinstance(value, list) else value
        try:
            core(**values)
        except SettingError as error:
            raise ProjectConfigError(
                f"project config {config_path()}: [ops.{op}]: {_run_config_names(core, error)}"
            ) from None


def _run_config_names(core: type, error: SettingError) -> str:
    """The core's message with the run-config names of its settings (``RENAMED``)."""
    message = error.message
    for field in error.fields:
        name = RENAMED.get(core, {}).get(field, field)
        if name != field:
            message = message.replace(field, name)
    return message


class _Derived(dg.Config):
    model_config = ConfigDict(use_enum_values=True)

    def _core(self, core: type) -> Any:
        """The core dataclass ``core`` built from this run config; SettingError if invalid."""
        values = {}
        for field in dataclasses.fields(core):
            if field.name in INTERNAL.get(core, {}):
                continue
            value = getattr(self, RENAMED.get(core, {}).get(field.name, field.name))
            if value is None and field.name in UNSET.get(core, {}):
                continue  # unset: the core's default (the asset decides what unset means)
            if isinstance(value, list):
                value = tuple(value)
            values[field.name] = value
        return core(**values)


class SplitSettings(derived(SplitConfig, op="interaction_split"), _Derived):
    def to_core(self) -> SplitConfig:
        return self._core(SplitConfig)


class HardNegativeSettings(derived(HardNegativeConfig, op="hard_negatives"), _Derived):
    def to_core(self) -> HardNegativeConfig:
        return self._core(HardNegativeConfig)


class SelectionSettings(derived(SelectionConfig, op="model_selection"), _Derived):
    def to_core(self) -> SelectionConfig:
        return self._core(SelectionConfig)


class TrainSettings(derived(TrainConfig, op="trained_model"), _Derived):
    warm_start: bool = Field(
        default=True,
        description="Initialise from trained_model(D-1) when it exists (same model and sizes):"
        " known users and items keep their embeddings, new ones start fresh.",
    )
    resume: bool = Field(
        default=True,
        description="Resume an interrupted run of this partition from its last validation"
        " check (progress.pt in the artifact store) instead of starting over.",
    )

    def to_core(self) -> TrainConfig:
        return self._core(TrainConfig)

    def pinned(self) -> bool:
        """Whether the run config names the model (else model_selection's champion serves)."""
        return self.model is not None


class EvaluationSettings(derived(EvaluationConfig, op="model_evaluation"), _Derived):
    def to_core(self) -> EvaluationConfig:
        return self._core(EvaluationConfig)


class IngestSettings(derived(IngestConfig), _Derived):
    """raw_interactions' run config; the project config file sets none of it (no ``op``):
    these settings are meant for the one run that needs them."""

    def to_core(self) -> IngestConfig:
        return self._core(IngestConfig)


class PublishSettings(derived(PublishConfig, PublishIndex, op="recommendations"), _Derived):
    def to_core(self) -> PublishConfig:
        return self._core(PublishConfig)

    def publish_index(self) -> PublishIndex:
        return self._core(PublishIndex)


# Run-config fields that are not core settings: they steer the asset (what it starts from),
# not what it computes.
EXTRAS: dict[type, tuple[str, ...]] = {TrainSettings: ("warm_start", "resume")}

# Each settings class, the core dataclasses it is generated from, and the op it configures.
SETTINGS: dict[type[_Derived], tuple[type, ...]] = {
    SplitSettings: (SplitConfig,),
    HardNegativeSettings: (HardNegativeConfig,),
    SelectionSettings: (SelectionConfig,),
    TrainSettings: (TrainConfig,),
    EvaluationSettings: (EvaluationConfig,),
    PublishSettings: (PublishConfig, PublishIndex),
}
OPS: dict[str, type[_Derived]] = {
    "interaction_split": SplitSettings,
    "hard_negatives": HardNegativeSettings,
    "model_selection": SelectionSettings,
    "trained_model": TrainSettings,
    "model_evaluation": EvaluationSettings,
    "recommendations": PublishSettings,
}

_unknown_ops = set(project_config().get("ops") or {}) - set(OPS)
if _unknown_ops:
    raise ProjectConfigError(
        f"project config {config_path()}: no op(s) {sorted(_unknown_ops)} take settings there;"
        f" [ops.<op>] takes one of {', '.join(OPS)}"
    )


def builtin_run_config() -> dict:
    """Every op's settings at the built-in defaults (the core's), whatever the project config
    file says: the demo (``python -m cli.demo``) runs with these."""
    ops = {}
    for op, settings_cls in OPS.items():
        config = {}
        for core in SETTINGS[settings_cls]:
            for field in dataclasses.fields(core):
                if field.name in INTERNAL.get(core, {}):
                    continue
                value = None if field.name in UNSET.get(core, {}) else field.default
                config[RENAMED.get(core, {}).get(field.name, field.name)] = (
                    list(value) if isinstance(value, tuple) else value
                )
        ops[op] = {"config": config}
    return {"ops": ops}


def check_settings(run_config: dict) -> None:
    """Build the core config of every op in ``run_config`` (a run's whole config; ops absent
    from it take the defaults): dg.Failure naming the first invalid op and setting."""
    ops = run_config.get("ops") or {}
    for op, settings_cls in OPS.items():
        op_config = (ops.get(op) or {}).get("config") or {}
        try:
            settings = settings_cls(**op_config)
        except ValidationError as error:  # e.g. null for a setting Dagster lets be null
            first = error.errors()[0]
            name = ".".join(str(part) for part in first["loc"])
            raise dg.Failure(
                f"invalid run config: ops.{op}.config.{name}: {first['msg']}."
                " Nothing was written: fix the setting and launch the run again.",
                metadata={"op": op, "settings": name, "error": first["msg"]},
            ) from None
        for core in SETTINGS[settings_cls]:
            try:
                settings._core(core)
            except SettingError as error:
                names = [RENAMED.get(core, {}).get(f, f) for f in error.fields]
                message = _run_config_names(core, error)
                raise dg.Failure(
                    f"invalid run config: ops.{op}.config.{' / '.join(names)}: {message}."
                    " Nothing was written: fix the setting and launch the run again.",
                    metadata={"op": op, "settings": ", ".join(names), "error": message},
                ) from None


def check_run_config(context: dg.AssetExecutionContext) -> None:
    """Check the whole run's config (every op of the run, not only this step's) before the
    step writes anything. Called first by every asset, so whichever step a run (the daily job,
    a CLI selection, dg.materialize) starts with fails on a bad setting of any later step."""
    check_settings(context.run.run_config)
