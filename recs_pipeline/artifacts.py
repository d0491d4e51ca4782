"""A local artifact store: tensors, checkpoints and JSON under ``{root}/{asset}/{partition}/``.

Paths are named by partition key, never by wall-clock time, so re-runs and backfills overwrite
the right thing. Every write goes to a temporary file first and is renamed into place, so a
crash never leaves a half-written artifact behind.

Every artifact file is one JSON header line followed by the payload (``torch.save`` bytes or
JSON text). The header records where the artifact belongs (asset, partition, name), the run
that wrote it, and the payload's size and sha256. Header and payload are one file renamed into
place together, so a crash can never pair a new payload with an old checksum (a separate
sidecar would need two renames). Readers verify all of it before decoding:

- a truncated, tampered or misplaced file is refused with an :class:`ArtifactError` naming it;
- payloads are decoded with ``torch.load(weights_only=True)``: tensors and plain data only, so
  a pickle planted in the store cannot run code (nothing here is ever unpickled unrestricted);
- a reader that expects the artifact from its own run (the upstream step ran in the same run)
  is refused when another run overwrote it in between.

The payload's sha256 is the artifact's fingerprint: the quality gate records the one of the
model it evaluated, and publication refuses any other model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

_SAFE = re.compile(r"^[A-Za-z0-9_.=-]+$")
FORMAT = "recs-artifact/1"
_MAX_HEADER = 4096


class ArtifactError(RuntimeError):
    """An artifact that must not be used: missing, truncated, tampered with, misplaced, holding
    more than tensors and plain data, or written by another run than the one expected."""


@dataclasses.dataclass(frozen=True)
class Artifact:
    """One named artifact of every partition of an asset (the one place that names them)."""

    asset: str
    name: str

    @property
    def encoding(self) -> str:
        return "json" if self.name.endswith(".json") else "torch"

    def at(self, partition: str) -> str:
        return f"{self.asset}/{partition}/{self.name}"


SPLIT = Artifact("interaction_split", "split.json")
GRAPH = Artifact("interaction_graph", "graph.pt")
ADJACENCY = Artifact("interaction_graph", "adjacency.pt")
ITEM_FEATURES = Artifact("interaction_graph", "item_features.pt")
HARD_NEGATIVES = Artifact("hard_negatives", "pools.pt")
MODEL = Artifact("trained_model", "model.pt")
PROGRESS = Artifact("trained_model", "progress.pt")
GATE = Artifact("model_evaluation", "gate.json")
# The model.pt behind the day's published lists, byte for byte (its sha256 is the published
# fingerprint): trained_model/D/model.pt may be replaced by a later run with another model.
PUBLISHED_MODEL = Artifact("recommendations", "published_model.pt")


@dataclasses.dataclass(frozen=True)
class Stamp:
    """What an artifact's header records about its payload and writer."""

    sha256: str
    size: int
    run_id: str | None


