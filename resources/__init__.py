"""Dagster resources: where things live (warehouse, artifact store, landing logs)."""

from resources.artifacts import ArtifactStore
from resources.log_source import LogSource
from resources.warehouse import Warehouse

__all__ = ["ArtifactStore", "LogSource", "Warehouse"]
