"""A few data-parallel training steps on CUDA with NCCL, where GPUs are present.

One rank per GPU (at most ``--workers``), spawned by ``Engine(workers=N).gang`` and joined in an
NCCL process group; each rank trains on its slice of every batch with the training step of
``recs_pipeline.training.objective`` (``Batch.part`` and ``BatchObjective``, wrapped in
DistributedDataParallel on its device). Rank 0 also takes the same steps on the whole batches
with a copy of the model and no process group: the two must end with the same weights (up to
CUDA's non-deterministic sums). Prints the result and writes it to
``benchmarks/results/cuda_check.json``.

On a machine without a CUDA device or without NCCL it says so and exits 0 without writing
anything: it is a check for GPU machines, not a failure elsewhere. ``--rehearse`` runs the
same steps on the CPU with gloo (a smaller graph, nothing written) to try the script there. (``trained_model`` itself
trains on CPU tensors with gloo; this checks that the step runs on GPUs under NCCL.)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import sys
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from benchmarks._common import write_results
from recs_pipeline.graph.bipartite import normalized_adjacency
from recs_pipeline.graph.negatives import edge_keys, uniform_negatives
from recs_pipeline.infra.engine import Engine, free_port
from recs_pipeline.models import build_model
from recs_pipeline.training.losses import bpr_loss
from recs_pipeline.training.objective import Batch, BatchObjective

# Agreement expected between the data-parallel and the single-device weights.
TOLERANCE = 1e-4


@dataclasses.dataclass(frozen=True)
class Check:
    users: int = 20_000
    items: int = 10_000
    edges: int = 400_000
    batch: int = 8192
    steps: int = 20
    seed: int = 0


def unavailable() -> str | None:
    """Why this machine cannot run the check, or None."""
    if not torch.cuda.is_available():
        return f"no CUDA device visible to torch {torch.__version__} (CUDA {torch.version.cuda})"
    if not dist.is_nccl_available():
        return f"torch {torch.__version__} was built without NCCL"
    return None


def on_device(batch: Batch, device: torch.device) -> Batch:
    def move(t):
        return None if t is None else t.to(device, non_blocking=True)

    return dataclasses.replace(
        batch,
        users=move(batch.users),
        items=move(batch.items),
        weights=move(batch.weights),
        negatives=move(batch.negatives),
        shared=move(batch.shared),
    )


def check_rank(rank: int, world: int, rendezvous: str | None, check: Check, backend: str):
    """One rank: NCCL on GPU ``rank``, or (``--rehearse``) gloo on the CPU."""
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend,
        init_method=rendezvous or f"tcp://127.0.0.1:{free_port()}",  # one rank: in this process
        rank=rank,
        world_size=world,
        timeout=dt.timedelta(minutes=5),
        device_id=device if device.type == "cuda" else None,
    )
    try:
        return run_steps(rank, world, device, check)
    finally:
        dist.destroy_process_group()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        synchronize(device)


def run_steps(rank: int, world: int, device: torch.device, check: Check) -> dict | None:
    generator = torch.Generator().manual_seed(check.seed)  # the same draws on every rank
    users = torch.randint(0, check.users, (check.edges,), generator=generator)
    items = (torch.rand(check.edges, generator=generator) ** 2 * check.items).long()
    adjacency = normalized_adjacency(users, items, check.users, check.items).to(device)
    positives = edge_keys(users, items, check.items)
    torch.manual_seed(check.seed)
    model = build_model("lightgcn", check.users, check.items, dim=64, layers=3).to(device)
    reference = copy.deepcopy(model) if rank == 0 else None
    parallel = DistributedDataParallel(
        BatchObjective(model, adjacency, bpr_loss, 1e-4, world=world),
        device_ids=[device.index] if device.type == "cuda" else None,
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    if reference is not None:
        single = BatchObjective(reference, adjacency, bpr_loss, 1e-4)
        reference_optimiser = torch.optim.Adam(reference.parameters(), lr=1e-2)
    seconds = []
    for _ in range(check.steps):
        idx = torch.randint(0, check.edges, (check.batch,), generator=generator)
        u = users[idx]
        negatives = uniform_negatives(u, check.items, 1, positives, generator)
        batch = on_device(Batch(u, items[idx], None, negatives, None, total=u.numel()), device)
        synchronize(device)
        started = time.perf_counter()
        loss = parallel(batch.part(rank, world))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        synchronize(device)
        seconds.append(time.perf_counter() - started)
        if reference is not None:
            reference_loss = single(batch)
            reference_optimiser.zero_grad(set_to_none=True)
            reference_loss.backward()
            reference_optimiser.step()
    if reference is None:
        return None
    mine, theirs = model.state_dict(), reference.state_dict()
    difference = max(float((mine[k] - theirs[k]).abs().max()) for k in theirs)
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "max_abs_param_diff": difference,
        "agrees": difference <= TOLERANCE,
        "median_step_seconds": sorted(seconds)[len(seconds) // 2],
        "first_step_seconds": seconds[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cuda_check", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--workers", type=int, default=2, help="at most this many GPUs")
    parser.add_argument("--steps", type=int, default=Check.steps)
    parser.add_argument(
        "--rehearse",
        action="store_true",
        help="run the same steps on the CPU with gloo and a small graph, writing nothing"
        " (to try this script on a machine without GPUs)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.rehearse:
        backend, world = "gloo", args.workers
        check = Check(users=2000, items=1000, edges=40_000, batch=1024, steps=args.steps)
    else:
        reason = unavailable()
        if reason:
            print(f"cuda_check: skipped, {reason}; nothing to check on this machine.")
            return 0
        backend, world = "nccl", max(1, min(args.workers, torch.cuda.device_count()))
        check = Check(steps=args.steps)
    print(f"cuda_check: {world} rank(s), {backend}, {check.steps} steps of {check.batch} rows")
    started = time.perf_counter()
    result = Engine(workers=world).gang(check_rank, check, backend)[0]
    result.update(
        world=world,
        backend=backend,
        nccl_version=str(torch.cuda.nccl.version()) if backend == "nccl" else None,
        check=dataclasses.asdict(check),
        wall_seconds=time.perf_counter() - started,
    )
    print(
        f"cuda_check: {'ok' if result['agrees'] else 'MISMATCH'} on {world} x {result['device']}:"
        f" weights within {result['max_abs_param_diff']:.2e} of one device's,"
        f" {result['median_step_seconds'] * 1e3:.1f} ms per step"
    )
    if not args.rehearse:
        print(f"wrote {write_results('cuda_check', result, args.out)}")
    return 0 if result["agrees"] else 1


if __name__ == "__main__":
    sys.exit(main())
