"""Random walk with restart, hard-negative pools, uniform negatives, the curriculum and edge
sets, each against a dense or plain-Python reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recs_pipeline.graph.negatives import (
    HardNegativeConfig,
    curriculum_hard_count,
    edge_keys,
    hard_negative_pools,
    is_edge,
    personalized_pagerank,
    random_walk_visits,
    uniform_negatives,
)


def dense_ppr(a: np.ndarray, seed: int, restart: float) -> np.ndarray:
    """π = r (I − (1−r) A D⁻¹)⁻¹ e_s (A symmetric, D its degrees; isolated columns zero)."""
    n = a.shape[0]
    degree = a.sum(0)
    inv = np.where(degree > 0, 1.0 / np.where(degree > 0, degree, 1.0), 0.0)
    transition = a * inv[None, :]
    e = np.zeros(n)
    e[seed] = 1.0
    return restart * np.linalg.solve(np.eye(n) - (1 - restart) * transition, e)


def bipartite_dense(users, items, n_users, n_items) -> np.ndarray:
    n = n_users + n_items
    a = np.zeros((n, n))
    a[users, n_users + items] = 1.0
    a[n_users + items, users] = 1.0
    return a


def test_personalized_pagerank_matches_closed_form_weighted():
    rng = np.random.default_rng(0)
    n = 12
    upper = np.triu(rng.random((n, n)) * (rng.random((n, n)) < 0.4), 1)
    a = upper + upper.T
    a[0, 1] = a[1, 0] = 2.5  # make sure the seeds below are connected
    a[5, 6] = a[6, 5] = 0.7
    a[:, 11] = a[11, :] = 0.0  # an isolated node
    seeds = torch.tensor([0, 5, 3])
    restart = 0.25
    adjacency = torch.from_numpy(a).float().to_sparse_csr()
    pi = personalized_pagerank(adjacency, seeds, restart=restart, iterations=150)
    assert pi.shape == (n, 3)
    for j, s in enumerate(seeds.tolist()):
        expected = dense_ppr(a, s, restart)
        np.testing.assert_allclose(pi[:, j].numpy(), expected, atol=1e-6)
        if a[s].sum() > 0:
            assert pi[:, j].sum().item() == pytest.approx(1.0, abs=1e-5)


def test_personalized_pagerank_error_bound_after_few_iterations():
    # Power iteration error is at most (1 − r)^iterations (in L1 on the distribution).
    rng = np.random.default_rng(1)
    users = rng.integers(0, 8, 30)
    items = rng.integers(0, 10, 30)
    a = bipartite_dense(users, items, 8, 10)
    adjacency = torch.from_numpy(a).float().to_sparse_csr()
    restart, iterations = 0.3, 10
    pi = personalized_pagerank(adjacency, torch.arange(8), restart, iterations)
    for s in range(8):
        if a[s].sum() == 0:
            continue
        error = np.abs(pi[:, s].numpy() - dense_ppr(a, s, restart)).sum()
        assert error <= (1 - restart) ** iterations + 1e-5


def random_bipartite(seed: int, n_users: int, n_items: int, n_edges: int):
    gen = torch.Generator().manual_seed(seed)
    users = torch.randint(0, n_users, (n_edges,), generator=gen)
    items = torch.randint(0, n_items, (n_edges,), generator=gen)
    return users, items


def test_hard_negative_pools_lie_in_rank_band():
    n_users, n_items = 30, 50
    # User 0 has seen all but 4 items: the band is clipped to its unseen items.
    users, items = _with_heavy_user(n_users, n_items)
    config = HardNegativeConfig(
        band_start=0.1, band_end=0.4, pool_size=40, restart=0.3, iterations=120, batch_users=7
    )
    lo, hi = config.band(n_items)
    assert (lo, hi) == (5, 20)
    pools = hard_negative_pools(users, items, n_users, n_items, config)
    assert pools.shape == (n_users, 40)

    a = bipartite_dense(users.numpy(), items.numpy(), n_users, n_items)
    positives: dict[int, set[int]] = {}
    for u, i in zip(users.tolist(), items.tolist(), strict=True):
        positives.setdefault(u, set()).add(i)
    tol = 1e-5
    for u in range(n_users):
        seen = positives.get(u, set())
        pool = pools[u].tolist()
        assert not seen & set(pool), f"user {u} got a positive as hard negative"
        scores = dense_ppr(a, u, config.restart)[n_users:]
        unseen = [i for i in range(n_items) if i not in seen]
        ranked = sorted((scores[i] for i in unseen), reverse=True)
        band_hi = min(hi, len(unseen))
        band_lo = min(lo, band_hi - 1)
        top, bottom = ranked[band_lo], ranked[band_hi - 1]
        for i in pool:
            # Every pool item scores like an item ranked within [band_lo, band_hi).
            assert bottom - tol <= scores[i] <= top + tol, (u, i)
        if u == 0:
            # 4 unseen items: band [3, 4), the unseen item with the lowest visit probability.
            assert (band_lo, band_hi) == (3, 4)
            assert scores[pool].max() <= ranked[3] + tol


def _with_heavy_user(n_users: int, n_items: int):
    users, items = random_bipartite(5, n_users, n_items, 150)
    keep = users != 0
    heavy = torch.arange(4, n_items)
    return (
        torch.cat([users[keep], torch.zeros_like(heavy)]),
        torch.cat([items[keep], heavy]),
    )


def test_hard_negative_pools_cover_the_band():
    # With a big pool, every rank of the band is drawn: the pool is exactly the set of unseen
    # items ranked lo..hi-1, for users whose ranking has no ties across the band's edges.
    n_users, n_items = 10, 30
    users, items = random_bipartite(9, n_users, n_items, 60)
    config = HardNegativeConfig(band_start=0.2, band_end=0.5, pool_size=500, iterations=120)
    lo, hi = config.band(n_items)
    pools = hard_negative_pools(users, items, n_users, n_items, config)
    a = bipartite_dense(users.numpy(), items.numpy(), n_users, n_items)
    checked = 0
    for u in range(n_users):
        seen = set(items[users == u].tolist())
        if not seen:
            continue
        scores = dense_ppr(a, u, config.restart)[n_users:]
        unseen = sorted((i for i in range(n_items) if i not in seen), key=lambda i: -scores[i])
        edges = [scores[unseen[r]] for r in (lo - 1, lo, hi - 1, hi)]
        if edges[0] - edges[1] < 1e-6 or edges[2] - edges[3] < 1e-6:
            continue  # a tie across a band edge: which item is in the band is arbitrary
        assert set(pools[u].tolist()) == set(unseen[lo:hi])
        checked += 1
    assert checked >= 3


def test_band_is_at_least_one_rank_wide():
    assert HardNegativeConfig(band_start=0.5, band_end=0.5).band(10) == (5, 6)
    assert HardNegativeConfig(band_start=0.02, band_end=0.10).band(1000) == (20, 100)
    assert HardNegativeConfig(band_start=0.9, band_end=1.0).band(7) == (6, 7)


def test_uniform_negatives_avoid_positives_and_cover_the_rest():
    n_items = 10
    # Rejection sampling redraws up to max_rounds times, so keep densities realistic.
    positives = {0: {1, 3, 5, 7}, 1: {0}, 2: set(), 3: {2, 4, 8}}
    pairs = [(u, i) for u, items in positives.items() for i in items]
    keys = edge_keys(torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs]), 10)
    users = torch.tensor([0, 1, 2, 3, 0])
    gen = torch.Generator().manual_seed(0)
    negatives = uniform_negatives(users, n_items, 400, keys, gen, max_rounds=50)
    assert negatives.shape == (5, 400)
    for row, u in enumerate(users.tolist()):
        drawn = set(negatives[row].tolist())
        allowed = set(range(n_items)) - positives[u]
        assert drawn == allowed, u  # never a positive, every non-positive eventually


def test_uniform_negatives_roughly_uniform():
    keys = edge_keys(torch.tensor([0, 0]), torch.tensor([0, 1]), 5)
    gen = torch.Generator().manual_seed(1)
    negatives = uniform_negatives(torch.tensor([0]), 5, 6000, keys, gen)
    counts = torch.bincount(negatives[0], minlength=5).tolist()
    assert counts[:2] == [0, 0]
    for c in counts[2:]:
        assert abs(c - 2000) < 200


@pytest.mark.parametrize("cap", [0, 1, 2, 5])
def test_curriculum_hard_count(cap):
    for epoch in range(1, 12):
        assert curriculum_hard_count(epoch, cap) == min(epoch - 1, cap)


def test_edge_keys_and_is_edge_match_python_sets():
    rng = np.random.default_rng(4)
    n_users, n_items = 9, 13
    users = torch.from_numpy(rng.integers(0, n_users, 40))
    items = torch.from_numpy(rng.integers(0, n_items, 40))
    keys = edge_keys(users, items, n_items)
    reference = set(zip(users.tolist(), items.tolist(), strict=True))
    assert keys.tolist() == sorted(u * n_items + i for u, i in reference)
    qu = torch.arange(n_users).repeat_interleave(n_items)
    qi = torch.arange(n_items).repeat(n_users)
    got = is_edge(keys, qu, qi, n_items).tolist()
    expected = [(u, i) in reference for u, i in zip(qu.tolist(), qi.tolist(), strict=True)]
    assert got == expected
    # 2-D queries keep their shape.
    assert is_edge(keys, qu.view(n_users, n_items), qi.view(n_users, n_items), n_items).shape == (
        n_users,
        n_items,
    )
    # The empty set contains nothing.
    empty = edge_keys(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long), 5)
    assert not is_edge(empty, torch.tensor([0, 1]), torch.tensor([0, 4]), 5).any()


def test_uniform_negatives_exact_for_users_who_have_seen_almost_everything():
    n_items = 10
    users = torch.tensor([0] * 9 + [1])
    items = torch.tensor(list(range(9)) + [0])
    keys = edge_keys(users, items, n_items)
    generator = torch.Generator().manual_seed(0)
    draws = uniform_negatives(torch.tensor([0] * 50), n_items, 4, keys, generator, max_rounds=1)
    assert set(draws.flatten().tolist()) == {9}
    with pytest.raises(ValueError, match="every item"):
        full = edge_keys(torch.zeros(10, dtype=torch.long), torch.arange(10), n_items)
        uniform_negatives(torch.tensor([0]), n_items, 1, full, generator, max_rounds=1)


def test_random_walk_visit_frequencies_converge_to_personalised_pagerank():
    rng = np.random.default_rng(5)
    n_users, n_items = 6, 8
    r = (rng.random((n_users, n_items)) < 0.4).astype(np.float64)
    r[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1
    r[rng.integers(0, n_users, n_items), np.arange(n_items)] = 1
    a = np.zeros((n_users + n_items,) * 2)
    a[:n_users, n_users:] = r
    a[n_users:, :n_users] = r.T
    adjacency = torch.from_numpy(a).float().to_sparse_csr()
    generator = torch.Generator().manual_seed(0)
    seeds = torch.tensor([0, 3])
    visits = random_walk_visits(
        adjacency,
        seeds,
        walks=400,
        length=500,
        restart=0.3,
        generator=generator,
        columns=slice(0, n_users + n_items),
    )
    for row, seed in enumerate(seeds.tolist()):
        expected = dense_ppr(a, seed, 0.3)
        dense = visits.to_dense()[row]
        got = (dense / dense.sum()).numpy()
        np.testing.assert_allclose(got, expected, atol=0.01)


def test_walk_based_pools_hold_only_unseen_items():
    n_users, n_items = 40, 60
    users, items = random_bipartite(seed=11, n_users=n_users, n_items=n_items, n_edges=300)
    config = HardNegativeConfig(method="walks", pool_size=16, walks=64, walk_length=16)
    pools = hard_negative_pools(users, items, n_users, n_items, config)
    positives = {(u, i) for u, i in zip(users.tolist(), items.tolist(), strict=True)}
    assert pools.shape == (n_users, 16)
    assert not any((u, int(i)) in positives for u in range(n_users) for i in pools[u])
    assert HardNegativeConfig().band(60) == (1, 6)
