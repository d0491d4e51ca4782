import torch

from recs_pipeline.evaluation.metrics import inner_product, topk_scored
from recs_pipeline.graph.bipartite import interaction_csr
from recs_pipeline.serving.ann import IVFIndex, list_overlap
from recs_pipeline.serving.recommend import PublishIndex, rank_model_users


def embeddings(n_users=300, n_items=2000, dim=16, clusters=40, seed=0):
    """Users and items around shared cluster centres, as trained embeddings are."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=g) * 3
    items = centres[torch.randint(0, clusters, (n_items,), generator=g)]
    items = items + torch.randn(n_items, dim, generator=g)
    users = centres[torch.randint(0, clusters, (n_users,), generator=g)]
    users = users + torch.randn(n_users, dim, generator=g)
    return users, items


def seen(n_users, n_items, per_user=15, seed=1):
    g = torch.Generator().manual_seed(seed)
    u = torch.arange(n_users).repeat_interleave(per_user)
    i = torch.randint(0, n_items, (u.numel(),), generator=g)
    return interaction_csr(u, i, n_users, n_items)


def test_every_item_lands_in_exactly_one_list_and_no_list_outgrows_twice_the_size():
    _, items = embeddings()
    # One dominant cluster: 1,500 of 2,000 items nearly identical.
    items[:1500] = torch.randn(1, 16) + 0.01 * torch.randn(1500, 16)
    index = IVFIndex.build(items, list_size=64)
    members = index.lists[index.lists >= 0]
    assert torch.equal(torch.sort(members).values, torch.arange(2000))
    assert index.longest <= 128
    assert torch.equal(index.lists[index.list_of, index.slot_of], torch.arange(2000))


def test_probing_every_list_is_exact_ranking_with_exclusions():
    users, items = embeddings()
    exclude = seen(users.shape[0], items.shape[0])
    rows = torch.arange(users.shape[0])
    index = IVFIndex.build(items, list_size=64)
    scores, top = index.search(
        users, 20, probes=index.centroids.shape[0], exclude=exclude, rows=rows
    )
    exact_scores, exact = topk_scored(inner_product(users, items), rows, exclude, 20)
    assert torch.allclose(scores, exact_scores, atol=1e-4)
    assert list_overlap(top, exact, exact_scores) == 1.0
    excluded = exclude.to_dense().bool()
    assert not excluded.gather(1, top).any()


def test_a_few_probes_recover_most_of_the_exact_lists():
    users, items = embeddings()
    exclude = seen(users.shape[0], items.shape[0])
    rows = torch.arange(users.shape[0])
    index = IVFIndex.build(items, list_size=50)
    n_lists = index.centroids.shape[0]
    _, top = index.search(users, 20, probes=n_lists // 5, exclude=exclude, rows=rows)
    exact_scores, exact = topk_scored(inner_product(users, items), rows, exclude, 20)
    assert list_overlap(top, exact, exact_scores) > 0.9
    # Each list is one user's distinct items.
    assert all(len(set(row.tolist())) == 20 for row in top)


def test_fewer_candidates_than_k_end_in_minus_infinity():
    users, items = embeddings(n_users=5, n_items=30)
    index = IVFIndex.build(items, list_size=4)
    scores, top = index.search(users, 20, probes=1)
    assert torch.isinf(scores[:, -1]).all()
    assert top.shape == (5, 20)


def test_list_overlap_counts_only_finite_exact_entries():
    exact = torch.tensor([[1, 2, 3, 4]])
    exact_scores = torch.tensor([[4.0, 3.0, -torch.inf, -torch.inf]])
    assert list_overlap(torch.tensor([[2, 9, 8, 7]]), exact, exact_scores) == 0.5


def test_a_catalogue_smaller_than_k_publishes_every_unseen_item_through_the_index():
    users, items = embeddings(n_users=8, n_items=6, clusters=2)
    exclude = seen(8, 6, per_user=2)
    rows = torch.arange(8)
    scores, top, used = rank_model_users(
        inner_product(users, items), rows, rows, exclude, 10, PublishIndex("ivf", list_size=2), 6
    )
    assert used["index"] == "ivf" and top.shape == (8, 10)
    seen_sets = [set(exclude.to_dense()[u].nonzero().squeeze(1).tolist()) for u in range(8)]
    for u in range(8):
        published = set(top[u][torch.isfinite(scores[u])].tolist())
        assert published == set(range(6)) - seen_sets[u]


def test_publish_index_settings_are_validated():
    for bad in (dict(kind="hnsw"), dict(probes=0), dict(list_size=0), dict(overlap_users=-1)):
        try:
            PublishIndex(**bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")
