"""Model selection (recs_pipeline/evaluation/selection.py): the protocol never reads the test period, the
search resumes, failed trials are recorded, bad settings are named before any work."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from recs_pipeline.evaluation import selection as selection_module
from recs_pipeline.evaluation.selection import (
    MIN_VALIDATION_USERS,
    Selection,
    SelectionError,
    select,
    validation_mask,
)
from recs_pipeline.graph.bipartite import InteractionGraph
from recs_pipeline.models import MODELS, TRAINING_FREE
from recs_pipeline.models.space import Choice, Float, Int, check_space
from recs_pipeline.training import TrainConfig

FILTERS = ("popularity", "gfcf", "dnfilter")
QUICK_TRAIN = TrainConfig(epochs=4, eval_every=1, batch_size=1024, dim=16)


def community_graph(n_users=300, n_items=120, per_user=14, seed=0, timestamps=True, test_seed=1):
    """Users of five communities, each preferring its own items over a popular head."""
    g = torch.Generator().manual_seed(seed)
    community_u = torch.randint(0, 5, (n_users,), generator=g)
    community_i = torch.randint(0, 5, (n_items,), generator=g)
    popularity = torch.rand(n_items, generator=g) ** 3
    users, items = [], []
    for u in range(n_users):
        weight = popularity + 0.05 + (community_i == community_u[u]).float() * 0.6
        users.append(torch.full((per_user,), u))
        items.append(torch.multinomial(weight, per_user, replacement=False, generator=g))
    u, i = torch.cat(users), torch.cat(items)
    ts = torch.randint(0, 10**9, (u.numel(),), generator=g) if timestamps else torch.zeros_like(u)
    test = torch.rand(u.numel(), generator=torch.Generator().manual_seed(test_seed)) < 0.15
    order = torch.argsort(u[~test] * n_items + i[~test])
    return InteractionGraph(
        [f"u{x}" for x in range(n_users)],
        [f"i{x}" for x in range(n_items)],
        u[~test][order],
        i[~test][order],
        ts[~test][order],
        u[test],
        i[test],
    )


def quick(graph, **kwargs) -> Selection:
    options = dict(
        candidates=FILTERS, budget_seconds=600, val_users=200, max_trials=8, log=lambda _: None
    )
    return select(graph, **{**options, **kwargs})


def test_the_test_period_never_changes_the_choice():
    graph = community_graph()
    other_test = community_graph(test_seed=1)
    # Same train edges, a different test period: every test row replaced by other edges.
    other_test = dataclasses.replace(
        other_test, test_users=torch.flip(graph.test_users, [0]), test_items=graph.test_items * 0
    )
    first, second = quick(graph), quick(other_test)
    assert (first.model, first.params, first.recall) == (second.model, second.params, second.recall)
    assert [(t.model, t.params, t.recall) for t in first.trials] == [
        (t.model, t.params, t.recall) for t in second.trials
    ]


def test_every_candidate_is_tried_at_its_defaults_first_and_the_best_wins():
    result = quick(community_graph())
    first = sorted(result.trials, key=lambda t: t.number)[: len(FILTERS)]
    assert [t.model for t in first] == list(FILTERS)
    assert first[1].params == {"alpha": 0.3, "k": 256}  # GF-CF as shipped
    assert len(result.trials) == 8
    complete = [t for t in result.trials if t.state == "COMPLETE"]
    assert result.recall == max(t.recall for t in complete)
    assert [t.model for t in result.leaderboard()][0] == result.model
    assert result.validation_users == 200


def test_the_validation_slice_is_each_users_latest_train_edges():
    graph = community_graph()
    mask, _ = validation_mask(graph, val_users=50, seed=3)
    held_users = graph.train_users[mask]
    assert held_users.unique().numel() == 50 == mask.sum()
    for user in held_users.tolist():
        mine = graph.train_users == user
        assert graph.train_last_ts[mask & mine].item() == graph.train_last_ts[mine].max().item()


def test_without_timestamps_the_held_out_edge_is_random_not_the_files_last():
    graph = community_graph(timestamps=False)
    mask, _ = validation_mask(graph, val_users=300, seed=0)
    # The file order sorts each user's edges by item: the last is the largest item id.
    last = torch.zeros_like(mask)
    ends = torch.cumsum(torch.bincount(graph.train_users), 0) - 1
    last[ends] = True
    assert 0 < (mask & last).sum() < mask.sum() // 2


def test_a_failing_trial_is_recorded_and_the_search_goes_on(monkeypatch):
    real = selection_module._Filters.fit

    def fit(self, model, params):
        if model == "gfcf":
            raise MemoryError("out of memory (injected)")
        return real(self, model, params)

    monkeypatch.setattr(selection_module._Filters, "fit", fit)
    said: list[str] = []
    result = quick(community_graph(), max_trials=5, log=said.append)
    failed = [t for t in result.trials if t.state == "FAIL"]
    assert failed and all(t.model == "gfcf" for t in failed)
    assert failed[0].error == "MemoryError: out of memory (injected)"
    assert result.model != "gfcf"
    assert any("gfcf failed (MemoryError" in line for line in said)


def test_a_killed_search_resumes_its_study(tmp_path):
    storage = str(tmp_path / "study.journal")
    graph = community_graph()
    first = quick(graph, storage=storage, max_trials=4)  # killed after four trials, say
    second = quick(graph, storage=storage, max_trials=7)  # the cap counts the first four
    assert len(first.trials) == 4 and len(second.trials) == 7
    assert {t.number for t in second.trials} == set(range(7))
    # The candidates' defaults ran once, in the first part.
    assert sum(t.params == {"alpha": 0.3, "k": 256} for t in second.trials) == 1


def test_trained_candidates_report_each_check_and_can_win():
    graph = community_graph()
    result = select(
        graph,
        candidates=("popularity", "lightgcn"),
        budget_seconds=600,
        val_users=200,
        max_trials=3,
        train=QUICK_TRAIN,
        log=lambda _: None,
    )
    trained = [t for t in result.trials if t.model == "lightgcn" and t.state == "COMPLETE"]
    assert trained and all(0 <= t.recall <= 1 for t in trained)
    assert trained[0].params == {"lr": 0.01, "l2": 1e-4, "layers": 3}


def test_the_dnfilter_basis_is_computed_once_per_user_exponent(monkeypatch):
    fits = []
    real = selection_module.fit_training_free

    def counting(name, *args, **kwargs):
        fits.append((name, kwargs.get("user_exponent")))
        return real(name, *args, **kwargs)

    monkeypatch.setattr(selection_module, "fit_training_free", counting)
    result = quick(community_graph(), candidates=("dnfilter",), max_trials=10)
    exponents = {t.params["user_exponent"] for t in result.trials}
    assert sorted(e for n, e in fits if n == "dnfilter") == sorted(exponents)
    assert len(result.trials) == 10


def test_too_small_a_validation_slice_falls_back_and_says_why():
    graph = community_graph(n_users=MIN_VALIDATION_USERS - 5)
    said: list[str] = []
    result = quick(graph, log=said.append, fallback_model="gfcf")
    assert (result.model, result.trials) == ("gfcf", [])
    assert f"has {MIN_VALIDATION_USERS - 5} users" in result.fallback
    assert said and "model selection skipped" in said[0]


def test_bad_settings_are_named_before_any_work():
    graph = community_graph()
    with pytest.raises(SelectionError, match="selection_budget_minutes must be > 0"):
        quick(graph, budget_seconds=0)
    with pytest.raises(SelectionError, match=r"unknown model\(s\) \['lightgcnx'\]"):
        quick(graph, candidates=("gfcf", "lightgcnx"))
    for empty in (lambda: Float(1.0, 0.5), lambda: Int(5, 2), lambda: Choice(())):
        with pytest.raises(ValueError, match="empty range"):
            empty()
    with pytest.raises(ValueError, match="is not a Float, Int or Choice"):
        check_space("mymodel", {"alpha": 0.3})


def test_every_registered_model_declares_a_search_space_beside_it():
    for name, cls in {**MODELS, **TRAINING_FREE}.items():
        assert isinstance(cls.search_space, dict), name
    assert set(TRAINING_FREE["dnfilter"].search_space) == {
        "user_exponent", "beta", "gamma", "weight", "sharpen", "k"
    }  # fmt: skip
    config_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for name, cls in MODELS.items():
        assert set(cls.search_space) <= config_fields, name


def test_gfcf_trials_score_as_gfcf_fitted_at_that_width():
    from recs_pipeline.models.gfcf import GFCF

    graph = community_graph()
    filters = selection_module._Filters(graph.train_users, graph.train_items, 300, 120)
    shared = filters.fit("gfcf", {"alpha": 0.6, "k": 40})
    fitted = GFCF(alpha=0.6, k=40).fit(graph.train_users, graph.train_items, 300, 120)
    users = torch.arange(300)
    assert torch.allclose(shared.scores(users), fitted.scores(users), atol=2e-3)


def two_phase_search() -> Selection:
    """Six trials over two filters and LightGCN: the filters' phase, then all of them."""
    return select(
        community_graph(),
        candidates=("popularity", "gfcf", "lightgcn"),
        budget_seconds=600,
        val_users=200,
        max_trials=6,
        train=QUICK_TRAIN,
        log=lambda _: None,
    )