class LocalArtifactStore:
    def __init__(self, root: str | os.PathLike, run_id: str | None = None) -> None:
        self.root = Path(root)
        # The run writing through this store: recorded in every artifact it writes.
        self.run_id = run_id

    def path(self, asset: str, partition: str, name: str) -> Path:
        for part in (asset, partition, name):
            if not _SAFE.match(part) or part in {".", ".."}:
                raise ValueError(f"unsafe artifact path component: {part!r}")
        return self.root / asset / partition / name

    def exists(self, asset: str, partition: str, name: str) -> bool:
        return self.path(asset, partition, name).exists()

    # --- typed access -------------------------------------------------------------------------

    def has(self, artifact: Artifact, partition: str) -> bool:
        return self.exists(artifact.asset, partition, artifact.name)

    def remove(self, artifact: Artifact, partition: str) -> None:
        self.path(artifact.asset, partition, artifact.name).unlink(missing_ok=True)

    def put(self, artifact: Artifact, partition: str, obj: Any) -> Stamp:
        """Write ``obj`` as ``artifact`` of ``partition``; returns its stamp (fingerprint)."""
        if artifact.encoding == "json":
            payload = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
        else:
            buffer = io.BytesIO()
            # Protocol 2 explicitly: torch.load(weights_only=True) warns on any other.
            torch.save(obj, buffer, pickle_protocol=2)
            payload = buffer.getvalue()
        return self.put_payload(artifact, partition, payload)

    def put_payload(self, artifact: Artifact, partition: str, payload: bytes) -> Stamp:
        """Write an already encoded payload (from :meth:`get_payload`) as ``artifact``: a copy
        keeps its sha256, the fingerprint."""
        stamp = Stamp(hashlib.sha256(payload).hexdigest(), len(payload), self.run_id)
        header = {
            "format": FORMAT,
            "encoding": artifact.encoding,
            "asset": artifact.asset,
            "partition": partition,
            "name": artifact.name,
            "run_id": stamp.run_id,
            "size": stamp.size,
            "sha256": stamp.sha256,
        }
        line = json.dumps(header, sort_keys=True).encode() + b"\n"
        self._write(
            self.path(artifact.asset, partition, artifact.name),
            lambda f: (f.write(line), f.write(payload)),
        )
        return stamp

    def get(self, artifact: Artifact, partition: str, expect_run: str | None = None) -> Any:
        """The verified, safely decoded content of ``artifact`` (see the module docstring)."""
        return self.get_stamped(artifact, partition, expect_run)[0]

    def stamp(self, artifact: Artifact, partition: str, expect_run: str | None = None) -> Stamp:
        """The verified stamp of ``artifact`` (its payload checked, not decoded)."""
        return self._read(artifact, partition, expect_run)[0]

    def get_stamped(
        self, artifact: Artifact, partition: str, expect_run: str | None = None
    ) -> tuple[Any, Stamp]:
        """Content and stamp read from one and the same file version."""
        stamp, payload = self._read(artifact, partition, expect_run)
        return self.decode(artifact, partition, payload), stamp

    def get_payload(
        self, artifact: Artifact, partition: str, expect_run: str | None = None
    ) -> tuple[Stamp, bytes]:
        """The verified stamp and undecoded payload of ``artifact`` (see :meth:`decode`)."""
        return self._read(artifact, partition, expect_run)

    def decode(self, artifact: Artifact, partition: str, payload: bytes) -> Any:
        """A verified payload of ``artifact`` decoded (tensors and plain data only)."""
        where = artifact.at(partition)
        if artifact.encoding == "json":
            return json.loads(payload)
        try:
            return torch.load(io.BytesIO(payload), weights_only=True)
        except pickle.UnpicklingError as error:
            raise ArtifactError(
                f"refused to load {where}: it holds objects other than tensors and plain data,"
                f" which could run code ({str(error).splitlines()[0]})"
            ) from None
        except Exception as error:  # noqa: BLE001  (any undecodable payload is refused)
            raise ArtifactError(f"refused {where}: cannot be decoded ({error})") from None

    # --- the string-named forms (kept for tools and tests that name artifacts directly) -----

    def save_torch(self, obj: Any, asset: str, partition: str, name: str) -> Stamp:
        return self.put(Artifact(asset, name), partition, obj)

    def load_torch(self, asset: str, partition: str, name: str) -> Any:
        return self.get(Artifact(asset, name), partition)

    def save_json(self, obj: Any, asset: str, partition: str, name: str) -> Stamp:
        return self.put(Artifact(asset, name), partition, obj)

    def load_json(self, asset: str, partition: str, name: str) -> Any:
        return self.get(Artifact(asset, name), partition)

    # --- files --------------------------------------------------------------------------------

    def _read(
        self, artifact: Artifact, partition: str, expect_run: str | None
    ) -> tuple[Stamp, bytes]:
        where = artifact.at(partition)
        path = self.path(artifact.asset, partition, artifact.name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactError(
                f"artifact {where} is missing: materialise {artifact.asset} for partition"
                f" {partition} first"
            ) from None
        end = data.find(b"\n", 0, _MAX_HEADER)
        try:
            header = json.loads(data[:end]) if end > 0 else None
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ArtifactError(
                f"refused {where}: not an artifact written by this store (no {FORMAT} header);"
                f" re-materialise {artifact.asset} for partition {partition}"
            )
        placed = (header.get("asset"), header.get("partition"), header.get("name"))
        if placed != (artifact.asset, partition, artifact.name):
            raise ArtifactError(
                f"refused {where}: the file was written as {'/'.join(map(str, placed))}"
            )
        payload = data[end + 1 :]
        stamp = Stamp(str(header.get("sha256")), int(header.get("size", -1)), header.get("run_id"))
        if len(payload) != stamp.size:
            raise ArtifactError(
                f"refused {where}: truncated or extended ({len(payload)} bytes of payload, the"
                f" header says {stamp.size}); re-materialise {artifact.asset} for {partition}"
            )
        if hashlib.sha256(payload).hexdigest() != stamp.sha256:
            raise ArtifactError(
                f"refused {where}: its checksum does not match its content (tampered with or"
                f" corrupted); re-materialise {artifact.asset} for {partition}"
            )
        if expect_run is not None and stamp.run_id != expect_run:
            raise ArtifactError(
                f"refused {where}: this run ({expect_run}) materialised {artifact.asset} for"
                f" {partition}, but the file was since written by run {stamp.run_id}: two runs of"
                f" partition {partition} overlapped. Re-run the partition once the other run ended."
            )
        return stamp, payload

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


class ArtifactProgress:
    """A training run's in-progress state as ``{asset}/{partition}/progress.pt`` of a store
    (the :class:`recs_pipeline.train.ProgressStore` protocol): written atomically after every
    validation check, loaded by the next attempt at the same partition, removed once the
    finished model is saved. Progress that fails verification (truncated, tampered with, or
    holding more than tensors and plain data) is logged, removed and training starts over."""

    def __init__(self, store: LocalArtifactStore, partition: str, log=print) -> None:
        self.store, self.partition, self.log = store, partition, log

    def load(self) -> dict | None:
        if not self.store.has(PROGRESS, self.partition):
            return None
        try:
            return self.store.get(PROGRESS, self.partition)
        except ArtifactError as error:
            self.log(f"saved training progress refused, starting over: {error}")
            self.clear()
            return None

    def save(self, state: dict) -> None:
        self.store.put(PROGRESS, self.partition, state)

    def clear(self) -> None:
        self.store.remove(PROGRESS, self.partition)
