"""The Gowalla benchmarks' validation holdout and their filter flags, on a hand-written split."""

import pytest
import torch

from benchmarks.gowalla import build_parser, holdout_order, load_lightgcn_split, train_config
from recs_pipeline.training.validation import validation_split

# LightGCN's format: one line per user, its items in the file's order.
TRAIN = "0 5 1 4 2 3\n1 0 2 4 1 3\n2 3 4\n"
TEST = "0 0\n1 5\n2 1\n"


@pytest.fixture
def split(tmp_path):
    (tmp_path / "train.txt").write_text(TRAIN)
    (tmp_path / "test.txt").write_text(TEST)
    return load_lightgcn_split(tmp_path)


def held_items(split, holdout: str) -> dict[int, list[int]]:
    n_users, _, tu, ti, _, _ = split
    last_ts = holdout_order(tu.numel(), 0, holdout)
    held = validation_split(tu, last_ts, n_users, n_users, torch.Generator().manual_seed(0), 0.4)
    return {u: ti[held & (tu == u)].tolist() for u in range(n_users)}


def test_file_order_holds_out_the_end_of_each_line(split):
    """40% of five items is two: the line's last two; of two items, one (never all)."""
    assert held_items(split, "file-order") == {0: [2, 3], 1: [1, 3], 2: [4]}


def test_random_holdout_draws_within_each_user_and_is_seeded(split):
    first = held_items(split, "random")
    assert first == held_items(split, "random")
    assert [len(items) for items in first.values()] == [2, 2, 1]
    with pytest.raises(ValueError, match="holdout"):
        holdout_order(5, 0, "latest")


def test_param_flags_reach_the_model_and_the_teacher_settings(capsys):
    flags = ["--data", "x", "--distill", "dnfilter", "--holdout", "file-order"]
    teacher = ["--distill-param", "user_exponent=0.3", "--distill-param", "sharpen=1"]
    args = build_parser().parse_args(flags + teacher + ["--distill-param", "k=8"])
    config = train_config(args, "lightgcn")
    assert config.distill_params == {"k": 8, "sharpen": 1.0, "user_exponent": 0.3}
    assert config.model_params is None
    # The --filter-* flags of earlier versions (the README's recorded commands): the teacher's
    # settings beside a trained model, the model's own for a training-free one.
    old = ["--filter-user-exponent", "0.3", "--filter-sharpen", "1", "--filter-ideal-k", "8"]
    args = build_parser().parse_args(flags + old)
    assert train_config(args, "lightgcn").distill_params == config.distill_params
    assert train_config(args, "dnfilter").model_params == config.distill_params
    assert "--filter-sharpen is deprecated" in capsys.readouterr().err
    args = build_parser().parse_args(["--data", "x", "--param", "k=8"])
    assert train_config(args, "gfcf").model_params == {"k": 8}
    assert train_config(args, "lightgcn").model_params is None
    assert "--param NAME=VALUE" in build_parser().format_help()


def test_param_flags_are_checked_before_any_fit(capsys):
    from benchmarks.paper_split import main

    for flags, message in [
        (["--models", "lightgcn", "--param", "k=8"], "none is among --models"),
        (["--models", "dnfilter", "--param", "sharpness=1"], "dnfilter has no parameter"),
        (["--models", "gfcf", "--param", "k=0"], "gfcf's k must be an integer >= 1"),
        (["--models", "lightgcn", "--distill-param", "k=8"], "set distill too"),
    ]:
        with pytest.raises(SystemExit):
            main(["--data", "does-not-exist", *flags])
        assert message in capsys.readouterr().err, flags


class FixedScores:
    """A stand-in teacher for the matrix transform alone: fixed scores for every user."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        return self.table[users].clone()


def test_rank_limit_rows_put_unseen_items_on_one_scale_and_zero_train_items(split):
    from benchmarks.gowalla_rank_limit import teacher_matrix
    from recs_pipeline.graph.bipartite import interaction_csr

    n_users, n_items, tu, ti, _, _ = split
    table = torch.arange(n_users * n_items, dtype=torch.float32).reshape(n_users, n_items) ** 1.5
    exclude = interaction_csr(tu, ti, n_users, n_items)
    seen = exclude.to_dense().bool()
    for transform in ("standardised", "raw"):
        dense = teacher_matrix(FixedScores(table), n_users, n_items, exclude, transform, batch=2)
        assert (dense[seen] == 0).all(), transform
        for u in range(n_users):
            unseen = dense[u, ~seen[u]]
            if transform == "raw":
                assert torch.equal(unseen, table[u, ~seen[u]])
            elif unseen.numel() > 1:
                assert unseen.mean().abs() < 1e-5 and (unseen.var(unbiased=False) - 1).abs() < 1e-4


def test_rank_limit_at_full_rank_ranks_as_the_teacher(split, tmp_path):
    """Standardising is an increasing map of each row's unseen scores, and a full-rank SVD
    is exact: the approximation's metrics are the teacher's."""
    from benchmarks.gowalla_rank_limit import main

    n_users = split[0]
    data = tmp_path  # the fixture wrote train.txt and test.txt here
    flags = ["--data", str(data), "--ranks", f"1,{n_users}", "--oversample", "0"]
    flags += ["--param", "k=2", "--ks", "1,3", "--out", str(tmp_path / "out.json")]
    results = main(flags)["results"]
    assert results["teacher"]["settings"]["k"] == 2  # the results record the settings used
    for transform in ("standardised", "raw"):
        full = results[transform]["by_rank"][n_users]
        for metric in ("recall@1", "recall@3", "ndcg@3"):
            assert full[metric] == pytest.approx(results["teacher"]["test"][metric], abs=1e-6)
    with pytest.raises(SystemExit):
        main(["--data", str(data), "--ranks", "99"])


def test_models_auto_on_any_split_records_the_choice_and_tests_once(tmp_path):
    """benchmarks.paper_split --models auto: the pipeline's selection on a slice of train.txt,
    then the test once; a user whose test line is empty is skipped."""
    import json
    import random

    from benchmarks.paper_split import main

    rng = random.Random(0)
    train, test = [], []
    for user in range(60):
        items = rng.sample(range(40), 12)
        train.append(" ".join(map(str, [user, *items[:9]])))
        test.append(" ".join(map(str, [user, *items[9:]])) if user % 10 else str(user))
    (tmp_path / "train.txt").write_text("\n".join(train) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(test) + "\n")
    out = tmp_path / "result.json"
    main(
        ["--data", str(tmp_path), "--models", "auto", "--budget-minutes", "5", "--max-trials",
         "4", "--auto-candidates", "popularity,gfcf,dnfilter", "--val-users", "50", "--quiet",
         "--out", str(out)]
    )  # fmt: skip
    auto = json.loads(out.read_text())["models"]["auto"]
    assert auto["chosen"] in ("popularity", "gfcf", "dnfilter")
    assert auto["trials"] == 4 and 0 <= auto["recall@20"] <= 1 and 0 <= auto["ndcg@20"] <= 1
    assert auto["validation"]["users"] == 50
    assert auto["wall_seconds"] >= auto["selection_seconds"] + auto["refit_seconds"]
    assert auto["leaderboard"][0]["model"] == auto["chosen"]
    with pytest.raises(SystemExit):
        main(["--data", str(tmp_path), "--models", "auto", "--auto-candidates", "lightgcnx"])
