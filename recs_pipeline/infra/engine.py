"""Where the heavy steps run: in the step's own process, or spread over a Ray cluster.

A sharded step (hard negatives, evaluation, publication) splits its users into shards and hands
them to :meth:`Engine.map` (or :func:`map_shards`, which also times each shard and reports it as
it completes), which returns one result per shard, in order. The kinds:

- ``local`` (the embedded default): the shards run one after another in this process. Nothing
  beyond the project's own dependencies is imported.
- ``ray``: each shard is a Ray task on a worker process. With ``address`` the engine joins a
  running cluster (``ray://head:10001`` for a KubeRay cluster's client port, ``auto`` on a node
  of one); without it, :meth:`Engine.session` starts a local cluster of ``num_cpus`` worker
  slots for the step and stops it afterwards (the tests, one big machine).

Large inputs that every shard reads (the graph, the model) go to the cluster once, through
:meth:`Engine.share`, not once per shard.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

KINDS = ("local", "ray")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Engine:
    kind: str = "local"
    # A running Ray cluster; None starts a local one for the session (kind "ray" only).
    address: str | None = None
    # How many shards (and data-parallel training workers) a step splits its work into.
    workers: int = 1
    # Worker slots of a local cluster this process starts (None: Ray's default, every core).
    num_cpus: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"engine kind {self.kind!r}: one of {', '.join(KINDS)}")
        if self.workers < 1:
            raise ValueError(f"engine workers must be >= 1, got {self.workers}")
        if self.kind == "local" and self.address:
            raise ValueError("engine address is for kind 'ray'; 'local' runs in this process")

    @property
    def distributed(self) -> bool:
        return self.kind == "ray"

    @contextmanager
    def session(self) -> Iterator[Engine]:
        """Connect to (or start) the cluster for the block. A cluster this process started is
        stopped at the end; one that was already connected (an enclosing session) is left."""
        if self.kind == "local":
            yield self
            return
        import ray

        if ray.is_initialized():
            yield self
            return
        if not sys.stdout.isatty():
            # Workers' output reaches a step's captured stdout/stderr (the run's logs in the
            # UI): plain "(pid=…)" prefixes there, not ANSI colour codes.
            os.environ.setdefault("RAY_COLOR_PREFIX", "0")
        ray.init(
            # "local" starts a cluster of our own even where `ray start` left one running,
            # which address=None would silently join.
            address=self.address or "local",
            num_cpus=None if self.address else self.num_cpus,
            include_dashboard=False,
            log_to_driver=True,
            configure_logging=False,
        )
        try:
            log.info("ray cluster: %s", ray.cluster_resources())
            yield self
        finally:
            ray.shutdown()

    def share(self, obj: Any) -> Any:
        """``obj`` as every shard should receive it: a Ray object reference (copied to the
        cluster's object store once; Ray resolves it before the task runs) or ``obj`` itself."""
        if self.kind == "local":
            return obj
        import ray

        return ray.put(obj)

    def map(self, fn: Callable[..., Any], shards: Sequence[Any], *shared: Any) -> list[Any]:
        """``[fn(shard, *shared) for shard in shards]``, each call a Ray task with kind "ray"
        (one CPU each, run as slots free up). ``shared``: values from :meth:`share`. Must be
        called inside :meth:`session`."""
        if self.kind == "local":
            return [fn(shard, *shared) for shard in shards]
        import ray

        if not ray.is_initialized():
            raise RuntimeError("Engine.map with kind 'ray' outside Engine.session()")
        task = ray.remote(num_cpus=1, max_retries=0)(fn)
        return ray.get([task.remote(shard, *shared) for shard in shards])

    def gang(self, fn: Callable[..., Any], *shared: Any) -> list[Any]:
        """``[fn(rank, workers, rendezvous, *shared) for rank in range(workers)]`` with every call
        running at the same time, each in its own process, so that they can form one
        ``torch.distributed`` process group (``rendezvous``: a ``tcp://host:port`` init address on
        rank 0's machine). Returns the results by rank; the first rank to fail stops the others.

        - ``local`` with ``workers == 1``: ``fn(0, 1, None, *shared)`` in this process.
        - ``local``: ``workers`` spawned processes on this machine.
        - ``ray``: one Ray actor per rank, reserved together in a placement group of ``workers``
          one-CPU bundles, so that all ranks start at once or none does (a rank waiting for a
          peer that never gets a slot would hang). Must be called inside :meth:`session`.
        """
        if self.kind == "ray":
            return _ray_gang(self.workers, fn, shared)
        if self.workers == 1:
            return [fn(0, 1, None, *shared)]
        return _process_gang(self.workers, fn, shared)


# --- gangs: processes that run together (data-parallel training) -----------------------------

# How long a gang waits for the cluster to hold all its workers at once.
GANG_PLACEMENT_TIMEOUT_S = 120


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the OS picks it; a rendezvous binds it moments later)."""
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _gang_member(fn, rank: int, world: int, rendezvous: str, shared: tuple, results) -> None:
    import pickle
    import traceback

    try:
        outcome = (rank, True, pickle.dumps(fn(rank, world, rendezvous, *shared)))
    except BaseException:  # noqa: BLE001  (reported to the parent, which raises it)
        outcome = (rank, False, traceback.format_exc())
    # Plain pickle bytes, not tensors through the queue: torch would hand those over as shared
    # memory that this process, exiting next, is the keeper of.
    results.put(outcome)


def _process_gang(world: int, fn: Callable[..., Any], shared: tuple) -> list[Any]:
    import multiprocessing
    import pickle
    import queue

    context = multiprocessing.get_context("spawn")  # fork would copy this process's threads
    results = context.Queue()
    rendezvous = f"tcp://127.0.0.1:{free_port()}"
    members = [
        context.Process(
            target=_gang_member,
            args=(fn, rank, world, rendezvous, shared, results),
            name=f"gang-rank-{rank}",
            daemon=True,
        )
        for rank in range(world)
    ]
    for member in members:
        member.start()
    done: dict[int, Any] = {}
    try:
        while len(done) < world:
            try:
                rank, ok, payload = results.get(timeout=1.0)
            except queue.Empty:
                rank = None
            if rank is None:
                # A rank that died without a word (killed, out of memory) leaves its peers
                # blocked in a collective: stop them rather than wait for gloo's timeout.
                dead = [
                    (r, m.exitcode) for r, m in enumerate(members) if r not in done and m.exitcode
                ]
                if dead:
                    raise RuntimeError(f"gang rank {dead[0][0]} died (exit code {dead[0][1]})")
                continue
            if not ok:
                raise RuntimeError(f"gang rank {rank} of {world} failed:\n{payload}")
            done[rank] = pickle.loads(payload)
        for member in members:
            member.join()
    finally:
        for member in members:
            if member.is_alive():
                member.terminate()
                member.join()
        results.close()
    return [done[rank] for rank in range(world)]


class _GangMember:
    """A Ray actor holding one rank's process (see :func:`_ray_gang`)."""

    def endpoint(self) -> tuple[str, int]:
        import ray

        host = ray.util.get_node_ip_address()
        return host, free_port(host)

    def run(self, fn: Callable[..., Any], rank: int, world: int, rendezvous: str, *shared):
        return fn(rank, world, rendezvous, *shared)


