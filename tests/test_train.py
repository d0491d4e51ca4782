"""validation_split against brute force, and a short training run on two obvious communities."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from recs_pipeline.evaluation.metrics import popularity_embeddings, ranking_metrics, topk_excluding
from recs_pipeline.graph.bipartite import InteractionGraph, interaction_csr, normalized_adjacency
from recs_pipeline.graph.negatives import HardNegativeConfig, hard_negative_pools
from recs_pipeline.models import build_model
from recs_pipeline.training import TrainConfig, train_model
from recs_pipeline.training.init import spectral_init
from recs_pipeline.training.validation import validation_metrics, validation_split


def brute_force_latest(users, last_ts, chosen) -> set[int]:
    """For each chosen user, the index of its latest edge (ties: the larger edge index)."""
    picked = set()
    for u in chosen:
        edges = [e for e in range(len(users)) if users[e] == u]
        picked.add(max(edges, key=lambda e: (last_ts[e], e)))
    return picked


@pytest.mark.parametrize("max_users", [1, 4, 100])
def test_validation_split_picks_latest_edge_of_chosen_users(max_users):
    rng = np.random.default_rng(max_users)
    n_users = 12
    users = rng.integers(0, n_users, 60)
    users[users == 3] = 4  # user 3 has no edges
    users[users == 7] = 8
    users[np.flatnonzero(users == 8)[0]] = 7  # user 7 has exactly one edge
    last_ts = rng.integers(0, 15, 60)  # few distinct times: ties happen
    mask = validation_split(
        torch.from_numpy(users),
        torch.from_numpy(last_ts),
        n_users,
        max_users,
        torch.Generator().manual_seed(5),
    )
    picked = set(np.flatnonzero(mask.numpy()).tolist())
    chosen = {int(users[e]) for e in picked}
    degree = np.bincount(users, minlength=n_users)
    eligible = {u for u in range(n_users) if degree[u] >= 2}
    assert len(picked) == len(chosen) == min(max_users, len(eligible))  # one edge per user
    assert chosen <= eligible and 3 not in chosen and 7 not in chosen
    assert picked == brute_force_latest(users.tolist(), last_ts.tolist(), chosen)


def test_validation_split_tie_break_by_edge_index():
    users = torch.tensor([0, 1, 0, 1, 0, 1])
    last_ts = torch.tensor([5, 9, 5, 2, 1, 9])
    mask = validation_split(users, last_ts, 2, 10, torch.Generator().manual_seed(0))
    assert torch.nonzero(mask).squeeze(1).tolist() == [2, 5]


def two_communities(seed: int = 0, n_users: int = 40, n_items: int = 40, per_user: int = 8):
    """Users 0..19 only touch items 0..19 and users 20..39 only items 20..39; within a
    community items are drawn uniformly, so popularity carries almost no signal."""
    rng = np.random.default_rng(seed)
    half_u, half_i = n_users // 2, n_items // 2
    users, items = [], []
    for u in range(n_users):
        base = 0 if u < half_u else half_i
        for i in rng.choice(half_i, per_user, replace=False):
            users.append(u)
            items.append(base + int(i))
    users_t = torch.tensor(users)
    items_t = torch.tensor(items)
    last_ts = torch.from_numpy(rng.integers(0, 1_000_000, len(users)))
    return users_t, items_t, last_ts


def test_short_training_run_beats_popularity_and_keeps_best_state():
    n_users = n_items = 40
    users, items, last_ts = two_communities()
    config = TrainConfig(
        model="lightgcn",
        dim=16,
        layers=2,
        epochs=12,
        batch_size=128,
        lr=0.05,
        l2=1e-4,
        eval_every=1,
        patience=100,
        val_users=n_users,
        val_k=10,
        seed=0,
    )
    lines: list[str] = []
    graph = InteractionGraph.from_edges(n_users, n_items, users, items, last_ts)
    result = train_model(graph, config, log=lines.append)

    # History: one record per epoch with epoch, loss and (every epoch here) val_recall.
    assert [h["epoch"] for h in result.history] == list(range(1, 13))
    fields = {"epoch", "loss", "val_recall", "val_ndcg", "step_seconds", "val_seconds"}
    assert all(fields <= set(h) for h in result.history)
    assert all(0 <= h["val_ndcg"] <= 1 and h["step_seconds"] > 0 for h in result.history)
    phases = result.setup_seconds + sum(
        h["step_seconds"] + h["val_seconds"] for h in result.history
    )
    assert 0 < phases <= result.seconds
    assert all(np.isfinite(h["loss"]) for h in result.history)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    recalls = [h["val_recall"] for h in result.history]
    assert result.best_val_recall == max(recalls)
    assert result.best_epoch == 1 + recalls.index(max(recalls))
    assert len(lines) == 12

    # Reproduce the validation slice (train_model draws it first from Generator(seed)).
    val_mask = validation_split(
        users, last_ts, n_users, config.val_users, torch.Generator().manual_seed(config.seed)
    )
    assert int(val_mask.sum()) == n_users  # every user has >= 2 edges
    fit_u, fit_i = users[~val_mask], items[~val_mask]
    val_u, val_i = users[val_mask], items[val_mask]
    adjacency = normalized_adjacency(fit_u, fit_i, n_users, n_items)
    fit_csr = interaction_csr(fit_u, fit_i, n_users, n_items)
    val_users = torch.unique(val_u)

    # The returned model is the best epoch's state, not the last one's.
    again, _ = validation_metrics(result.model, adjacency, fit_csr, val_users, val_u, val_i, 10)
    assert again == pytest.approx(result.best_val_recall)

    # Popularity (train degree of the fit graph) on the same validation slice.
    pop_user, pop_item = popularity_embeddings(torch.bincount(fit_i, minlength=n_items), n_users)
    _, top = topk_excluding(pop_user, pop_item, val_users, fit_csr, 10)
    popularity = ranking_metrics(top, val_users, val_u, val_i, n_items, (10,))[("recall", 10)]
    assert result.best_val_recall > popularity + 0.2

    # The model's top-10 stays inside each user's community for most users.
    with torch.no_grad():
        user_emb, item_emb = result.model.embed(adjacency)
    _, top = topk_excluding(user_emb, item_emb, torch.arange(n_users), fit_csr, 10)
    same = [(top[u] < 20).float().mean().item() for u in range(20)]
    same += [(top[u] >= 20).float().mean().item() for u in range(20, 40)]
    assert np.mean(same) > 0.9


def test_training_with_hard_negatives_and_mf_records_curriculum():
    n_users = n_items = 40
    users, items, last_ts = two_communities(seed=1)
    pools = hard_negative_pools(
        users,
        items,
        n_users,
        n_items,
        HardNegativeConfig(band_start=0.3, band_end=0.6, pool_size=8),
    )
    config = TrainConfig(
        model="mf",
        dim=8,
        epochs=4,
        batch_size=64,
        max_hard_negatives=2,
        eval_every=2,
        loss="binary",
    )
    graph = InteractionGraph.from_edges(n_users, n_items, users, items, last_ts)
    result = train_model(graph, config, hard_pools=pools, log=lambda _: None)
    assert [h["hard_negatives"] for h in result.history] == [0, 1, 2, 2]
    assert ["val_recall" in h for h in result.history] == [False, True, False, True]
    # The best epoch is the first with the highest validation recall, and its recall is kept.
    checked = [h for h in result.history if "val_recall" in h]
    best = max(checked, key=lambda h: (h["val_recall"], -h["epoch"]))
    assert (result.best_epoch, result.best_val_recall) == (best["epoch"], best["val_recall"])


def test_train_config_validation():
    with pytest.raises(ValueError, match="unknown model"):
        TrainConfig(model="nope")
    with pytest.raises(ValueError, match="unknown loss"):
        TrainConfig(loss="hinge")
    with pytest.raises(ValueError, match="negative"):
        TrainConfig(uniform_negatives=0, max_hard_negatives=0)
    assert TrainConfig(model="mf", dim=8, layers=5).network_params() == {"dim": 8}
    assert TrainConfig(dim=8, layers=5).network_params() == {"dim": 8, "layers": 5}


@pytest.mark.parametrize("model_name", ["lightgcn", "mf"])
def test_spectral_init_scores_are_the_truncated_svd_of_the_normalised_matrix(model_name):
    rng = np.random.default_rng(3)
    n_users, n_items, dim = 12, 9, 4
    r = (rng.random((n_users, n_items)) < 0.4).astype(np.float64)
    r[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1
    r[rng.integers(0, n_users, n_items), np.arange(n_items)] = 1
    users, items = (torch.from_numpy(a) for a in np.nonzero(r))
    model = build_model(model_name, n_users, n_items, dim=dim)
    spectral_init(model, users, items, std=0.1, seed=0)
    adjacency = normalized_adjacency(users, items, n_users, n_items)
    with torch.no_grad():
        user_emb, item_emb = model.embed(adjacency)
    scores = (user_emb @ item_emb.T).detach().double().numpy()
    r_norm = r / np.sqrt(r.sum(1))[:, None] / np.sqrt(r.sum(0))[None, :]
    u, s, vt = np.linalg.svd(r_norm)
    reconstruction = u[:, :dim] @ np.diag(s[:dim]) @ vt[:dim]
    scale = (scores * reconstruction).sum() / (reconstruction**2).sum()
    assert scale > 0
    np.testing.assert_allclose(scores, scale * reconstruction, atol=1e-4 * np.abs(scores).max())
    layer0 = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert layer0.std().item() == pytest.approx(0.1, rel=1e-3)


def test_network_params_pass_alphas_to_lightgcn_only():
    config = TrainConfig(model="lightgcn", layers=2, alphas=(0.5, 0.3, 0.2))
    model = build_model("lightgcn", 3, 2, **config.network_params())
    assert model.alphas == [0.5, 0.3, 0.2]
    assert TrainConfig(model="mf").network_params() == {"dim": 64}
    with pytest.raises(ValueError, match="alphas"):
        TrainConfig(model="mf", alphas=(1.0,)).network_params()


def test_validation_split_fraction_holds_out_each_chosen_users_latest_edges():
    generator = torch.Generator().manual_seed(0)
    users = torch.tensor([0] * 10 + [1] * 3 + [2])
    last_ts = torch.tensor([5, 1, 9, 3, 7, 2, 8, 0, 6, 4] + [2, 1, 3] + [0])
    mask = validation_split(users, last_ts, 3, max_users=10, generator=generator, fraction=0.3)
    # user 0: 3 of 10 edges, the latest (ts 9, 8, 7); user 1: one edge (ts 3); user 2 has one
    # edge only and is not eligible.
    held = {(int(u), int(t)) for u, t in zip(users[mask], last_ts[mask], strict=True)}
    assert held == {(0, 9), (0, 8), (0, 7), (1, 3)}


def test_max_steps_per_epoch_grows_the_batch_on_large_graphs(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    users = torch.randint(0, 50, (2000,), generator=generator)
    items = torch.randint(0, 40, (2000,), generator=generator)
    steps = []
    config = TrainConfig(model="mf", epochs=1, batch_size=64, max_steps_per_epoch=5, val_users=0)
    original = torch.optim.Adam.step

    def counting_step(self, *args, **kwargs):
        steps.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", counting_step)
    graph = InteractionGraph.from_edges(50, 40, users, items, torch.arange(2000))
    train_model(graph, config, log=lambda message: None)
    assert len(steps) == 5  # 2000 edges in batches of 400, not 32 batches of 64


def test_weighted_training_reads_the_edge_weights_as_loss_weights():
    # Issue 12, finding 6: with ``weighted`` each positive's loss term is scaled by its edge
    # weight over the mean weight. Equal weights change nothing; other weights change the model.
    n_users = n_items = 40
    users, items, last_ts = two_communities()
    config = TrainConfig(model="mf", dim=8, epochs=2, batch_size=64, eval_every=1, val_users=5)
    weighted = dataclasses.replace(config, weighted=True)

    def weights_of(config, weights=None):
        graph = InteractionGraph.from_edges(n_users, n_items, users, items, last_ts, weights)
        return train_model(graph, config, log=lambda _: None).model.state_dict()

    plain = weights_of(config=config)
    same = weights_of(config=weighted, weights=torch.full((users.numel(),), 4.0))
    ratings = torch.from_numpy(np.random.default_rng(1).integers(1, 6, users.numel())).float()
    rated = weights_of(config=weighted, weights=ratings)
    for name, tensor in plain.items():
        torch.testing.assert_close(same[name], tensor)
    assert any(not torch.allclose(rated[n], t) for n, t in plain.items())
    with pytest.raises(ValueError, match="weights"):
        weights_of(config=weighted)  # weighted without weights is a mistake, not a silent no-op


@pytest.mark.parametrize("shape", [(1, 6), (5, 1)], ids=["one user", "one item"])
def test_spectral_init_of_a_one_user_or_one_item_log_is_its_rank_one_svd(shape):
    """Issue 27: the same limit of ARPACK as GF-CF's (no singular vector below min(shape))."""
    r = np.ones(shape)
    users, items = (torch.from_numpy(a) for a in np.nonzero(r))
    model = build_model("mf", *shape, dim=4)
    spectral_init(model, users, items, std=0.1, seed=0)
    user_emb, item_emb = model.embed(None)
    scores = (user_emb @ item_emb.T).detach().double().numpy()
    assert (scores > 0).all() and np.ptp(scores) < 1e-6 * scores.max()  # R̃ ∝ all ones


