"""The compute engine of the heavy steps (recs_pipeline/infra/engine.py) as a Dagster resource."""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import Field

from recs_pipeline.infra.engine import Engine


class ComputeEngine(dg.ConfigurableResource):
    """Where hard negatives, evaluation, publication and training run: ``local`` (in the step's
    process, the default) or ``ray`` (shards as Ray tasks; docs/distributed.md)."""

    kind: Literal["local", "ray"] = Field(
        default="local",
        description="'local': in the step's own process. 'ray': shards of users as Ray tasks,"
        " and data-parallel training on Ray workers.",
    )
    address: str | None = Field(
        default=None,
        description="A running Ray cluster (e.g. 'ray://raycluster-head-svc:10001' for KubeRay,"
        " 'auto' on a node of one). Unset with kind 'ray': each step starts a local cluster.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        description="Shards of users per sharded step, and workers of data-parallel training.",
    )
    num_cpus: int | None = Field(
        default=None,
        ge=1,
        description="Worker slots of a local Ray cluster a step starts (default: every core).",
    )

    def engine(self) -> Engine:
        return Engine(
            kind=self.kind, address=self.address, workers=self.workers, num_cpus=self.num_cpus
        )
