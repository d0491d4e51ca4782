"""Dagster resources: where things live (warehouse, artifact store, landing logs) and where
the heavy steps run (engine)."""

from resources.artifacts import ArtifactStore
from resources.engine import ComputeEngine
from resources.log_source import LogSource
from resources.warehouse import Warehouse

__all__ = ["ArtifactStore", "ComputeEngine", "LogSource", "Warehouse"]
