"""The artifact store addressed by URL: a folder, ``file://``, ``memory://`` and ``s3://``
against a real S3 HTTP server in its own process (moto's server mode: no MinIO server is
installable here), with the same guarantees on each: whole-or-nothing publication (shown by
SIGKILLing writers), verified reads, exists/remove/list, and files in the original header
format still readable.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import fsspec
import pytest
import torch

from recs_pipeline.infra.artifacts import (
    MODEL,
    PROGRESS,
    PUBLISHED_MODEL,
    SPLIT,
    ArtifactError,
    UrlArtifactStore,
)
from resources import ArtifactStore
from tests.s3_support import REGION, S3_ENV

PROJECT = Path(__file__).resolve().parents[1]
DAY = "2026-03-01"
BUCKET = "recs-artifacts"


@pytest.fixture(scope="module")
def s3(s3_server):
    """The session's S3 server (moto's, tests/conftest.py) with this module's bucket; yields the
    storage options a store needs besides the credentials, which come from the environment as
    in a deployment."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in S3_ENV.items():
            env.setenv(name, value)
        options = {"endpoint_url": s3_server.endpoint}
        fsspec.filesystem("s3", **options).mkdir(BUCKET, region_name=REGION)
        yield options


@pytest.fixture(params=["folder", "file", "memory", "s3"])
def store_at(request, tmp_path):
    """A function ``run_id -> store`` on one backend, its root fresh for each test."""
    options = request.getfixturevalue("s3") if request.param == "s3" else {}
    root = {
        "folder": str(tmp_path / "artifacts"),
        "file": f"file://{tmp_path}/artifacts",
        "memory": f"memory://recs-{tmp_path.name}",
        "s3": f"s3://{BUCKET}/{tmp_path.name}",
    }[request.param]
    yield lambda run_id=None: UrlArtifactStore(root, run_id, options)
    if request.param == "memory":
        fsspec.filesystem("memory").rm(root, recursive=True)


