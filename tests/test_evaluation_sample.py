"""model_evaluation's test-user sample: whole users, seeded, all of them when few."""

import torch

from recs_pipeline.graph.bipartite import InteractionGraph
from recs_pipeline.steps.day import sample_test_users


def graph_with_test_users(n: int) -> InteractionGraph:
    test_users = torch.arange(n).repeat_interleave(3)  # three test edges per user
    test_items = torch.arange(3 * n) % 7
    return InteractionGraph(
        [str(u) for u in range(n)],
        [str(i) for i in range(7)],
        torch.arange(n),
        torch.zeros(n, dtype=torch.long),
        torch.zeros(n, dtype=torch.long),
        test_users,
        test_items,
    )


def test_sample_keeps_whole_users_and_is_seeded():
    graph = graph_with_test_users(50)
    users, items = sample_test_users(graph, 10, seed=3)
    assert torch.unique(users).numel() == 10
    assert torch.equal(torch.bincount(users)[torch.unique(users)], torch.full((10,), 3))
    pairs = set(zip(graph.test_users.tolist(), graph.test_items.tolist(), strict=True))
    assert set(zip(users.tolist(), items.tolist(), strict=True)) <= pairs
    again, _ = sample_test_users(graph, 10, seed=3)
    other, _ = sample_test_users(graph, 10, seed=4)
    assert torch.equal(users, again) and not torch.equal(users, other)


def test_no_sample_when_there_are_few_users_or_no_cap():
    graph = graph_with_test_users(5)
    for cap in (None, 5, 100):
        users, items = sample_test_users(graph, cap, seed=0)
        assert torch.equal(users, graph.test_users) and torch.equal(items, graph.test_items)
