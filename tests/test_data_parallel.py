"""Data-parallel training: worker processes (gloo) that split every batch end where one
process ends, and a gang whose rank fails stops instead of hanging. (On Ray, through the
pipeline: tests/test_data_parallel_pipeline.py.)"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from recs_pipeline.graph.bipartite import InteractionGraph, normalized_adjacency
from recs_pipeline.graph.negatives import HardNegativeConfig, hard_negative_pools
from recs_pipeline.infra.artifacts import ArtifactProgress, UrlArtifactStore
from recs_pipeline.infra.engine import Engine
from recs_pipeline.models import build_model
from recs_pipeline.training import TrainConfig, train_model
from recs_pipeline.training.data_parallel import train_data_parallel
from recs_pipeline.training.losses import bpr_loss
from recs_pipeline.training.objective import Batch, BatchObjective
from tests.test_train import two_communities

N = 40  # users and items of two_communities
# 280 fit edges in batches of 101: 101, 101, 78 rows, so the two ranks' parts are unequal
# (51 and 50 rows) and the loss shares must be weighted by rows, not averaged.
CONFIGS = {
    "lightgcn_hard_negatives": TrainConfig(
        model="lightgcn", dim=16, layers=2, epochs=4, batch_size=101, lr=0.05, eval_every=2,
        val_users=N, val_k=10, max_hard_negatives=2, threads=1,
    ),
    # Dropout, shared negatives (whose L2 term a batch counts once: l2 large enough to see it),
    # softmax, edge weights, a plateau restart.
    "ngcf_shared_negatives": TrainConfig(
        model="ngcf", dim=8, layers=2, epochs=4, batch_size=101, eval_every=1, val_users=N,
        uniform_negatives=0, shared_negatives=6, loss="softmax", plateau_decay=0.5,
        weighted=True, l2=0.1, threads=1,
    ),
}  # fmt: skip


def inputs():
    users, items, last_ts = two_communities()
    pools = hard_negative_pools(
        users, items, N, N, HardNegativeConfig(band_start=0.3, band_end=0.6, pool_size=8)
    )
    weights = (torch.arange(users.numel()) % 4 + 1).float()
    return InteractionGraph.from_edges(N, N, users, items, last_ts, weights), {"hard_pools": pools}


def assert_same_training(parallel, single):
    for name, tensor in single.model.state_dict().items():
        torch.testing.assert_close(parallel.model.state_dict()[name], tensor, atol=1e-5, rtol=1e-4)
    assert [h["epoch"] for h in parallel.history] == [h["epoch"] for h in single.history]
    for mine, theirs in zip(parallel.history, single.history, strict=True):
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-5)
        assert mine.get("val_recall") == pytest.approx(theirs.get("val_recall"))
        assert mine.get("lr") == theirs.get("lr")
    assert (parallel.best_epoch, parallel.best_val_recall) == (
        single.best_epoch,
        pytest.approx(single.best_val_recall),
    )


def whole_and_parts(rows: int, world: int):
    """A batch of ``rows`` with per-row and shared negatives and weights; the whole batch's
    objective and gradient, and the replicas' mean of their parts' (what DDP computes)."""
    generator = torch.Generator().manual_seed(rows)
    model = build_model("lightgcn", N, N, dim=8, layers=2)
    users, items, _ = two_communities()
    adjacency = normalized_adjacency(users, items, N, N)
    batch = Batch(
        users=torch.randint(0, N, (rows,), generator=generator),
        items=torch.randint(0, N, (rows,), generator=generator),
        weights=torch.rand(rows, generator=generator),
        negatives=torch.randint(0, N, (rows, 3), generator=generator),
        shared=torch.randint(0, N, (4,), generator=generator),
        total=rows,
    )

    def objective_and_gradient(world_size: int, part: Batch):
        model.zero_grad()
        value = BatchObjective(model, adjacency, bpr_loss, 0.5, world=world_size)(part)
        value.backward()
        return value.detach(), model.embedding.weight.grad.clone()

    whole = objective_and_gradient(1, batch)
    parts = [objective_and_gradient(world, batch.part(r, world)) for r in range(world)]
    mean = tuple(sum(p[i] for p in parts) / world for i in (0, 1))
    return batch, whole, mean


@pytest.mark.parametrize(("rows", "world"), [(7, 2), (7, 3), (1, 2)])
def test_the_mean_of_the_parts_objectives_and_gradients_is_the_whole_batch(rows, world):
    batch, whole, mean = whole_and_parts(rows, world)
    parts = [batch.part(r, world) for r in range(world)]
    assert torch.equal(torch.cat([p.users for p in parts]), batch.users)  # disjoint, in order
    assert [p.shared_l2 for p in parts] == [True] + [False] * (world - 1)  # L2 of shared once
    torch.testing.assert_close(mean[0], whole[0])
    torch.testing.assert_close(mean[1], whole[1])


class Killed(Exception):
    pass


def die_in_epoch_3(line: str) -> None:
    if line.startswith("epoch 3:"):
        raise Killed


@pytest.mark.parametrize("name", CONFIGS)
def test_two_worker_processes_end_with_the_single_process_parameters(name, tmp_path):
    graph, kwargs = inputs()
    config = CONFIGS[name]
    single = train_model(graph, config, log=lambda _: None, **kwargs)
    resuming = name == "lightgcn_hard_negatives"
    if resuming:  # the workers resume a single process's run killed after its epoch-2 check
        kwargs["progress"] = ArtifactProgress(UrlArtifactStore(tmp_path), "2026-03-01")
        with pytest.raises(Killed):
            train_model(graph, config, log=die_in_epoch_3, **kwargs)
    lines: list[str] = []
    parallel = train_data_parallel(Engine(workers=2), graph, config, log=lines.append, **kwargs)
    assert_same_training(parallel, single)
    if config.plateau_decay != 1.0:
        # A restart from the best state at a lower learning rate happened.
        assert len({h["lr"] for h in single.history}) > 1
    epochs = [line for line in lines if line.startswith("epoch ")]  # rank 0's log lines
    assert len(epochs) == config.epochs - 2 * resuming
    if resuming:
        assert lines[0].startswith("resumed from epoch 2") and parallel.resumed_from_epoch == 2
        assert kwargs["progress"].load()["epoch"] == 4  # rank 0 saved its checks


def give_up_on_rank_1(rank: int, world: int, rendezvous: str) -> None:
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    if rank == 1:
        raise ValueError("rank 1 gives up")
    dist.barrier()  # rank 0 waits here for a peer that is gone


def test_a_failing_rank_stops_its_gang_instead_of_leaving_the_others_waiting():
    with pytest.raises(RuntimeError, match="(?s)gang rank 1 of 2 failed.*rank 1 gives up"):
        Engine(workers=2).gang(give_up_on_rank_1)
