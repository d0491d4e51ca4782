"""Warm starts across days and resumable training."""

import io

import pytest
import torch

from recs_pipeline.graph.bipartite import InteractionGraph
from recs_pipeline.models import build_model, checkpoint
from recs_pipeline.training import TrainConfig, train_model
from recs_pipeline.training.init import WarmStart, apply_warm_start, id_mapping
from tests.test_train import two_communities


def test_id_mapping_finds_previous_indices_and_marks_new_ids():
    previous = ["b", "d", "a", "x"]
    current = ["a", "b", "c", "d", "e"]
    assert id_mapping(previous, current).tolist() == [2, 0, -1, 1, -1]
    assert id_mapping([], ["a"]).tolist() == [-1]


@pytest.mark.parametrize("name", ["lightgcn", "mf", "ngcf"])
def test_warm_start_maps_node_rows_by_id_and_copies_shared_weights(name):
    torch.manual_seed(0)
    old = (
        build_model(name, 3, 2, dim=4, layers=2) if name != "mf" else build_model(name, 3, 2, dim=4)
    )
    # Day D: users u0 (new), u1 (was 2), u2 (was 0), u3 (new); items i0 (was 1), i1 (new).
    user_map, item_map = torch.tensor([-1, 2, 0, -1]), torch.tensor([1, -1])
    params = {"dim": 4} if name == "mf" else {"dim": 4, "layers": 2}
    new = build_model(name, 4, 2, **params)
    fresh = {k: v.clone() for k, v in new.state_dict().items()}
    counts = apply_warm_start(new, WarmStart(checkpoint(old), user_map, item_map))
    assert counts == {"warm_users": 2, "new_users": 2, "warm_items": 1, "new_items": 1}

    old_u, old_i = old.layer0(torch.arange(3), torch.arange(2))
    new_u, new_i = new.layer0(torch.arange(4), torch.arange(2))
    fresh_model = build_model(name, 4, 2, **params)
    fresh_model.load_state_dict(fresh)
    fresh_u, fresh_i = fresh_model.layer0(torch.arange(4), torch.arange(2))
    torch.testing.assert_close(new_u[1], old_u[2])
    torch.testing.assert_close(new_u[2], old_u[0])
    torch.testing.assert_close(new_i[0], old_i[1])
    torch.testing.assert_close(new_u[[0, 3]], fresh_u[[0, 3]])  # new users keep their init
    torch.testing.assert_close(new_i[1], fresh_i[1])
    for key, value in old.state_dict().items():
        if key not in new.node_tables:  # e.g. NGCF's W1, W2: copied as they are
            torch.testing.assert_close(new.state_dict()[key], value)


def test_incompatible_previous_model_is_ignored_with_a_log_line():
    users, items, last_ts = two_communities()
    graph = InteractionGraph.from_edges(40, 40, users, items, last_ts)
    previous = build_model("lightgcn", 40, 40, dim=8, layers=2)
    warm = WarmStart(checkpoint(previous), torch.arange(40), torch.arange(40), source="yesterday")
    lines: list[str] = []
    config = TrainConfig(dim=16, layers=2, epochs=1, batch_size=128, val_users=40, eval_every=1)
    result = train_model(graph, config, log=lines.append, warm_start=warm)
    assert result.warm_start is None
    assert any("warm start from yesterday ignored" in line and "dim" in line for line in lines)


def test_warm_start_from_a_trained_model_starts_at_its_quality():
    """Same graph, identity id maps: epoch 1 of the warm run already validates about as well
    as the cold run's best, while a cold run's first epoch is far below it."""
    users, items, last_ts = two_communities()
    graph = InteractionGraph.from_edges(40, 40, users, items, last_ts)
    config = TrainConfig(
        dim=16, layers=2, epochs=10, batch_size=128, lr=0.05, val_users=40, val_k=10, eval_every=1
    )
    cold = train_model(graph, config, log=lambda _: None)
    warm = WarmStart(checkpoint(cold.model), torch.arange(40), torch.arange(40))
    one_epoch = TrainConfig(**{**config.__dict__, "epochs": 1})
    warmed = train_model(graph, one_epoch, log=lambda _: None, warm_start=warm)
    assert warmed.warm_start == {"warm_users": 40, "new_users": 0, "warm_items": 40, "new_items": 0}
    assert warmed.history[0]["val_recall"] >= cold.best_val_recall - 0.05
    assert cold.history[0]["val_recall"] < cold.best_val_recall


