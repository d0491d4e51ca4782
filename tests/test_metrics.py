"""Full-ranking top-K and ranking metrics against plain-Python brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recs_pipeline.evaluation.metrics import (
    csr_rows,
    evaluate_embeddings,
    popularity_embeddings,
    ranking_metrics,
    topk_excluding,
)
from recs_pipeline.graph.bipartite import interaction_csr


def random_edges(rng: np.random.Generator, n_users: int, n_items: int, n: int):
    pairs = sorted({(int(rng.integers(n_users)), int(rng.integers(n_items))) for _ in range(n)})
    users = torch.tensor([p[0] for p in pairs], dtype=torch.long)
    items = torch.tensor([p[1] for p in pairs], dtype=torch.long)
    return users, items, set(pairs)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("chunk", [1, 3, 2048])
def test_topk_excluding_matches_brute_force(seed, chunk):
    rng = np.random.default_rng(seed)
    n_users, n_items, dim, k = 9, 14, 4, 5
    user_emb = torch.from_numpy(rng.normal(size=(n_users, dim)))
    item_emb = torch.from_numpy(rng.normal(size=(n_items, dim)))
    ex_users, ex_items, excluded = random_edges(rng, n_users, n_items, 40)
    # User 2 has at most 3 items left: its tail is -inf.
    extra = [(2, i) for i in range(3, n_items)]
    excluded |= set(extra)
    ex_users = torch.cat([ex_users, torch.tensor([p[0] for p in extra])])
    ex_items = torch.cat([ex_items, torch.tensor([p[1] for p in extra])])
    exclude = interaction_csr(ex_users, ex_items, n_users, n_items)
    users = torch.tensor([5, 2, 0, 8, 5, 3])

    scores, items = topk_excluding(user_emb, item_emb, users, exclude, k, chunk_users=chunk)
    assert scores.shape == items.shape == (len(users), k)
    full = user_emb.numpy() @ item_emb.numpy().T
    for row, u in enumerate(users.tolist()):
        masked = full[u].copy()
        for i in range(n_items):
            if (u, i) in excluded:
                masked[i] = -np.inf
        order = np.argsort(-masked, kind="stable")[:k]
        finite = np.isfinite(masked[order])
        n_ok = int(finite.sum())
        assert items[row, :n_ok].tolist() == order[:n_ok].tolist()
        np.testing.assert_allclose(scores[row, :n_ok].numpy(), masked[order][:n_ok])
        assert torch.isneginf(scores[row, n_ok:]).all()
        n_allowed = sum((u, i) not in excluded for i in range(n_items))
        assert n_ok == min(k, n_allowed)
        if u == 2:
            assert n_ok <= 3 < k  # the -inf tail is exercised
        assert not any((u, i) in excluded for i in items[row, :n_ok].tolist())


def test_topk_excluding_without_exclusion_and_k_above_catalogue():
    user_emb = torch.tensor([[1.0], [-1.0]])
    item_emb = torch.tensor([[0.5], [2.0], [-3.0]])
    scores, items = topk_excluding(user_emb, item_emb, torch.tensor([0, 1]), None, 10)
    assert items.tolist() == [[1, 0, 2], [2, 0, 1]]
    assert scores.tolist() == [[2.0, 0.5, -3.0], [3.0, -0.5, -2.0]]
    empty_scores, empty_items = topk_excluding(
        user_emb, item_emb, torch.tensor([], dtype=torch.long), None, 2
    )
    assert empty_scores.shape == empty_items.shape == (0, 2)


def test_csr_rows():
    users = torch.tensor([0, 0, 2, 3, 3, 3])
    items = torch.tensor([1, 4, 0, 0, 2, 3])
    matrix = interaction_csr(users, items, 4, 5)
    row_of, cols = csr_rows(matrix, torch.tensor([3, 1, 0]))
    assert list(zip(row_of.tolist(), cols.tolist(), strict=True)) == [
        (0, 0),
        (0, 2),
        (0, 3),
        (2, 1),
        (2, 4),
    ]


def brute_force_metrics(top, users, truth: dict[int, set[int]], k: int) -> dict[str, float]:
    per_user = {"recall": [], "ndcg": [], "precision": [], "hitrate": []}
    for row, u in enumerate(users):
        relevant = truth.get(u, set())
        if not relevant:
            continue
        ranked = top[row][:k]
        hits = [item in relevant for item in ranked]
        n_hits = sum(hits)
        dcg = sum(1.0 / math.log2(r + 2) for r, hit in enumerate(hits) if hit)
        idcg = sum(1.0 / math.log2(r + 2) for r in range(min(len(relevant), k)))
        per_user["recall"].append(n_hits / len(relevant))
        per_user["precision"].append(n_hits / k)
        per_user["hitrate"].append(1.0 if n_hits else 0.0)
        per_user["ndcg"].append(dcg / idcg)
    return {m: sum(v) / len(v) for m, v in per_user.items()}


@pytest.mark.parametrize("seed", range(5))
def test_ranking_metrics_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items, length = 25, 30, 12
    # Test edges only for users 0..19: users 20..24 have none and must be ignored.
    test_users, test_items, pairs = random_edges(rng, 20, n_items, 80)
    truth: dict[int, set[int]] = {}
    for u, i in pairs:
        truth.setdefault(u, set()).add(i)
    users = list(range(n_users))
    assert len(truth) < n_users
    top = [rng.permutation(n_items)[:length].tolist() for _ in users]
    # Plant hits so that recall and NDCG are far from zero for some users.
    for u in users[:5]:
        relevant = sorted(truth.get(u, set()))
        top[u][: len(relevant[:3])] = relevant[:3]
        top[u] = list(dict.fromkeys(top[u] + list(range(n_items))))[:length]
    ks = (1, 5, 12)
    got = ranking_metrics(
        torch.tensor(top), torch.tensor(users), test_users, test_items, n_items, ks
    )
    assert set(got) == {(m, k) for m in ("recall", "ndcg", "precision", "hitrate") for k in ks}
    for k in ks:
        expected = brute_force_metrics(top, users, truth, k)
        for metric, value in expected.items():
            assert got[(metric, k)] == pytest.approx(value, abs=1e-6), (metric, k)


def test_ranking_metrics_hand_example_and_users_without_test_items():
    # User 0: truth {2, 5}, list [2, 7, 5] -> hits at ranks 1 and 3.
    # User 1: no test items -> ignored. User 3: truth {4}, list [0, 1, 6] -> no hit.
    test_users = torch.tensor([0, 0, 3])
    test_items = torch.tensor([2, 5, 4])
    top = torch.tensor([[2, 7, 5], [2, 5, 4], [4, 0, 1]])
    users = torch.tensor([0, 1, 3])
    top[2] = torch.tensor([0, 1, 6])
    got = ranking_metrics(top, users, test_users, test_items, 8, ks=(1, 3))
    assert got[("recall", 3)] == pytest.approx((1.0 + 0.0) / 2)
    assert got[("precision", 3)] == pytest.approx((2 / 3 + 0.0) / 2)
    assert got[("hitrate", 3)] == pytest.approx(0.5)
    ndcg0 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert got[("ndcg", 3)] == pytest.approx(ndcg0 / 2)
    assert got[("recall", 1)] == pytest.approx(0.25)
    assert got[("ndcg", 1)] == pytest.approx(0.5)

    # Only users without test items: every metric is NaN rather than a misleading zero.
    none = ranking_metrics(top[1:2], users[1:2], test_users, test_items, 8, ks=(2,))
    assert all(math.isnan(v) for v in none.values())
    with pytest.raises(ValueError, match="K=4"):
        ranking_metrics(top, users, test_users, test_items, 8, ks=(4,))


def test_evaluate_embeddings_matches_brute_force():
    rng = np.random.default_rng(3)
    n_users, n_items = 12, 20
    user_emb = torch.from_numpy(rng.normal(size=(n_users, 3))).float()
    item_emb = torch.from_numpy(rng.normal(size=(n_items, 3))).float()
    tr_u, tr_i, train = random_edges(rng, n_users, n_items, 50)
    te_u, te_i, test = random_edges(rng, n_users, n_items, 40)
    keep = [(u, i) not in train for u, i in zip(te_u.tolist(), te_i.tolist(), strict=True)]
    te_u, te_i = te_u[keep], te_i[keep]
    test = {(u, i) for u, i in test if (u, i) not in train}
    got = evaluate_embeddings(
        user_emb, item_emb, interaction_csr(tr_u, tr_i, n_users, n_items), te_u, te_i, ks=(3, 5)
    )
    full = (user_emb @ item_emb.T).numpy()
    truth: dict[int, set[int]] = {}
    for u, i in test:
        truth.setdefault(u, set()).add(i)
    users = sorted(truth)
    top = []
    for u in users:
        scores = [(-full[u, i], i) for i in range(n_items) if (u, i) not in train]
        top.append([i for _, i in sorted(scores)[:5]])
    for k in (3, 5):
        expected = brute_force_metrics(top, users, truth, k)
        for metric, value in expected.items():
            assert got[(metric, k)] == pytest.approx(value, abs=1e-6)


def test_popularity_embeddings_rank_by_degree():
    degree = torch.tensor([3, 0, 7, 1, 5])
    user_emb, item_emb = popularity_embeddings(degree, n_users=3)
    assert user_emb.shape == (3, 1) and item_emb.shape == (5, 1)
    exclude = interaction_csr(torch.tensor([1]), torch.tensor([2]), 3, 5)
    scores, items = topk_excluding(user_emb, item_emb, torch.arange(3), exclude, 4)
    assert items.tolist() == [[2, 4, 0, 3], [4, 0, 3, 1], [2, 4, 0, 3]]
    assert scores[0].tolist() == [7.0, 5.0, 3.0, 1.0]