def _ray_gang(world: int, fn: Callable[..., Any], shared: tuple) -> list[Any]:
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    if not ray.is_initialized():
        raise RuntimeError("Engine.gang with kind 'ray' outside Engine.session()")
    group = placement_group([{"CPU": 1}] * world, strategy="PACK")
    members = []
    try:
        if not group.wait(timeout_seconds=GANG_PLACEMENT_TIMEOUT_S):
            raise RuntimeError(
                f"no room for a gang of {world} one-CPU workers on the Ray cluster within"
                f" {GANG_PLACEMENT_TIMEOUT_S} s ({ray.available_resources()} available)"
            )
        actor = ray.remote(num_cpus=1, max_restarts=0)(_GangMember)
        members = [
            actor.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=group, placement_group_bundle_index=rank
                )
            ).remote()
            for rank in range(world)
        ]
        host, port = ray.get(members[0].endpoint.remote())
        rendezvous = f"tcp://{host}:{port}"
        pending = [m.run.remote(fn, r, world, rendezvous, *shared) for r, m in enumerate(members)]
        refs = list(pending)
        while pending:  # the first failure raises here; finally then stops its peers
            finished, pending = ray.wait(pending, num_returns=1)
            ray.get(finished)
        return ray.get(refs)
    finally:
        for member in members:
            ray.kill(member)
        remove_placement_group(group)


def shard_ranges(n: int, shards: int) -> list[range]:
    """``range(n)`` cut into ``shards`` contiguous, nearly equal, non-empty ranges (fewer when
    ``n < shards``): shard i of a fixed ``(n, shards)`` is always the same slice."""
    shards = max(1, min(shards, n)) if n else 1
    bounds = [n * i // shards for i in range(shards + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(shards)]


@dataclass(frozen=True)
class ShardRun:
    """One shard as it ran: its position, the users it covered, its seconds, and where."""

    shard: int
    users: int
    seconds: float
    worker: str  # host:pid of the process that ran it


def _timed(fn: Callable[..., Any], shard: Any, *shared: Any) -> tuple[Any, float, str]:
    started = time.perf_counter()
    result = fn(shard, *shared)
    return result, time.perf_counter() - started, f"{socket.gethostname()}:{os.getpid()}"


def map_shards(
    engine: Engine,
    fn: Callable[..., Any],
    shards: Sequence[Any],
    *shared: Any,
    sizes: Sequence[int] | None = None,
    on_done: Callable[[ShardRun], None] | None = None,
) -> tuple[list[Any], list[ShardRun]]:
    """:meth:`Engine.map`, each shard timed where it runs. Returns the results in shard order
    and one :class:`ShardRun` per shard; ``on_done`` sees each run as its shard completes (in
    completion order: a step's log shows progress, not one line at the end). ``sizes``: the
    users of each shard (default ``len(shard)``)."""
    sizes = [len(shard) for shard in shards] if sizes is None else list(sizes)
    results: list[Any] = [None] * len(shards)
    runs: list[ShardRun | None] = [None] * len(shards)

    def done(index: int, timed: tuple[Any, float, str]) -> None:
        results[index] = timed[0]
        runs[index] = ShardRun(index, sizes[index], round(timed[1], 3), timed[2])
        if on_done is not None:
            on_done(runs[index])

    if engine.kind == "local":
        for index, shard in enumerate(shards):
            done(index, _timed(fn, shard, *shared))
        return results, runs  # type: ignore[return-value]
    import ray

    if not ray.is_initialized():
        raise RuntimeError("map_shards with kind 'ray' outside Engine.session()")
    task = ray.remote(num_cpus=1, max_retries=0)(_timed)
    pending = {task.remote(fn, shard, *shared): i for i, shard in enumerate(shards)}
    while pending:
        (ready,), _ = ray.wait(list(pending), num_returns=1)
        done(pending.pop(ready), ray.get(ready))
    return results, runs  # type: ignore[return-value]