class MemoryProgress:
    """A progress store that serialises like the file-backed one (no shared tensors)."""

    def __init__(self):
        self.blob: bytes | None = None
        self.saves: list[int] = []

    def load(self):
        # weights_only as the artifact store loads it: the state must be tensors and plain data.
        return None if self.blob is None else torch.load(io.BytesIO(self.blob), weights_only=True)

    def save(self, state):
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.blob = buffer.getvalue()
        self.saves.append(state["epoch"])


class Killed(Exception):
    pass


@pytest.mark.parametrize("model", ["lightgcn", "ngcf"])
def test_interrupted_training_resumes_to_the_uninterrupted_result(model):
    users, items, last_ts = two_communities()
    graph = InteractionGraph.from_edges(40, 40, users, items, last_ts)
    config = TrainConfig(
        model=model,
        dim=8,
        layers=2,
        epochs=8,
        batch_size=64,
        lr=0.05,
        val_users=40,
        val_k=10,
        eval_every=2,
        patience=100,
        plateau_decay=0.5,
        max_hard_negatives=2,
    )
    pools = torch.randint(0, 40, (40, 5), generator=torch.Generator().manual_seed(1))
    whole = train_model(graph, config, hard_pools=pools, log=lambda _: None)

    progress = MemoryProgress()

    def die_in_epoch_5(line: str) -> None:
        if line.startswith("epoch 5:"):
            raise Killed

    with pytest.raises(Killed):
        train_model(
            graph,
            config,
            hard_pools=pools,
            log=die_in_epoch_5,
            progress=progress,
        )
    assert progress.saves == [2, 4]
    lines: list[str] = []
    resumed = train_model(
        graph,
        config,
        hard_pools=pools,
        log=lines.append,
        progress=progress,
    )
    assert resumed.resumed_from_epoch == 4
    assert lines[0].startswith("resumed from epoch 4")
    assert [line.split(":")[0] for line in lines[1:]] == [f"epoch {e}" for e in range(5, 9)]
    untimed = lambda history: [  # noqa: E731  (timings differ run to run)
        {k: v for k, v in record.items() if not k.endswith("_seconds")} for record in history
    ]
    assert untimed(resumed.history) == untimed(whole.history)
    assert resumed.best_epoch == whole.best_epoch
    for key, value in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0)


def test_progress_of_another_config_is_not_resumed():
    users, items, last_ts = two_communities()
    graph = InteractionGraph.from_edges(40, 40, users, items, last_ts)
    config = TrainConfig(dim=8, layers=2, epochs=2, batch_size=128, val_users=40, eval_every=1)
    progress = MemoryProgress()
    train_model(graph, config, log=lambda _: None, progress=progress)
    lines: list[str] = []
    other = TrainConfig(**{**config.__dict__, "lr": 0.5})
    result = train_model(graph, other, log=lines.append, progress=progress)
    assert result.resumed_from_epoch == 0
    assert "starting over" in lines[0]


def test_a_run_that_had_already_stopped_does_not_train_further_on_resume():
    users, items, last_ts = two_communities()
    graph = InteractionGraph.from_edges(40, 40, users, items, last_ts)
    config = TrainConfig(
        dim=8, layers=2, epochs=6, batch_size=128, val_users=40, eval_every=1, lr=0.0, patience=1
    )
    progress = MemoryProgress()
    first = train_model(graph, config, log=lambda _: None, progress=progress)
    assert len(first.history) == 2  # lr 0: no gain at the second check, patience 1
    lines: list[str] = []
    again = train_model(graph, config, log=lines.append, progress=progress)
    assert again.history == first.history
    assert lines == [lines[0]] and lines[0].startswith("resumed from epoch 2")


def test_warm_start_keeps_todays_item_features():
    yesterday = build_model("pinsage", 3, 2, dim=4, layers=1, item_features=torch.ones(2, 3))
    today_features = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    today = build_model("pinsage", 3, 2, dim=4, layers=1, item_features=today_features)
    identity = torch.arange(3), torch.arange(2)
    apply_warm_start(today, WarmStart(checkpoint(yesterday), *identity))
    torch.testing.assert_close(today.item_features, today_features)
    torch.testing.assert_close(today.embedding.weight, yesterday.embedding.weight)
    torch.testing.assert_close(today.feature.weight, yesterday.feature.weight)