def test_the_filters_search_first_so_a_long_training_run_cannot_starve_them():
    result = two_phase_search()
    by_number = sorted(result.trials, key=lambda t: t.number)
    assert [t.number for t in by_number] == list(range(6))
    head = int(6 * selection_module.FILTER_SHARE)
    assert all(t.model in TRAINING_FREE for t in by_number[:head])
    assert "lightgcn" in {t.model for t in by_number[head:]}


def test_a_student_of_the_best_filter_is_a_candidate_and_its_settings_reach_training():
    """Issue 25, item 1: the trained candidates include students distilled from the best
    training-free candidate. After the filters' phase, the first trained model is tried at its
    defaults plain and as the best filter's student; a student's settings are TrainConfig's
    (distill, distill_params, distill_ranked), so a student champion trains as one."""
    import dataclasses

    result = two_phase_search()
    head = [t for t in result.trials if t.number < int(6 * selection_module.FILTER_SHARE)]
    best_filter = max(head, key=lambda t: t.recall)
    lightgcn = sorted((t for t in result.trials if t.model == "lightgcn"), key=lambda t: t.number)
    plain, student = lightgcn[0], lightgcn[1]
    assert "distill" not in plain.params
    assert student.params["distill"] == best_filter.model
    assert student.params["distill_ranked"] is True
    assert (student.params["distill_params"] or {}) == best_filter.params
    assert student.state == "COMPLETE" and student.recall is not None
    config = dataclasses.replace(QUICK_TRAIN, model="lightgcn", **student.params)
    assert config.distill == best_filter.model