def test_every_backend_stores_verifies_lists_and_removes(store_at):
    store = store_at("run-1")
    weights = torch.arange(100_000, dtype=torch.float32)
    stamp = store.put(MODEL, DAY, {"model": "lightgcn", "weights": weights})
    store.put(SPLIT, DAY, {"train_days": 14})
    store.put(MODEL, "2026-03-02", {"model": "popularity"})

    assert torch.equal(store.get(MODEL, DAY)["weights"], weights)
    assert store.get(SPLIT, DAY) == {"train_days": 14}
    assert store.stamp(MODEL, DAY) == stamp and stamp.run_id == "run-1"
    assert store.get_stamped(MODEL, DAY, expect_run="run-1")[1] == stamp
    # A copy of the payload keeps the fingerprint (publication pins the evaluated model).
    copied = store.put_payload(PUBLISHED_MODEL, DAY, store.get_payload(MODEL, DAY)[1])
    assert copied.sha256 == stamp.sha256
    assert store.location(MODEL, DAY).endswith(f"/trained_model/{DAY}/model.pt")

    assert store.has(MODEL, DAY) and not store.has(PROGRESS, DAY)
    assert store.partitions(MODEL) == [DAY, "2026-03-02"]
    assert store.partitions(PROGRESS) == []
    store.remove(MODEL, DAY)
    store.remove(MODEL, DAY)  # removing what is gone is no error
    assert not store.has(MODEL, DAY) and store.partitions(MODEL) == ["2026-03-02"]
    with pytest.raises(ArtifactError, match="is missing"):
        store.get(MODEL, DAY)

    # Another run rewrote the split in between: a reader of run-1 refuses it.
    store_at("run-2").put(SPLIT, DAY, {"train_days": 7})
    with pytest.raises(ArtifactError, match="overlapped"):
        store.get(SPLIT, DAY, expect_run="run-1")
    with pytest.raises(ValueError, match="unsafe artifact path"):
        store.get(SPLIT, "../2026-03-01")


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_truncated_tampered_and_misplaced_files_are_refused(backend, tmp_path, request):
    options = request.getfixturevalue("s3") if backend == "s3" else {}
    root = f"s3://{BUCKET}/{tmp_path.name}" if backend == "s3" else f"file://{tmp_path}"
    store = UrlArtifactStore(root, "run-1", options)
    store.put(MODEL, DAY, {"w": torch.arange(1000.0)})
    fs, path = fsspec.core.url_to_fs(store.location(MODEL, DAY), **options)
    whole = fs.cat_file(path)

    fs.pipe_file(path, whole[:-100])
    with pytest.raises(ArtifactError, match="truncated"):
        store.get(MODEL, DAY)
    tampered = bytearray(whole)
    tampered[-50] ^= 0xFF
    fs.pipe_file(path, bytes(tampered))
    with pytest.raises(ArtifactError, match="checksum"):
        store.stamp(MODEL, DAY)
    _, other = fsspec.core.url_to_fs(store.location(MODEL, "2026-03-02"), **options)
    fs.makedirs(other.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(other, whole)
    with pytest.raises(ArtifactError, match=f"trained_model/{DAY}/model.pt"):
        store.get(MODEL, "2026-03-02")
    fs.pipe_file(path, b"\x80\x02not an artifact")
    with pytest.raises(ArtifactError, match="no recs-artifact/1 header"):
        store.get(MODEL, DAY)


@pytest.mark.parametrize("size", ["12k", 1.5, None], ids=repr)
def test_a_header_whose_size_is_no_whole_number_is_refused_naming_the_file(tmp_path, size):
    """Issue 27: int() of the header's size raised a bare ValueError ("12k") or TypeError
    (null) without the file, and took 1.5 for 1."""
    store = UrlArtifactStore(tmp_path)
    store.put(MODEL, DAY, {"w": torch.arange(10.0)})
    path = Path(store.location(MODEL, DAY))
    line, payload = path.read_bytes().split(b"\n", 1)
    header = json.loads(line) | {"size": size}
    path.write_bytes(json.dumps(header).encode() + b"\n" + payload)
    with pytest.raises(ArtifactError, match=rf"trained_model/{DAY}/model.pt: its header's size"):
        store.get(MODEL, DAY)


def test_files_in_the_original_header_format_stay_readable(tmp_path):
    """Files written before URL roots (header line without padding) read as before, and the
    header of a new file is the same JSON object, padded with spaces to its reserved width."""
    payload = json.dumps({"train_days": 14}).encode()
    header = {
        "asset": SPLIT.asset,
        "encoding": "json",
        "format": "recs-artifact/1",
        "name": SPLIT.name,
        "partition": DAY,
        "run_id": "old-run",
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
    }
    old = tmp_path / SPLIT.asset / DAY / SPLIT.name
    old.parent.mkdir(parents=True)
    old.write_bytes(json.dumps(header, sort_keys=True).encode() + b"\n" + payload)
    store = UrlArtifactStore(tmp_path, "new-run")
    assert store.get_stamped(SPLIT, DAY) == ({"train_days": 14}, store.stamp(SPLIT, DAY))
    assert store.stamp(SPLIT, DAY).run_id == "old-run"

    store.put(SPLIT, "2026-03-02", {"train_days": 14})
    line, rest = (tmp_path / SPLIT.asset / "2026-03-02" / SPLIT.name).read_bytes().split(b"\n", 1)
    assert rest == json.dumps({"train_days": 14}, indent=2, sort_keys=True).encode()
    assert json.loads(line) == {
        **header,
        "partition": "2026-03-02",
        "run_id": "new-run",
        "sha256": hashlib.sha256(rest).hexdigest(),
        "size": len(rest),
    }


# --- killed writers ---------------------------------------------------------------------------

# Rewrites a 24 MB checkpoint in a loop (``loop``), or writes it once and stops half-way
# (``pause``): after the payload reached the local file (folder, file://) or after the first
# part of the multipart upload reached the server (s3), so the kill lands mid-write.
_WRITER = """
import json, os, sys, time
import torch
from recs_pipeline.infra.artifacts import MODEL, UrlArtifactStore
import recs_pipeline.infra.artifacts as artifacts

root, mode, partition = sys.argv[1:4]
store = UrlArtifactStore(root)

def pause():
    print("PAUSED", flush=True)
    time.sleep(600)

if mode == "pause" and root.startswith("s3://"):
    import s3fs
    call = s3fs.S3FileSystem._call_s3
    async def paused(self, method, *args, **kwargs):
        if method == "upload_part" and kwargs.get("PartNumber") == 2:
            pause()
        return await call(self, method, *args, **kwargs)
    s3fs.S3FileSystem._call_s3 = paused
elif mode == "pause":
    write = artifacts._Hashing.write
    def paused(self, data):
        written = write(self, data)
        if self.size > 16_000_000:
            pause()
        return written
    artifacts._Hashing.write = paused

version = 0
while True:
    version += 1
    store.put(MODEL, partition, {"version": version, "weights": torch.full((6_000_000,), float(version))})
    print(version, flush=True)
"""


def _start_writer(tmp_path: Path, root: str, options: dict, mode: str, partition: str):
    """The writer, configured through the environment alone, as fsspec reads it
    (FSSPEC_<PROTOCOL>_<OPTION>): the endpoint and credentials of the S3 server."""
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    env = {name: value for name, value in os.environ.items() if name not in S3_ENV}
    env |= {
        "AWS_DEFAULT_REGION": REGION,
        **{f"FSSPEC_S3_{name.upper()}": value for name, value in options.items()},
        "FSSPEC_S3_KEY": S3_ENV["AWS_ACCESS_KEY_ID"],
        "FSSPEC_S3_SECRET": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")])),
        # A killed upload leaves its local staging file behind: here, not in /tmp.
        "TMPDIR": str(tmp_path),
    }
    proc = subprocess.Popen(
        [sys.executable, str(script), root, mode, partition],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    printed: list[str] = []
    reader = threading.Thread(
        target=lambda: printed.extend(line.strip() for line in proc.stdout), daemon=True
    )
    reader.start()
    return proc, printed, reader


def _kill(proc, reader) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    reader.join(timeout=10)


def _wait_for(printed: list[str], proc, done) -> None:
    deadline = time.monotonic() + 120
    while not done(printed) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert done(printed), (printed, proc.poll())


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_a_writer_killed_mid_write_leaves_the_previous_version_or_nothing(
    backend, tmp_path, request
):
    options = request.getfixturevalue("s3") if backend == "s3" else {}
    root = f"s3://{BUCKET}/{tmp_path.name}" if backend == "s3" else f"file://{tmp_path}/store"
    store = UrlArtifactStore(root, storage_options=options)

    # Killed half-way through the first version of a partition: readers see nothing.
    proc, printed, reader = _start_writer(tmp_path, root, options, "pause", "2026-03-02")
    _wait_for(printed, proc, lambda lines: "PAUSED" in lines)
    _kill(proc, reader)
    assert not store.has(MODEL, "2026-03-02") and store.partitions(MODEL) == []
    with pytest.raises(ArtifactError, match="is missing"):
        store.get(MODEL, "2026-03-02")
    if backend == "s3":
        # The multipart upload was started, its parts under way, and never completed.
        s3 = fsspec.filesystem("s3", **options)
        uploads = s3.call_s3("list_multipart_uploads", Bucket=BUCKET).get("Uploads", [])
        assert f"{tmp_path.name}/trained_model/2026-03-02/model.pt" in [u["Key"] for u in uploads]

    # Killed at a random moment while rewriting it in a loop: always one whole version.
    seed = time.time_ns() % 1_000_000
    rng = random.Random(seed)
    proc, printed, reader = _start_writer(tmp_path, root, options, "loop", DAY)
    _wait_for(printed, proc, lambda lines: len(lines) >= 2)
    time.sleep(rng.uniform(0.0, 0.5 if backend == "s3" else 0.2))
    _kill(proc, reader)
    last_done = int(printed[-1])
    state = store.get(MODEL, DAY)
    assert state["version"] in (last_done, last_done + 1), (state["version"], last_done, seed)
    assert torch.equal(state["weights"], torch.full((6_000_000,), float(state["version"]))), seed
    assert store.partitions(MODEL) == [DAY]


def test_a_reader_racing_a_writer_on_s3_gets_a_whole_version(s3, tmp_path):
    """An object replaced while it is read (s3fs then fails the read: its ETag changed) is
    read again: every read is one whole version, none fails."""
    root = f"s3://{BUCKET}/{tmp_path.name}"
    store = UrlArtifactStore(root, storage_options=s3)
    store.put(MODEL, DAY, {"version": 0, "weights": torch.zeros(1_000_000)})
    done = threading.Event()
    errors: list[BaseException] = []

    def rewrite() -> None:
        try:
            for version in range(1, 9):
                store.put(
                    MODEL,
                    DAY,
                    {"version": version, "weights": torch.full((1_000_000,), float(version))},
                )
        except BaseException as error:  # noqa: BLE001  (reported by the main thread)
            errors.append(error)
        finally:
            done.set()

    writer = threading.Thread(target=rewrite)
    writer.start()
    reads = []
    while not done.is_set():
        state = store.get(MODEL, DAY)
        assert torch.equal(state["weights"], torch.full((1_000_000,), float(state["version"])))
        reads.append(state["version"])
    writer.join()
    assert not errors, errors
    assert reads == sorted(reads) and len(set(reads)) > 1, reads


# --- the Dagster resource ---------------------------------------------------------------------


@dg.asset
def split(artifacts: ArtifactStore) -> None:
    artifacts.store().put(SPLIT, DAY, {"train_days": 14})


def test_the_resource_takes_storage_options_but_never_credentials(s3, tmp_path):
    root = f"s3://{BUCKET}/{tmp_path.name}"
    resource = ArtifactStore(root=root, storage_options=s3)
    result = dg.materialize([split], resources={"artifacts": resource})
    assert result.success
    assert resource.store().stamp(SPLIT, DAY).run_id == result.run_id

    for secret in ({"secret": "do-not-print"}, {"client_kwargs": {"aws_secret_access_key": "x"}}):
        configured = ArtifactStore(root=root, storage_options={**s3, **secret})
        failed = dg.materialize([split], resources={"artifacts": configured}, raise_on_error=False)
        assert not failed.success
        errors = [str(e.event_specific_data.error) for e in failed.all_events if e.is_failure]
        assert any("set them in the environment" in error for error in errors), errors
        assert not any("do-not-print" in error for error in errors), errors


def test_a_url_root_in_the_project_config_is_not_taken_for_a_relative_path(tmp_path, monkeypatch):
    from recs_pipeline.infra import project_config

    config = tmp_path / "recs.toml"
    config.write_text('[resources.artifacts]\nroot = "s3://bucket/artifacts"\n')
    monkeypatch.setenv("RECS_CONFIG", str(config))
    assert project_config.section("resources", "artifacts") == {"root": "s3://bucket/artifacts"}
