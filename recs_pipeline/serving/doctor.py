"""Consistency checks of a deployment: each copy the pipeline keeps outside the warehouse agrees
with what the warehouse records (``python -m cli.doctor``).

The warehouse commits a day's lists first; copies follow: the serving files applications read
(:mod:`recs_pipeline.serving.files`) and the pinned ``published_model.pt``. A process killed in
between, or a file edited on disk, leaves a copy that disagrees; every publication repairs
what it finds, and these checks say whether anything disagrees now. :data:`CHECKS` is a list of
named checks, each one inspecting (a list of problems, empty when all agrees) and, where it can,
repairing; more are added by appending to it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import duckdb

from recs_pipeline.infra.artifacts import UrlArtifactStore
from recs_pipeline.serving.files import export_published, serving_problems
from recs_pipeline.serving.published_model import (
    converge_published_models,
    published_model_problems,
)

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Deployment:
    """What the checks look at: an open read-write warehouse connection (repairs write through
    it), the serving folder (None: nothing exported) and the artifact store."""

    con: duckdb.DuckDBPyConnection
    serving_root: Path | None
    store: UrlArtifactStore


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    description: str
    inspect: Callable[[Deployment], list[str]]
    # Repairs what inspect finds, logging each repair; None: the check only reports.
    repair: Callable[[Deployment, Log], None] | None = None


def _serving_files(deployment: Deployment) -> list[str]:
    return serving_problems(deployment.con, deployment.serving_root)


def _repair_serving_files(deployment: Deployment, log: Log) -> None:
    metadata = export_published(deployment.con, deployment.serving_root, None)
    for line in filter(None, metadata.get("serving_repaired", "").split("; ")):
        log(f"rewrote {line}")


def _published_models(deployment: Deployment) -> list[str]:
    found = published_model_problems(deployment.con, deployment.store, verify=True)
    return [problem for _, problem in found.values()]


def _repair_published_models(deployment: Deployment, log: Log) -> None:
    converge_published_models(deployment.con, deployment.store, log, verify=True)


CHECKS: list[Check] = [
    Check(
        "serving-files",
        "each published day's Parquet file matches its checksum and holds the warehouse's"
        " publication of the day; published.duckdb lists those files",
        _serving_files,
        _repair_serving_files,
    ),
    Check(
        "published-models",
        "each day's recommendations/D/published_model.pt is whole and is the model its lists"
        " were published from",
        _published_models,
        _repair_published_models,
    ),
]


def run_checks(
    deployment: Deployment,
    checks: list[Check] | None = None,
    repair: bool = False,
    log: Log = print,
) -> dict[str, list[str]]:
    """Run ``checks`` (default :data:`CHECKS`); with ``repair``, repair what each finds and
    inspect again. Returns {check name: problems left}; all empty when everything agrees."""
    left = {}
    for check in CHECKS if checks is None else checks:
        problems = check.inspect(deployment)
        for problem in problems:
            log(f"{check.name}: {problem}")
        if problems and repair and check.repair is not None:
            check.repair(deployment, lambda line, name=check.name: log(f"{name}: {line}"))
            problems = check.inspect(deployment)
            for problem in problems:
                log(f"{check.name}: still: {problem}")
        left[check.name] = problems
    return left