def test_a_time_budget_ends_a_single_runs_epoch_part_way_and_still_validates(monkeypatch):
    """A selection's trained trial on a large graph overran its budget by a whole epoch (one
    LightGCN epoch over 2.4 M edges outlasted the 3-minute search). Past the budget a single
    run stops at the next mini-batch, validates what it has, and says so in the record."""
    import recs_pipeline.training.loop as loop

    users, items, last_ts = two_communities()
    graph = InteractionGraph.from_edges(40, 40, users, items, last_ts)
    config = TrainConfig(model="mf", dim=8, epochs=5, batch_size=16, eval_every=5,
                         val_users=5, time_budget_minutes=1.0)  # fmt: skip
    clock = iter(range(0, 10_000, 20))  # every reading 20 s later: the budget ends in epoch 1
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(clock))
    result = train_model(graph, config, log=lambda message: None)
    [record] = result.history
    done, _, total = record["batches"].removesuffix(" (time budget spent)").partition(" of ")
    assert 0 < int(done) < int(total) == 20
    assert "val_recall" in record and result.best_epoch == 1


def test_every_epoch_records_the_learning_rate_its_steps_used():
    """Issue 28 (the UI, finding 5): the training table's `lr` column was empty, since an
    epoch recorded its learning rate only after a plateau decay (and the default, 1, never
    decays). Every record now carries the rate its steps used: constant without decay; after a
    check without gain, the next epoch's rate is the decayed one."""
    users, items, last_ts = two_communities(seed=2)
    graph = InteractionGraph.from_edges(40, 40, users, items, last_ts)
    constant = TrainConfig(model="mf", dim=8, epochs=4, batch_size=64, eval_every=1, lr=0.02)
    result = train_model(graph, constant, log=lambda _: None)
    assert [h["lr"] for h in result.history] == [0.02] * 4

    # A learning rate so high that checks go without gain: each one halves the next epoch's rate.
    decaying = dataclasses.replace(constant, epochs=8, lr=5.0, plateau_decay=0.5, patience=100)
    result = train_model(graph, decaying, log=lambda _: None)
    rates = [h["lr"] for h in result.history]
    assert rates[0] == 5.0 and all(isinstance(r, float) for r in rates)
    best, rate = -1.0, 5.0
    for record in result.history:
        assert record["lr"] == pytest.approx(rate), (record, rates)
        if record["val_recall"] > best:
            best = record["val_recall"]
        else:
            rate *= 0.5
    assert min(rates) < 5.0, rates  # at least one decay happened
