"""Id maps, the normalised adjacency and model propagation against dense references."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import torch

from recs_pipeline.graph.bipartite import index_split, interaction_csr, normalized_adjacency
from recs_pipeline.models import build_model
from recs_pipeline.models.lightgcn import LightGCN
from recs_pipeline.models.mf import MatrixFactorization

AS_OF = dt.date(2024, 3, 1)
T0 = dt.datetime(2024, 2, 20, 8, 0, 0)


def insert_split(con, table, edges, as_of=AS_OF):
    rows = [
        (as_of, u, i, 1, 1.0, T0, T0 + dt.timedelta(seconds=n)) for n, (u, i) in enumerate(edges)
    ]
    con.executemany(f"INSERT INTO features.{table} VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


# Insertion order differs from sort order; "c10" sorts before "c9" as text.
TRAIN = [("zed", "c9"), ("amy", "c10"), ("bob", "c9"), ("amy", "a1"), ("zed", "a1")]
TEST = [("bob", "c10"), ("zed", "c10")]


def test_index_split_contiguous_sorted_ids(con):
    insert_split(con, "train_interactions", TRAIN)
    insert_split(con, "test_interactions", TEST)
    # A different as-of date must not leak into this one's maps.
    insert_split(con, "train_interactions", [("aaa", "b0")], as_of=AS_OF - dt.timedelta(days=1))
    graph = index_split(con, AS_OF)

    assert graph.user_ids == ["amy", "bob", "zed"]
    assert graph.item_ids == ["a1", "c10", "c9"]
    users = con.execute(
        "SELECT user_id, idx FROM features.user_index WHERE as_of_date = ? ORDER BY idx", [AS_OF]
    ).fetchall()
    items = con.execute(
        "SELECT item_id, idx FROM features.item_index WHERE as_of_date = ? ORDER BY idx", [AS_OF]
    ).fetchall()
    assert users == [("amy", 0), ("bob", 1), ("zed", 2)]
    assert items == [("a1", 0), ("c10", 1), ("c9", 2)]

    train = [
        (graph.user_ids[u], graph.item_ids[i])
        for u, i in zip(graph.train_users.tolist(), graph.train_items.tolist(), strict=True)
    ]
    assert train == sorted(TRAIN)  # sorted by user index then item index = external sort
    test = [
        (graph.user_ids[u], graph.item_ids[i])
        for u, i in zip(graph.test_users.tolist(), graph.test_items.tolist(), strict=True)
    ]
    assert sorted(test) == sorted(TEST)

    # last_ts in epoch microseconds, edge by edge.
    expected_ts = {
        edge: int((T0 + dt.timedelta(seconds=n)).replace(tzinfo=dt.UTC).timestamp() * 1_000_000)
        for n, edge in enumerate(TRAIN)
    }
    assert graph.train_last_ts.tolist() == [expected_ts[e] for e in train]
    assert graph.train_users.dtype == torch.int64

    # Re-running leaves the same maps, without duplicates.
    again = index_split(con, AS_OF)
    assert again.user_ids == graph.user_ids and again.item_ids == graph.item_ids
    n_rows = con.execute(
        "SELECT count(*) FROM features.user_index WHERE as_of_date = ?", [AS_OF]
    ).fetchone()[0]
    assert n_rows == 3

    # CSR views agree with the edge lists.
    dense = graph.train_csr().to_dense().numpy()
    reference = np.zeros((3, 3), dtype=np.float32)
    reference[graph.train_users.numpy(), graph.train_items.numpy()] = 1
    np.testing.assert_array_equal(dense, reference)
    assert graph.item_degree().tolist() == reference.sum(0).astype(int).tolist()


def dense_normalized(users, items, n_users, n_items) -> np.ndarray:
    n = n_users + n_items
    a = np.zeros((n, n))
    for u, i in zip(users, items, strict=True):
        a[u, n_users + i] = 1.0
        a[n_users + i, u] = 1.0
    degree = a.sum(1)
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.where(degree > 0, degree, 1)), 0.0)
    return inv_sqrt[:, None] * a * inv_sqrt[None, :]


def test_normalized_adjacency_matches_dense():
    # User 3 and item 4 are isolated; (0, 1) and (2, 3) appear twice.
    users = torch.tensor([0, 0, 1, 2, 0, 2, 1, 2, 0])
    items = torch.tensor([0, 1, 1, 3, 1, 3, 2, 0, 2])
    n_users, n_items = 4, 5
    adj = normalized_adjacency(users, items, n_users, n_items)
    assert adj.layout == torch.sparse_csr
    expected = dense_normalized(users.tolist(), items.tolist(), n_users, n_items)
    np.testing.assert_allclose(adj.to_dense().numpy(), expected, rtol=1e-6, atol=1e-7)
    assert not expected[3].any() and not expected[n_users + 4].any()
    # Hand check of one entry: user 0 has 3 distinct items, item 1 has 2 distinct users.
    assert adj.to_dense()[0, n_users + 1].item() == pytest.approx(1 / np.sqrt(3 * 2))


def test_normalized_adjacency_random():
    gen = torch.Generator().manual_seed(3)
    users = torch.randint(0, 12, (60,), generator=gen)
    items = torch.randint(0, 9, (60,), generator=gen)
    adj = normalized_adjacency(users, items, 13, 9)
    expected = dense_normalized(users.tolist(), items.tolist(), 13, 9)
    np.testing.assert_allclose(adj.to_dense().numpy(), expected, rtol=1e-6, atol=1e-7)


def test_interaction_csr_binary():
    users = torch.tensor([0, 0, 1, 1, 1])
    items = torch.tensor([2, 2, 0, 1, 0])
    dense = interaction_csr(users, items, 3, 3).to_dense().numpy()
    np.testing.assert_array_equal(dense, [[0, 0, 1], [1, 1, 0], [0, 0, 0]])


@pytest.mark.parametrize(
    ("layers", "alphas"),
    [(3, None), (2, [0.5, 0.3, 0.2]), (1, [0.0, 1.0]), (0, None)],
)
def test_lightgcn_propagation_matches_dense(layers, alphas):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(11)
    n_users, n_items, dim = 7, 6, 5
    users = torch.randint(0, n_users, (20,), generator=gen)
    items = torch.randint(0, n_items, (20,), generator=gen)
    adj = normalized_adjacency(users, items, n_users, n_items)
    model = LightGCN(n_users, n_items, dim=dim, layers=layers, alphas=alphas)

    a_hat = dense_normalized(users.tolist(), items.tolist(), n_users, n_items)
    e0 = model.embedding.weight.detach().double().numpy()
    weights = alphas if alphas is not None else [1.0 / (layers + 1)] * (layers + 1)
    operator = sum(w * np.linalg.matrix_power(a_hat, k) for k, w in enumerate(weights))
    expected = operator @ e0

    with torch.no_grad():
        user_emb, item_emb = model.embed(adj)
    assert user_emb.shape == (n_users, dim) and item_emb.shape == (n_items, dim)
    np.testing.assert_allclose(user_emb.numpy(), expected[:n_users], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(item_emb.numpy(), expected[n_users:], rtol=1e-5, atol=1e-6)

    # layer0 returns the free parameters of a batch, items offset by n_users.
    zu, zi = model.layer0(torch.tensor([1, 6]), torch.tensor([0, 5]))
    np.testing.assert_array_equal(zu.detach().numpy(), e0[[1, 6]].astype(np.float32))
    np.testing.assert_array_equal(zi.detach().numpy(), e0[[7, 12]].astype(np.float32))


def test_lightgcn_rejects_wrong_alpha_count_and_missing_adjacency():
    with pytest.raises(ValueError, match="alphas"):
        LightGCN(3, 3, layers=2, alphas=[0.5, 0.5])
    with pytest.raises(ValueError):
        LightGCN(3, 3).embed(None)


def test_mf_embed_returns_parameters():
    model = build_model("mf", 4, 6, dim=3)
    assert isinstance(model, MatrixFactorization)
    user_emb, item_emb = model.embed(None)
    assert user_emb is model.user.weight and item_emb is model.item.weight
    assert user_emb.shape == (4, 3) and item_emb.shape == (6, 3)
    zu, zi = model.layer0(torch.tensor([3, 0]), torch.tensor([5]))
    torch.testing.assert_close(zu, model.user.weight[[3, 0]])
    torch.testing.assert_close(zi, model.item.weight[[5]])
    with pytest.raises(ValueError, match="unknown model"):
        build_model("nope", 1, 1)


def test_lightgcn_gradient_matches_dense_autograd():
    # The symmetric sparse product's custom backward (Â·∂y) equals autograd through dense Â.
    users = torch.tensor([0, 0, 1, 2, 2, 3])
    items = torch.tensor([0, 1, 1, 0, 2, 2])
    adjacency = normalized_adjacency(users, items, 4, 3)
    model = LightGCN(4, 3, dim=5, layers=3)
    user_emb, item_emb = model.embed(adjacency)
    (user_emb.sum(1) * torch.arange(4.0)).sum().backward()
    loss_grad = torch.cat([torch.arange(4.0), torch.zeros(3)]).unsqueeze(1).expand(-1, 5)
    dense = adjacency.to_dense()
    e0 = model.embedding.weight.detach().clone().requires_grad_(True)
    out, x = e0 / 4, e0
    for _ in range(3):
        x = dense @ x
        out = out + x / 4
    (out * loss_grad).sum().backward()
    torch.testing.assert_close(model.embedding.weight.grad, e0.grad)
