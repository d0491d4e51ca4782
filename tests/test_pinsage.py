"""PinSAGE: random-walk neighbourhoods, the convolution against a hand computation, where its
gradients go, cold items, checkpoints and a short training run."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from recs_pipeline.evaluation.metrics import popularity_embeddings, ranking_metrics, topk_excluding
from recs_pipeline.evaluation.scoring import score_function
from recs_pipeline.graph.bipartite import (
    InteractionGraph,
    bipartite_csr,
    interaction_csr,
    normalized_adjacency,
)
from recs_pipeline.graph.negatives import random_walk_visits
from recs_pipeline.models import build_model, checkpoint, restore
from recs_pipeline.models.pinsage import (
    Neighbourhoods,
    importance_neighbourhoods,
    top_visited,
)
from recs_pipeline.training import TrainConfig, train_model
from recs_pipeline.training.validation import validation_split
from tests.test_train import two_communities

# 4 users, 4 items; item 3 has no edges (a cold item).
USERS = torch.tensor([0, 0, 1, 1, 2, 2, 3])
ITEMS = torch.tensor([0, 1, 1, 2, 0, 2, 2])
N_USERS, N_ITEMS = 4, 4


def features(n_items: int = N_ITEMS) -> torch.Tensor:
    return torch.arange(n_items * 3, dtype=torch.float32).reshape(n_items, 3).sin()


def test_top_visited_keeps_the_most_visited_other_nodes():
    # Seed 0 visited itself 9 times (never its own neighbour), 4 seven times, 3 five times.
    visits = torch.sparse_coo_tensor(
        torch.tensor([[0, 0, 0, 0, 1], [0, 3, 4, 5, 2]]),
        torch.tensor([9.0, 5.0, 7.0, 1.0, 3.0]),
        (3, 6),
    )
    nodes, counts = top_visited(visits, torch.tensor([0, 1, 2]), 2, torch.Generator())
    assert nodes.tolist() == [[4, 3], [2, -1], [-1, -1]]
    assert counts.tolist() == [[7.0, 5.0], [3.0, 0.0], [0.0, 0.0]]


def test_neighbourhoods_are_the_top_t_of_the_walk_visits_and_weights_sum_to_one():
    generator = torch.Generator().manual_seed(3)
    users = torch.randint(0, 9, (30,), generator=generator)
    items = torch.randint(0, 7, (30,), generator=generator)
    items[items == 6] = 5  # item 6 has no edges
    n_users, n_items, size = 9, 7, 4
    graph = importance_neighbourhoods(
        users, items, n_users, n_items, size, 16, 6, 0.4, torch.Generator().manual_seed(1)
    )
    # The same walks again (one batch, same generator stream): the raw visit counts.
    n = n_users + n_items
    visits = random_walk_visits(
        bipartite_csr(users, items, n_users, n_items),
        torch.arange(n),
        16,
        6,
        0.4,
        torch.Generator().manual_seed(1),
        slice(0, n),
    ).to_dense()
    for v in range(n):
        others = visits[v].clone()
        others[v] = 0
        chosen = [int(u) for u in graph.nodes[v] if u >= 0]
        assert len(chosen) == len(set(chosen)) == min(size, int((others > 0).sum()))
        assert v not in chosen
        assert graph.visits[v, : len(chosen)].tolist() == others[chosen].tolist()
        rest = others.clone()
        rest[chosen] = 0
        if chosen:  # no node left out was visited more often than one kept
            assert others[chosen].min() >= rest.max()
            torch.testing.assert_close(graph.weights[v].sum(), torch.tensor(1.0))
            torch.testing.assert_close(
                graph.weights[v, : len(chosen)], others[chosen] / others[chosen].sum()
            )
        else:
            assert graph.weights[v].abs().sum() == 0
    assert (graph.nodes[n_users + 6] == -1).all()  # the isolated item


def test_neighbourhoods_follow_personalised_pagerank_with_many_walks():
    # A path u0 – i0 – u1 – i1 – u2: from u0, i0 is visited most, then u1, then i1.
    users, items = torch.tensor([0, 1, 1, 2]), torch.tensor([0, 0, 1, 1])
    graph = importance_neighbourhoods(users, items, 3, 2, 3, 2000, 10, 0.3, torch.Generator())
    assert graph.nodes[0].tolist() == [3, 1, 4]  # u0: i0, u1, i1 (joint indices)
    assert graph.nodes[4].tolist()[:2] == [1, 2]  # i1: its users u1, u2 first
    assert (graph.weights[:, :-1] >= graph.weights[:, 1:]).all()  # most visited first


def hand_model():
    """One user and two items, dim 2: Q = I, q = 0, W = [I I], w = 0, by hand below."""
    model = build_model("pinsage", 1, 2, dim=2, layers=1)
    with torch.no_grad():
        model.q[0].weight.copy_(torch.eye(2))
        model.q[0].bias.zero_()
        model.w[0].weight.copy_(torch.cat([torch.eye(2), torch.eye(2)], dim=1))
        model.w[0].bias.zero_()
    neighbourhoods = Neighbourhoods(
        nodes=torch.tensor([[1, 2], [0, -1], [-1, -1]]),
        weights=torch.tensor([[0.25, 0.75], [1.0, 0.0], [0.0, 0.0]]),
        visits=torch.tensor([[1.0, 3.0], [5.0, 0.0], [0.0, 0.0]]),
    )
    model.set_neighbourhoods(neighbourhoods, torch.ones(3, dtype=torch.bool))
    return model


def test_convolution_matches_a_hand_computation():
    model = hand_model()
    h = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, -1.0]])
    got = model.convolve(0, h).detach()
    # node 0: pooled = 0.25·ReLU(0, 2) + 0.75·ReLU(3, −1) = (2.25, 0.5); h0 + pooled = (3.25, 0.5)
    # node 1: pooled = ReLU(1, 0) = (1, 0); h1 + pooled = (1, 2)
    # node 2: no neighbours, pooled = 0; ReLU(3, −1) = (3, 0)
    expected = torch.tensor(
        [
            [3.25 / math.hypot(3.25, 0.5), 0.5 / math.hypot(3.25, 0.5)],
            [1 / math.sqrt(5), 2 / math.sqrt(5)],
            [1.0, 0.0],
        ]
    )
    torch.testing.assert_close(got, expected)


def test_convolution_matches_the_formula_per_node_on_walk_neighbourhoods():
    torch.manual_seed(0)
    model = build_model("pinsage", N_USERS, N_ITEMS, dim=5, layers=2, neighbours=3, walks=8)
    model.attach_graph(USERS, ITEMS)
    h = torch.randn(N_USERS + N_ITEMS, 5, requires_grad=True)
    got = model.convolve(1, h)
    q, w = model.q[1], model.w[1]
    expected = []
    for v in range(N_USERS + N_ITEMS):
        pooled = torch.zeros(5)
        for u, weight in zip(
            model.neighbourhoods.nodes[v].tolist(),
            model.neighbourhoods.weights[v].tolist(),
            strict=True,
        ):
            if u >= 0:
                pooled = pooled + weight * torch.relu(q(h[u]))
        out = torch.relu(w(torch.cat([h[v], pooled])))
        expected.append(out / out.norm())
    expected = torch.stack(expected)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)  # float32, two summation orders
    # The sparse product's backward (precomputed transpose) against autograd of the loop.
    probe = torch.randn_like(got)
    (grad,) = torch.autograd.grad((got * probe).sum(), h)
    (reference,) = torch.autograd.grad((expected * probe).sum(), h)
    torch.testing.assert_close(grad, reference, rtol=1e-4, atol=1e-5)


def test_gradients_reach_every_weight_but_not_the_ids_of_nodes_without_edges():
    torch.manual_seed(1)
    model = build_model("pinsage", N_USERS, N_ITEMS, dim=6, layers=2, item_features=features())
    model.attach_graph(USERS, ITEMS)
    model.eval()  # no cold-start dropout: every item with edges uses its id
    model.g2.bias.requires_grad_(False)  # a frozen parameter gets nothing
    user_emb, item_emb = model.embed(None)
    (user_emb @ item_emb.T * torch.randn(N_USERS, N_ITEMS)).sum().backward()
    for name, parameter in model.named_parameters():
        if name == "g2.bias":
            assert parameter.grad is None
        elif name != "embedding.weight":
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    grad = model.embedding.weight.grad
    assert (grad[: N_USERS + 3].abs().sum(1) > 0).all()  # every node with edges
    assert grad[N_USERS + 3].abs().sum() == 0  # the cold item's id embedding is unused
    assert "item_features" not in dict(model.named_parameters())
    assert not model.item_features.requires_grad


def test_cold_item_embedding_comes_from_its_features():
    torch.manual_seed(2)
    x = features()
    model = build_model("pinsage", N_USERS, N_ITEMS, dim=6, layers=2, item_features=x)
    model.attach_graph(USERS, ITEMS)
    with torch.no_grad():
        cold = model.embed(None)[1][3].clone()
        assert cold.abs().sum() > 0
        model.embedding.weight[N_USERS + 3].normal_()  # its (untrained) id plays no part
        torch.testing.assert_close(model.embed(None)[1][3], cold)
        model.item_features[3] = x[0]  # the features of item 0: another embedding
        moved = model.embed(None)[1][3]
        assert not torch.allclose(moved, cold)
    # Without features every cold item looks the same: the embedding of h⁽⁰⁾ = 0.
    plain = build_model("pinsage", N_USERS, N_ITEMS + 1, dim=6, layers=2)
    plain.attach_graph(USERS, ITEMS)
    with torch.no_grad():
        items = plain.embed(None)[1]
    torch.testing.assert_close(items[3], items[4])


def test_cold_start_dropout_treats_items_as_cold_in_training_only():
    torch.manual_seed(4)
    x = features()
    x[3] = x[0]  # the cold item 3 has the features of item 0
    model = build_model("pinsage", N_USERS, N_ITEMS, dim=6, layers=2, item_features=x)
    model.attach_graph(USERS, ITEMS)
    model.cold_dropout = 1.0  # every item cold in every training step
    user_emb, item_emb = model.embed(None)
    torch.testing.assert_close(item_emb[0], item_emb[3])  # item 0 saw only its features
    (user_emb @ item_emb.T).sum().backward()
    assert model.embedding.weight.grad[N_USERS:].abs().sum() == 0
    assert model.embedding.weight.grad[:N_USERS].abs().sum() > 0
    model.eval()
    with torch.no_grad():
        item_emb = model.embed(None)[1]
    assert not torch.allclose(item_emb[0], item_emb[3])  # scoring uses ids and neighbours


def test_checkpoint_restore_and_score_function_give_the_same_scores():
    torch.manual_seed(3)
    model = build_model("pinsage", N_USERS, N_ITEMS, dim=4, layers=2, item_features=features())
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    model.attach_graph(USERS, ITEMS)
    model.eval()
    with torch.no_grad():
        user_emb, item_emb = model.embed(None)
    buffer = io.BytesIO()
    torch.save(checkpoint(model), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=False)
    assert state["init_params"]["n_features"] == 3
    torch.testing.assert_close(state["state_dict"]["item_features"], features())
    again = restore(state)
    again.attach_graph(USERS, ITEMS)  # same edges and walk seed: same neighbourhoods
    with torch.no_grad():
        user_again, item_again = again.embed(None)
    torch.testing.assert_close(user_again, user_emb)
    torch.testing.assert_close(item_again, item_emb)
    graph = InteractionGraph(
        user_ids=[f"u{u}" for u in range(N_USERS)],
        item_ids=[f"i{i}" for i in range(N_ITEMS)],
        train_users=USERS,
        train_items=ITEMS,
        train_last_ts=torch.zeros(USERS.numel(), dtype=torch.long),
        test_users=USERS[:0],
        test_items=ITEMS[:0],
    )
    scores = score_function(state, graph, normalized_adjacency(USERS, ITEMS, N_USERS, N_ITEMS))
    torch.testing.assert_close(scores(torch.tensor([2, 0])), user_emb[[2, 0]] @ item_emb.T)


def test_embedding_needs_an_attached_graph():
    model = build_model("pinsage", N_USERS, N_ITEMS, dim=4)
    with pytest.raises(ValueError, match="attach_graph"):
        model.embed(None)


@pytest.mark.parametrize("with_features", [False, True])
def test_short_training_run_beats_popularity(with_features):
    n_users = n_items = 40
    users, items, last_ts = two_communities(seed=2)
    # Features: the item's community, one-hot, plus noise.
    x = torch.zeros(n_items, 2)
    x[:20, 0] = x[20:, 1] = 1.0
    x = x + 0.1 * torch.randn(n_items, 2, generator=torch.Generator().manual_seed(0))
    config = TrainConfig(
        model="pinsage",
        dim=16,
        layers=1,
        epochs=8,
        batch_size=64,
        lr=0.01,
        eval_every=1,
        patience=100,
        val_users=n_users,
        val_k=10,
    )
    result = train_model(
        InteractionGraph.from_edges(n_users, n_items, users, items, last_ts),
        config,
        log=lambda _: None,
        item_features=x if with_features else None,
    )
    assert result.model.n_features == (2 if with_features else 0)
    val_mask = validation_split(
        users, last_ts, n_users, config.val_users, torch.Generator().manual_seed(config.seed)
    )
    fit_i, val_u, val_i = items[~val_mask], users[val_mask], items[val_mask]
    fit_csr = interaction_csr(users[~val_mask], fit_i, n_users, n_items)
    val_users = torch.unique(val_u)
    pop_user, pop_item = popularity_embeddings(torch.bincount(fit_i, minlength=n_items), n_users)
    _, top = topk_excluding(pop_user, pop_item, val_users, fit_csr, 10)
    popularity = ranking_metrics(top, val_users, val_u, val_i, n_items, (10,))[("recall", 10)]
    assert result.best_val_recall > popularity + 0.2
    assert np.isfinite([h["loss"] for h in result.history]).all()


def test_item_features_only_for_models_that_take_them():
    users, items, last_ts = two_communities()
    config = TrainConfig(model="lightgcn", dim=4, layers=1, epochs=1, val_users=0)
    with pytest.raises(ValueError, match="item features"):
        train_model(
            InteractionGraph.from_edges(40, 40, users, items, last_ts),
            config,
            item_features=torch.ones(40, 2),
        )
    with pytest.raises(ValueError, match="item_features"):
        build_model("pinsage", 3, 5, item_features=torch.ones(4, 2))
