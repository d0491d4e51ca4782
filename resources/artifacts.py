"""The artifact store (tensors, checkpoints) as a Dagster resource."""

from __future__ import annotations

import dagster as dg
from pydantic import Field, PrivateAttr

from recs_pipeline.artifacts import LocalArtifactStore


class ArtifactStore(dg.ConfigurableResource):
    """Artifacts under ``{root}/{asset}/{partition_key}/{name}``, written atomically, each
    stamped with its checksum and the id of the run that wrote it."""

    root: str = Field(default="data/artifacts", description="Root folder of the artifact store.")
    _run_id: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Inside a run every write records the run's id, so a reader of the same run can tell
        # its own upstream output from one that another run of the partition wrote since.
        self._run_id = context.run_id

    def store(self) -> LocalArtifactStore:
        return LocalArtifactStore(self.root, run_id=self._run_id)
