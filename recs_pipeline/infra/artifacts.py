"""The artifact store: tensors, checkpoints and JSON under ``{root}/{asset}/{partition}/{name}``,
where the root is a folder, a ``file://`` URL or any fsspec URL (``s3://bucket/prefix``, …).

Paths are named by partition key, never by wall-clock time, so re-runs and backfills overwrite
the right thing. Each artifact is published whole or not at all (a reader never sees a
half-written one, a killed writer leaves the previous version), on every backend:

- a folder or ``file://``: written to a temporary file beside the target (a leading-dot name),
  fsynced, then renamed over it; a POSIX rename replaces the name atomically;
- object stores (``s3://``, ``gs://``, ``az://``, …): uploaded in one operation, a single PUT or
  a multipart upload; the store makes an object visible only when its PUT or its
  CompleteMultipartUpload succeeds, so a partial upload is never readable (a killed multipart
  upload stays invisible until an AbortIncompleteMultipartUpload lifecycle rule removes it);
- any other fsspec backend: uploaded to a temporary name beside the target, then moved over it,
  which is atomic where that backend's rename is (sftp, hdfs; ``memory://`` within a process).

Every artifact file is one JSON header line followed by the payload (``torch.save`` bytes or
JSON text). The header records where the artifact belongs (asset, partition, name), the run
that wrote it, and the payload's size and sha256. Header and payload are one file published
together, so a crash can never pair a new payload with an old checksum (a separate sidecar
would need two publications). The writer streams the payload after a header line reserved at
its widest (trailing spaces pad it), then fills the header in: a large checkpoint is never held
twice in memory. Readers verify all of it before decoding:

- a truncated, tampered or misplaced file is refused with an :class:`ArtifactError` naming it;
- payloads are decoded with ``torch.load(weights_only=True)``: tensors and plain data only, so
  a pickle planted in the store cannot run code (nothing here is ever unpickled unrestricted);
- a reader that expects the artifact from its own run (the upstream step ran in the same run)
  is refused when another run overwrote it in between.

The payload's sha256 is the artifact's fingerprint: the quality gate records the one of the
model it evaluated, and publication refuses any other model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import pickle
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")
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
SELECTION = Artifact("model_selection", "selection.json")
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


@dataclasses.dataclass(frozen=True)
class Lineage:
    """Which run must have written each upstream artifact a step reads: the step's own run for
    the assets that run materialises before the step (``selected``), so that a step never mixes
    its run's data with another run's that overwrote it meanwhile; any writer for the others (an
    earlier run's output). Resolved once per step; every read asks :meth:`writer`."""

    run_id: str | None = None
    selected: frozenset[str] = frozenset()

    def writer(self, artifact: Artifact) -> str | None:
        return self.run_id if artifact.asset in self.selected else None


@dataclasses.dataclass(frozen=True)
class DayArtifacts:
    """Day ``key``'s artifacts as one step reads them: ``store``'s, each read from the run
    ``lineage`` names for it."""

    store: UrlArtifactStore
    key: str
    lineage: Lineage = Lineage()

    def writer(self, artifact: Artifact) -> str | None:
        return self.lineage.writer(artifact)

    def get(self, artifact: Artifact) -> Any:
        return self.store.get(artifact, self.key, self.writer(artifact))


_CHUNK = 8 * 2**20
# A remote read that finds the object replaced under it starts over, waiting 0.1, 0.2, ... s.
_READ_ATTEMPTS = 6
# Object stores, where an upload becomes visible whole when it completes and a rename is a
# copy: artifacts are uploaded straight to their key.
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss"}
# S3 uploads in 8 MiB parts (the default is 50 MiB, held in memory by the single PUT below
# 100 MiB); at least 5 MiB (S3's smallest part), at most 10,000 parts. 4 parts in flight
# (s3fs's default is 10): 32 MiB held, unless storage_options set max_concurrency.
_S3_PART = 8 * 2**20
_S3_PARTS_IN_FLIGHT = 4


class UrlArtifactStore:
    """Artifacts under a folder or URL root, published atomically and verified on read (see
    the module docstring). ``storage_options`` go to fsspec for URL roots (an endpoint, a
    region; the Dagster resource refuses credentials there: the backend reads them from the
    environment, e.g. ``AWS_SECRET_ACCESS_KEY`` or ``FSSPEC_S3_SECRET``)."""

    def __init__(
        self,
        root: str | os.PathLike,
        run_id: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.root = str(root)
        # The run writing through this store: recorded in every artifact it writes.
        self.run_id = run_id
        self._files = _files_at(self.root, dict(storage_options or {}))

    def __repr__(self) -> str:
        return f"UrlArtifactStore({self._files.location('')!r}, run_id={self.run_id!r})"

    def location(self, artifact: Artifact, partition: str) -> str:
        """Where ``artifact`` of ``partition`` lives: a path for a folder root, else a URL."""
        return self._files.location(_key(artifact, partition))

    def has(self, artifact: Artifact, partition: str) -> bool:
        return self._files.exists(_key(artifact, partition))

    def remove(self, artifact: Artifact, partition: str) -> None:
        self._files.remove(_key(artifact, partition))

    def partitions(self, artifact: Artifact) -> list[str]:
        """The partitions holding ``artifact``, sorted (temporary files never count)."""
        _check(artifact.asset, artifact.name)
        return self._files.partitions(artifact.asset, artifact.name)

    def put(self, artifact: Artifact, partition: str, obj: Any) -> Stamp:
        """Write ``obj`` as ``artifact`` of ``partition``; returns its stamp (fingerprint)."""
        if artifact.encoding == "json":
            payload = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
            return self.put_payload(artifact, partition, payload)
        # torch here, not at the top: the code location imports this module (artifact names)
        # without running a step, and torch alone is half of its import time.
        import torch

        # Protocol 2 explicitly: torch.load(weights_only=True) warns on any other.
        return self._publish(
            artifact, partition, lambda out: torch.save(obj, out, pickle_protocol=2)
        )

    def put_payload(self, artifact: Artifact, partition: str, payload: bytes) -> Stamp:
        """Write an already encoded payload (from :meth:`get_payload`) as ``artifact``: a copy
        keeps its sha256, the fingerprint."""
        return self._publish(artifact, partition, lambda out: out.write(payload))

    def get(self, artifact: Artifact, partition: str, expect_run: str | None = None) -> Any:
        """The verified, safely decoded content of ``artifact`` (see the module docstring)."""
        return self.get_stamped(artifact, partition, expect_run)[0]

    def stamp(self, artifact: Artifact, partition: str, expect_run: str | None = None) -> Stamp:
        """The verified stamp of ``artifact`` (its payload checked, not decoded)."""
        with self._verified(artifact, partition, expect_run) as (stamp, _):
            return stamp

    def recorded(self, artifact: Artifact, partition: str) -> Stamp | None:
        """The stamp ``artifact``'s header records, its payload not read (cheap: to compare a
        fingerprint with a record; :meth:`stamp` verifies it); None when it is missing."""
        try:
            with self._files.open(_key(artifact, partition)) as handle:
                line = handle.readline(_MAX_HEADER)
        except FileNotFoundError:
            return None
        return _header_stamp(line, artifact, partition)

    def get_stamped(
        self, artifact: Artifact, partition: str, expect_run: str | None = None
    ) -> tuple[Any, Stamp]:
        """Content and stamp read from one and the same file version."""
        with self._verified(artifact, partition, expect_run) as (stamp, payload):
            if artifact.encoding == "json":
                return json.loads(payload.read()), stamp
            return _load_torch(payload, artifact.at(partition)), stamp

    def get_payload(
        self, artifact: Artifact, partition: str, expect_run: str | None = None
    ) -> tuple[Stamp, bytes]:
        """The verified stamp and undecoded payload of ``artifact`` (see :meth:`decode`)."""
        with self._verified(artifact, partition, expect_run) as (stamp, payload):
            return stamp, payload.read()

    def decode(self, artifact: Artifact, partition: str, payload: bytes) -> Any:
        """A verified payload of ``artifact`` decoded (tensors and plain data only)."""
        if artifact.encoding == "json":
            return json.loads(payload)
        return _load_torch(io.BytesIO(payload), artifact.at(partition))

    # --- the file format ----------------------------------------------------------------------

    def _publish(self, artifact: Artifact, partition: str, write_payload) -> Stamp:
        header = {
            "format": FORMAT,
            "encoding": artifact.encoding,
            "asset": artifact.asset,
            "partition": partition,
            "name": artifact.name,
            "run_id": self.run_id,
        }
        # The header goes first but holds the payload's size and sha256: reserve its widest
        # line (a 64-digit hash, a 20-digit size), stream the payload, then fill it in.
        width = len(_header_line({**header, "sha256": "0" * 64, "size": 10**20}))

        def write(out: IO[bytes]) -> Stamp:
            out.write(b" " * (width - 1) + b"\n")
            hashing = _Hashing(out)
            try:
                write_payload(hashing)
            except Exception:
                # The file's own error, not the encoder's report of it (torch's zip writer
                # turns a full disk into "unexpected pos 704 vs 598").
                if hashing.error is not None:
                    raise hashing.error from None
                raise
            stamp = Stamp(hashing.sha256.hexdigest(), hashing.size, self.run_id)
            line = _header_line({**header, "sha256": stamp.sha256, "size": stamp.size})
            out.seek(0)
            out.write(line[:-1].ljust(width - 1) + b"\n")
            out.seek(0, os.SEEK_END)
            return stamp

        key = _key(artifact, partition)
        try:
            return self._files.publish(key, write)
        except OSError as error:
            if error.errno is None:
                raise
            # The cause first (a full disk: "No space left on device"), naming the file; the
            # publication is atomic, so the artifact's previous version, if any, is intact.
            raise OSError(  # an errno of its own subclass: ENOENT a FileNotFoundError
                error.errno,
                f"{error.strerror} (artifact {artifact.at(partition)} not written; its previous"
                " version, if any, is kept: free space or fix the store, then re-materialise"
                f" {artifact.asset} for {partition})",
                self._files.location(key),
            ) from None

    @contextlib.contextmanager
    def _verified(
        self, artifact: Artifact, partition: str, expect_run: str | None
    ) -> Iterator[tuple[Stamp, IO[bytes]]]:
        """The verified stamp and the payload (a file positioned at its start) of one version."""
        where = artifact.at(partition)
        with contextlib.ExitStack() as stack:
            try:
                handle = stack.enter_context(self._files.open(_key(artifact, partition)))
            except FileNotFoundError:
                raise ArtifactError(
                    f"artifact {where} is missing: materialise {artifact.asset} for partition"
                    f" {partition} first"
                ) from None
            line = handle.readline(_MAX_HEADER)
            stamp = _header_stamp(line, artifact, partition)
            start = len(line)
            digest = hashlib.file_digest(handle, "sha256")
            size = handle.tell() - start
            if size != stamp.size:
                raise ArtifactError(
                    f"refused {where}: truncated or extended ({size} bytes of payload, the"
                    f" header says {stamp.size}); re-materialise {artifact.asset} for"
                    f" {partition}"
                )
            if digest.hexdigest() != stamp.sha256:
                raise ArtifactError(
                    f"refused {where}: its checksum does not match its content (tampered with"
                    f" or corrupted); re-materialise {artifact.asset} for {partition}"
                )
            if expect_run is not None and stamp.run_id != expect_run:
                raise ArtifactError(
                    f"refused {where}: this run ({expect_run}) materialised {artifact.asset}"
                    f" for {partition}, but the file was since written by run {stamp.run_id}:"
                    f" two runs of partition {partition} overlapped. Re-run the partition once"
                    " the other run ended."
                )
            yield stamp, _Window(handle, start, size)


def _header_stamp(line: bytes, artifact: Artifact, partition: str) -> Stamp:
    """The stamp an artifact's header line records, once it is known to be this artifact's."""
    where = artifact.at(partition)
    try:
        header = json.loads(line) if line.endswith(b"\n") and len(line) > 1 else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ArtifactError(
            f"refused {where}: not an artifact written by this store (no {FORMAT}"
            f" header); re-materialise {artifact.asset} for partition {partition}"
        )
    placed = (header.get("asset"), header.get("partition"), header.get("name"))
    if placed != (artifact.asset, partition, artifact.name):
        raise ArtifactError(
            f"refused {where}: the file was written as {'/'.join(map(str, placed))}"
        )
    return Stamp(
        str(header.get("sha256")), _header_size(header, artifact, partition), header.get("run_id")
    )


def _key(artifact: Artifact, partition: str) -> str:
    _check(artifact.asset, partition, artifact.name)
    return artifact.at(partition)


def _check(*parts: str) -> None:
    for part in parts:
        if not _SAFE.match(part) or part in {".", ".."}:
            raise ValueError(f"unsafe artifact path component: {part!r}")


def _header_line(header: dict) -> bytes:
    return json.dumps(header, sort_keys=True).encode() + b"\n"


def _header_size(header: dict, artifact: Artifact, partition: str) -> int:
    """The payload size an artifact's header records: ArtifactError naming the file when it is
    no whole number of bytes (``int()`` would take 1.5 for 1 and fail on "12k" without naming
    the file)."""
    size = header.get("size")
    if type(size) is not int or size < 0:  # a bool is no size either
        raise ArtifactError(
            f"refused {artifact.at(partition)}: its header's size is {size!r}, not a whole"
            " number of bytes (corrupted, or not written by this store); re-materialise"
            f" {artifact.asset} for partition {partition}"
        )
    return size


def _load_torch(source: IO[bytes], where: str) -> Any:
    import torch  # as in UrlArtifactStore.put: only a step decodes tensors

    try:
        return torch.load(source, weights_only=True)
    except pickle.UnpicklingError as error:
        raise ArtifactError(
            f"refused to load {where}: it holds objects other than tensors and plain data,"
            f" which could run code ({str(error).splitlines()[0]})"
        ) from None
    except Exception as error:  # noqa: BLE001  (any undecodable payload is refused)
        raise ArtifactError(f"refused {where}: cannot be decoded ({error})") from None


class _Hashing:
    """A write-only file that hashes and counts what passes through it to ``out``."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out, self.sha256, self.size = out, hashlib.sha256(), 0
        self.error: OSError | None = None  # the first failed write's, whatever wraps it

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        try:
            return self.out.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self) -> None:
        self.out.flush()


class _Window(io.RawIOBase):
    """The payload as a file of its own: ``size`` bytes of ``handle`` from ``start`` (the
    zip reader behind ``torch.load`` seeks to offsets counted from the payload's start)."""

    def __init__(self, handle: IO[bytes], start: int, size: int) -> None:
        self.handle, self.start, self.size, self.position = handle, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.position, os.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer) -> int:
        wanted = max(0, min(len(buffer), self.size - self.position))
        self.handle.seek(self.start + self.position)
        got = self.handle.readinto(memoryview(buffer)[:wanted])
        self.position += got
        return got


# --- where the files are ----------------------------------------------------------------------


def _files_at(root: str, storage_options: dict):
    if "://" not in root and "::" not in root:
        return _LocalFiles(Path(root))
    import fsspec.core
    from fsspec.implementations.local import LocalFileSystem

    fs, path = fsspec.core.url_to_fs(root, **storage_options)
    if isinstance(fs, LocalFileSystem):
        return _LocalFiles(Path(path))
    return _FsspecFiles(fs, path.rstrip("/"), storage_options)


class _LocalFiles:
    """A folder: temporary file beside the target, fsync, rename (atomic on POSIX)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def location(self, key: str) -> str:
        return str(self.root / key)

    def exists(self, key: str) -> bool:
        return (self.root / key).exists()

    def remove(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def partitions(self, asset: str, name: str) -> list[str]:
        folder = self.root / asset
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if (p / name).is_file())

    def open(self, key: str) -> IO[bytes]:
        # The open file stays the version it opened, whatever is renamed over it meanwhile.
        return open(self.root / key, "rb")

    def publish(self, key: str, write: Callable[[IO[bytes]], T]) -> T:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "w+b") as handle:
                written = write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return written


class _FsspecFiles:
    """An fsspec filesystem: the artifact is written whole to a local temporary file, then
    uploaded in one operation (object stores) or to a temporary name and moved (others).
    Reads copy one version to an anonymous local file first, then verify and decode it there
    (s3fs pins the version it opened with If-Match on its ETag; the checksum refuses any mix)."""

    def __init__(self, fs, root: str, storage_options: dict) -> None:
        self.fs, self.root, self.options = fs, root, storage_options
        protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
        self.object_store = bool(_OBJECT_STORES & set(protocols))
        self.s3 = "s3" in protocols

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def location(self, key: str) -> str:
        return self.fs.unstrip_protocol(self._path(key)).rstrip("/")

    def exists(self, key: str) -> bool:
        # Listings are cached per filesystem instance: another process may have written since.
        self.fs.invalidate_cache(self._path(key))
        return self.fs.exists(self._path(key))

    def remove(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(key))
        self.fs.invalidate_cache(self._path(key))

    def partitions(self, asset: str, name: str) -> list[str]:
        self.fs.invalidate_cache(self._path(asset))
        found = self.fs.glob(self._path(f"{asset}/*/{name}"))
        return sorted(path.rstrip("/").split("/")[-2] for path in found)

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[IO[bytes]]:
        path = self._path(key)
        with tempfile.TemporaryFile() as copy:
            for attempt in range(_READ_ATTEMPTS):
                self.fs.invalidate_cache(path)
                copy.seek(0)
                copy.truncate()
                try:
                    with self.fs.open(path, "rb", block_size=_CHUNK) as source:
                        shutil.copyfileobj(source, copy, _CHUNK)
                    break
                except FileNotFoundError:
                    raise
                except OSError:
                    # Replaced while being read (s3fs fails a read once the ETag it opened
                    # changed): the next attempt reads the new version, whole.
                    if attempt == _READ_ATTEMPTS - 1:
                        raise
                    time.sleep(0.1 * 2**attempt)
            copy.seek(0)
            yield copy

    def publish(self, key: str, write: Callable[[IO[bytes]], T]) -> T:
        target = self._path(key)
        staging = tempfile.NamedTemporaryFile(prefix="recs-artifact-", delete=False)
        try:
            with staging:
                written = write(staging)
            if self.object_store:
                self.fs.put_file(staging.name, target, **self._put_options(staging.name))
            else:
                parent, name = target.rsplit("/", 1)
                temporary = f"{parent}/.{name}.{uuid.uuid4().hex}"
                self.fs.makedirs(parent, exist_ok=True)
                try:
                    self.fs.put_file(staging.name, temporary)
                    self.fs.mv(temporary, target)
                except BaseException:
                    with contextlib.suppress(Exception):
                        self.fs.rm_file(temporary)
                    raise
        finally:
            os.unlink(staging.name)
            self.fs.invalidate_cache(target)
        return written

    def _put_options(self, staged: str) -> dict:
        if not self.s3:
            return {}
        parts = math.ceil(os.path.getsize(staged) / _S3_PART)
        chunksize = _S3_PART if parts <= 10_000 else math.ceil(parts / 10_000) * _S3_PART
        if "max_concurrency" in self.options:
            return {"chunksize": chunksize}
        return {"chunksize": chunksize, "max_concurrency": _S3_PARTS_IN_FLIGHT}


class ArtifactProgress:
    """A training run's in-progress state as ``{asset}/{partition}/progress.pt`` of a store
    (the :class:`recs_pipeline.training.state.ProgressStore` protocol): written atomically after every
    validation check, loaded by the next attempt at the same partition, removed once the
    finished model is saved. Progress that fails verification (truncated, tampered with, or
    holding more than tensors and plain data) is logged, removed and training starts over."""

    def __init__(self, store: UrlArtifactStore, partition: str, log=print) -> None:
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
