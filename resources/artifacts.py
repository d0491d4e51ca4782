"""The artifact store (tensors, checkpoints) as a Dagster resource."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from recs_pipeline.artifacts import LocalArtifactStore


class ArtifactStore(dg.ConfigurableResource):
    """Artifacts under ``{root}/{asset}/{partition_key}/{name}``, written atomically."""

    root: str = Field(default="data/artifacts", description="Root folder of the artifact store.")

    def store(self) -> LocalArtifactStore:
        return LocalArtifactStore(self.root)
