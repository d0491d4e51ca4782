"""Command-line flags of training settings, shared by the demo and the benchmarks.

:func:`add_setting_flags` generates a flag per declared :class:`TrainConfig` setting (its type,
choices and description from the declaration; the default the command's own), and
:func:`settings_from_args` reads them back, so that a command does not restate the settings.
``--param NAME=VALUE`` and ``--distill-param NAME=VALUE`` set the training-free models' own
settings (``TrainConfig.model_params`` and ``distill_params``); the ``--filter-*`` flags of
earlier versions stay as hidden aliases.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from typing import Any

from recs_pipeline.models.declarations import TRAINING_FREE
from recs_pipeline.training.config import TrainConfig, own_settings


def add_setting_flags(parser: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    """A flag per :class:`TrainConfig` setting named in ``defaults``, with that default:
    ``--batch-size`` for ``batch_size``, of the setting's type and choices, its description as
    the help; a yes/no setting is a switch that turns it on."""
    fields = {field.name: field for field in dataclasses.fields(TrainConfig)}
    hints = typing.get_type_hints(TrainConfig)
    for name, default in defaults.items():
        flag, metadata = "--" + name.replace("_", "-"), fields[name].metadata
        kind = _scalar(name, hints[name])
        help_text = metadata["doc"].replace("%", "%%")
        if kind is bool:
            parser.add_argument(flag, action="store_true", default=default, help=help_text)
        else:
            parser.add_argument(
                flag, type=kind, default=default, choices=metadata["choices"], help=help_text
            )


def settings_from_args(args: argparse.Namespace, defaults: dict[str, Any]) -> dict[str, Any]:
    """The settings of :func:`add_setting_flags`' flags, by name, as the command line set them."""
    return {name: getattr(args, name) for name in defaults}


def _scalar(name: str, hint: Any) -> type:
    """The one type of a setting that is a bool, int, float or str (or that or None)."""
    kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    kinds = [kind for kind in kinds if kind is not type(None)]
    if len(kinds) != 1 or kinds[0] not in (bool, int, float, str):
        raise TypeError(f"setting {name!r} ({hint}) has no command-line flag")
    return kinds[0]


# The --filter-* flags of earlier versions, kept as hidden aliases: dnfilter's parameters (k is
# GF-CF's too), by flag.
FILTER_FLAGS = {
    "--filter-user-exponent": ("user_exponent", float),
    "--filter-beta": ("beta", float),
    "--filter-gamma": ("gamma", float),
    "--filter-ideal-weight": ("weight", float),
    "--filter-ideal-k": ("k", int),
    "--filter-sharpen": ("sharpen", float),
}


def parse_param(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` of a ``--param`` flag: VALUE an integer, else a number, else the text
    (TrainConfig checks it against the type the model declares for NAME)."""
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (e.g. sharpen=0.5), not {text!r}")
    for convert in (int, float):
        try:
            return name.strip(), convert(value)
        except ValueError:
            pass
    return name.strip(), value


def add_param_flags(parser: argparse.ArgumentParser, distill: bool = True) -> None:
    """``--param NAME=VALUE`` (repeatable: the training-free model's own settings, TrainConfig's
    model_params) and, with ``distill``, ``--distill-param NAME=VALUE`` (the teacher's,
    distill_params); the ``--filter-*`` flags of earlier versions as hidden aliases
    (:func:`params_from_args`)."""
    parser.add_argument(
        "--param",
        action="append",
        type=parse_param,
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the training-free model, by its parameter name (repeatable; "
        + own_settings()
        + ")",
    )
    if distill:
        parser.add_argument(
            "--distill-param",
            action="append",
            type=parse_param,
            default=[],
            metavar="NAME=VALUE",
            help="a setting of the --distill teacher, by its parameter name (repeatable)",
        )
    for flag, (_, kind) in FILTER_FLAGS.items():
        parser.add_argument(
            flag, type=kind, default=None, action=_DeprecatedFilterFlag, help=argparse.SUPPRESS
        )


class _DeprecatedFilterFlag(argparse.Action):
    """A ``--filter-*`` flag: stores its value, and says once what replaces it."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        parameter = FILTER_FLAGS[option_string][0]
        print(
            f"warning: {option_string} is deprecated: use --param {parameter}={value} (the"
            f" model's setting) or --distill-param {parameter}={value} (the teacher's)",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, value)


def params_from_args(
    args: argparse.Namespace, model: str | None, distill: str | None
) -> dict[str, dict | None]:
    """TrainConfig's ``model_params`` and ``distill_params`` from the flags of
    :func:`add_param_flags`, for a run of ``model`` with the teacher ``distill``. A deprecated
    ``--filter-*`` flag sets the model's parameter when the model is training-free, else the
    teacher's (where the filter it named was); ``--param`` and ``--distill-param`` win over it."""
    model_params = dict(args.param)
    distill_params = dict(getattr(args, "distill_param", None) or [])
    aliases = {
        parameter: getattr(args, flag[2:].replace("-", "_"))
        for flag, (parameter, _) in FILTER_FLAGS.items()
        if getattr(args, flag[2:].replace("-", "_"), None) is not None
    }
    if model not in TRAINING_FREE and distill:
        distill_params = aliases | distill_params
    else:
        model_params = aliases | model_params
    return {"model_params": model_params or None, "distill_params": distill_params or None}
