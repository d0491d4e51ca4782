"""Declared settings of the core config dataclasses.

Each field of a config dataclass (``TrainConfig``, ``SplitConfig``, ``HardNegativeConfig``,
``PublishIndex``, ``PublishConfig``, ``EvaluationConfig``) is declared once with
:func:`setting`: its default, a description, its allowed range and its choices. The
dataclass checks every value against that declaration in ``__post_init__``
(:func:`check_declared`), and the Dagster run-config classes (``assets/lib/settings.py``) are
generated from the same declarations, so the launchpad shows what the core enforces.

An invalid value raises :class:`SettingError`, a ``ValueError`` that names the setting(s).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any


class SettingError(ValueError):
    """An invalid setting: ``fields`` names the setting(s) at fault (core field names)."""

    def __init__(self, fields: str | tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.fields = (fields,) if isinstance(fields, str) else tuple(fields)
        self.message = message


def setting(
    default: Any,
    doc: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Iterable[str] | None = None,
) -> Any:
    """A dataclass field with its description, range (``ge``/``gt``/``le``/``lt``, numbers)
    and ``choices`` (strings; for a tuple field, of each element). ``None`` as the default
    means "not set" and is always allowed."""
    metadata = {
        "doc": doc,
        "ge": ge,
        "gt": gt,
        "le": le,
        "lt": lt,
        "choices": None if choices is None else tuple(choices),
    }
    return dataclasses.field(default=default, metadata=metadata)


def describe_range(metadata: dict) -> str:
    """The allowed values of a declared setting, in words ("" when any value is allowed)."""
    if metadata.get("choices"):
        return "one of " + ", ".join(metadata["choices"])
    bounds = [
        f"{op} {metadata[key]:g}"
        for key, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
        if metadata.get(key) is not None
    ]
    return " and ".join(bounds)


def _in_range(value: Any, metadata: dict) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return not (
        (metadata.get("ge") is not None and not value >= metadata["ge"])
        or (metadata.get("gt") is not None and not value > metadata["gt"])
        or (metadata.get("le") is not None and not value <= metadata["le"])
        or (metadata.get("lt") is not None and not value < metadata["lt"])
    )


def check_declared(config: Any) -> None:
    """Check every declared field of the dataclass instance ``config``: SettingError naming
    the first one out of its range or choices."""
    for field in dataclasses.fields(config):
        metadata = field.metadata
        if "doc" not in metadata:
            continue
        value = getattr(config, field.name)
        if value is None and (field.default is None or "None" in str(field.type)):
            continue
        allowed = describe_range(metadata)
        if metadata["choices"]:
            values = value if isinstance(value, tuple) else (value,)
            bad = [v for v in values if v not in metadata["choices"]]
            if bad:
                raise SettingError(field.name, f"{field.name} must be {allowed}, not {bad[0]!r}")
        elif allowed and not _in_range(value, metadata):
            raise SettingError(field.name, f"{field.name} must be {allowed}, not {value!r}")
