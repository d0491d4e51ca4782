"""A local artifact store: tensors, checkpoints and JSON under ``{root}/{asset}/{partition}/``.

Paths are named by partition key, never by wall-clock time, so re-runs and backfills overwrite
the right thing. Every write goes to a temporary file first and is renamed into place, so a
crash never leaves a half-written artifact behind.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

_SAFE = re.compile(r"^[A-Za-z0-9_.=-]+$")


class LocalArtifactStore:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def path(self, asset: str, partition: str, name: str) -> Path:
        for part in (asset, partition, name):
            if not _SAFE.match(part) or part in {".", ".."}:
                raise ValueError(f"unsafe artifact path component: {part!r}")
        return self.root / asset / partition / name

    def exists(self, asset: str, partition: str, name: str) -> bool:
        return self.path(asset, partition, name).exists()

    def _write(self, target: Path, write) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def save_torch(self, obj: Any, asset: str, partition: str, name: str) -> Path:
        return self._write(self.path(asset, partition, name), lambda f: torch.save(obj, f))

    def load_torch(self, asset: str, partition: str, name: str) -> Any:
        path = self.path(asset, partition, name)
        if not path.exists():
            raise FileNotFoundError(
                f"artifact {asset}/{partition}/{name} is missing: materialise {asset} for"
                f" partition {partition} first"
            )
        return torch.load(path, weights_only=False)

    def save_json(self, obj: Any, asset: str, partition: str, name: str) -> Path:
        payload = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
        return self._write(self.path(asset, partition, name), lambda f: f.write(payload))

    def load_json(self, asset: str, partition: str, name: str) -> Any:
        return json.loads(self.path(asset, partition, name).read_text())


class ArtifactProgress:
    """A training run's in-progress state as ``{asset}/{partition}/progress.pt`` of a store
    (the :class:`recs_pipeline.train.ProgressStore` protocol): written atomically after every
    validation check, loaded by the next attempt at the same partition, removed once the
    finished model is saved."""

    NAME = "progress.pt"

    def __init__(self, store: LocalArtifactStore, asset: str, partition: str) -> None:
        self.store, self.asset, self.partition = store, asset, partition

    def load(self) -> dict | None:
        if not self.store.exists(self.asset, self.partition, self.NAME):
            return None
        return self.store.load_torch(self.asset, self.partition, self.NAME)

    def save(self, state: dict) -> None:
        self.store.save_torch(state, self.asset, self.partition, self.NAME)

    def clear(self) -> None:
        self.store.path(self.asset, self.partition, self.NAME).unlink(missing_ok=True)