def test_too_few_test_users_is_insufficient_evidence_and_the_champion_is_published():
    from recs_pipeline.evaluation.gate import INSUFFICIENT, PASSED, GateResult, gate_verdict

    few = gate_verdict(
        "dnfilter", "abc", 0.30, 0.31, evaluated_users=17, min_users=50, chosen_on_validation=True
    )
    assert few.verdict == INSUFFICIENT
    # A pinned or default model was validated by nothing: it is still held to popularity.
    pinned = gate_verdict("lightgcn", "abc", 0.30, 0.31, evaluated_users=17, min_users=50)
    assert pinned.verdict == "failed"
    assert "only 17 test users, fewer than min_test_users (50)" in few.summary
    enough = gate_verdict("dnfilter", "abc", 0.32, 0.31, evaluated_users=60, min_users=50)
    assert enough.verdict == PASSED
    # Popularity as the day's model (selection found nothing better) is published, not blocked.
    chosen = gate_verdict(
        "popularity", "abc", 0.2, 0.2, evaluated_users=60, min_users=50, chosen_on_validation=True
    )
    assert chosen.verdict == "popularity_chosen" and "no model beat it" in chosen.summary
    # Pinned, popularity is still refused as the day's model: it cannot beat itself.
    assert gate_verdict("popularity", "abc", 0.2, 0.2, 60, 50).verdict == "failed"
    # An older record without min_users still reads.
    assert GateResult(**{k: v for k, v in few.__dict__.items() if k != "min_users"}).min_users == 1


def test_a_validated_model_within_noise_of_popularity_is_published_with_a_warning():
    """The walk-through's MovieLens day: the champion a few points below popularity on 71 test
    users. That is noise, not evidence; a significant deficit still blocks the day."""
    from recs_pipeline.evaluation.gate import FAILED, INSUFFICIENT, gate_verdict, paired_p_worse

    users = 71
    # Both hit users 0-4; popularity also hits 5-7, the model 8-9 instead.
    baseline = [1.0 if u < 8 else 0.0 for u in range(users)]
    model = [1.0 if u < 5 or u in (8, 9) else 0.0 for u in range(users)]
    p = paired_p_worse(model, baseline)
    assert 0.05 < p < 0.5
    from scipy import stats  # the paired t-test it computes, one-sided

    assert p == pytest.approx(stats.ttest_rel(model, baseline, alternative="less").pvalue)
    assert paired_p_worse([0.0, 1.0], [1.0, 1.0]) == pytest.approx(
        stats.ttest_rel([0.0, 1.0], [1.0, 1.0], alternative="less").pvalue
    )  # two users: one degree of freedom
    noisy = gate_verdict(
        "lightgcn", "abc", sum(model) / users, sum(baseline) / users, users, min_users=50,
        chosen_on_validation=True, p_worse=p,
    )  # fmt: skip
    assert noisy.verdict == INSUFFICIENT
    assert "shortfall against popularity is within noise" in noisy.summary
    assert f"paired t-test on the 71 test users' Recall@20: p = {p:.2f}" in (noisy.summary)
    # Popularity hits 30 users, the model 10 of them: significant, refused.
    worse = [1.0 if u < 10 else 0.0 for u in range(users)]
    better = [1.0 if u < 30 else 0.0 for u in range(users)]
    p_sig = paired_p_worse(worse, better)
    assert p_sig < 0.001
    refused = gate_verdict(
        "lightgcn", "abc", 10 / users, 30 / users, users, 50, chosen_on_validation=True,
        p_worse=p_sig,
    )  # fmt: skip
    assert refused.verdict == FAILED and "its deficit is significant" in refused.refusal("D")
    # A pinned model, which nothing validated, is held to beating popularity, noise or not.
    pinned = gate_verdict("lightgcn", "abc", 5 / users, 8 / users, users, 50, p_worse=p)
    assert pinned.verdict == FAILED
    # ... and its refusal does not call a deficit within noise significant.
    assert "significant" not in pinned.refusal("D")
    assert "does not beat popularity on Recall@20" in pinned.refusal("D")
    # One user is no evidence either way.
    assert paired_p_worse([0.0], [1.0]) == 1.0
    # Identical lists never differ: no evidence either way.
    assert paired_p_worse(baseline, baseline) == 1.0


def test_a_backfill_never_reuses_a_choice_made_from_later_days():
    from recs_pipeline.evaluation.selection import reusable

    stored = ["2026-03-01", "2026-03-10"]
    assert reusable(stored, "2026-03-05", 7) == "2026-03-01"
    assert reusable(stored, "2026-03-08", 7) is None  # 7 days on: search again
    assert reusable(stored, "2026-02-28", 7) is None  # only later choices exist
    assert reusable(stored, "2026-03-12", 7) == "2026-03-10"


def test_a_search_every_n_days_counts_from_the_search_not_the_last_reuse(tmp_path):
    """Daily runs: a search on the first day, reuses for every_days - 1 days, then a search
    again; a day re-run between keeps reusing the search before it."""
    import datetime as dt

    from recs_pipeline.evaluation.selection import SelectionConfig, daily_selection
    from recs_pipeline.infra.artifacts import UrlArtifactStore

    store = UrlArtifactStore(tmp_path)
    graph = community_graph()
    config = SelectionConfig(
        every_days=3, candidates=("popularity", "gfcf"), trials=2, val_users=200
    )
    searched = []
    for offset in range(7):
        day = (dt.date(2026, 3, 1) + dt.timedelta(days=offset)).isoformat()
        _, source = daily_selection(store, day, graph, config, QUICK_TRAIN, log=lambda _: None)
        searched += [day] if source is None else []
    assert searched == ["2026-03-01", "2026-03-04", "2026-03-07"]
    _, source = daily_selection(store, "2026-03-05", graph, config, QUICK_TRAIN, log=lambda _: None)
    assert source == "2026-03-04"


def test_a_catalogue_smaller_than_k_is_ranked_whole():
    graph = community_graph(n_users=60, n_items=12, per_user=6)
    result = quick(graph, val_users=40, k=20)
    assert result.k == 12 and all(t.state == "COMPLETE" for t in result.trials)


def test_a_small_trial_cap_tries_every_filters_default_and_counts_only_trials_that_ran():
    """With ``trials`` below the number of defaults queued (the demo's ``--selection-trials
    4``), the filters' phase still runs each filter's default before anything else, and the
    trials reported are the ones that ran: Optuna's queued-but-never-run trials are neither
    counted against the cap nor listed (the cap once ran popularity alone, twice, and chose it
    as "best of 8 trials")."""
    graph = community_graph()
    chosen = select(
        graph,
        budget_seconds=600,
        val_users=200,
        max_trials=4,
        train=QUICK_TRAIN,
        log=lambda _: None,
    )
    assert all(t.state in ("COMPLETE", "PRUNED", "FAIL") for t in chosen.trials), chosen.trials
    assert len(chosen.trials) == 4
    assert {"popularity", "gfcf", "dnfilter"} <= {t.model for t in chosen.trials}


def test_a_day_searched_again_on_changed_data_starts_a_new_study(tmp_path):
    """A day's study resumes only over the same train edges: after a re-ingest (ratings as
    positives only from 4 stars, say) the day's search is the search a fresh study of the new
    graph makes, never the old graph's trials resumed (a newcomer's re-run kept them)."""
    from recs_pipeline.evaluation.selection import SelectionConfig, daily_selection
    from recs_pipeline.infra.artifacts import UrlArtifactStore

    config = SelectionConfig(candidates=("popularity", "gfcf"), trials=3, val_users=200)
    before, after = community_graph(seed=0), community_graph(seed=5)
    store = UrlArtifactStore(tmp_path)
    daily_selection(store, "2026-03-01", before, config, QUICK_TRAIN, log=lambda _: None)
    again, _ = daily_selection(store, "2026-03-01", after, config, QUICK_TRAIN, log=lambda _: None)
    fresh, _ = daily_selection(
        UrlArtifactStore(tmp_path / "fresh"), "2026-03-01", after, config, QUICK_TRAIN,
        log=lambda _: None,
    )  # fmt: skip
    assert [(t.model, t.params, t.recall) for t in again.trials] == [
        (t.model, t.params, t.recall) for t in fresh.trials
    ]
