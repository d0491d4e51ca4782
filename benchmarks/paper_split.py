"""Paper-table benchmark on any split in the LightGCN format (``train.txt``/``test.txt``, one
line per user: ``user item item ...``), first written for the LightGCN/NGCF Gowalla split.

For each model of ``--models`` (``popularity`` or any registered model, default
``popularity,mf,lightgcn``): wall time, peak RSS, and test Recall@20 / NDCG@20 by
:func:`recs_pipeline.evaluation.metrics.evaluate_embeddings` (full ranking over all 40,981 items, the
user's training items excluded, averaged over the users with test items: the papers'
definition). Trained models go through :func:`recs_pipeline.training.train_model` unchanged.

Protocol notes
- Validation: ``train_model`` carves its validation slice from train (never from test): the
  "latest" ``--val-fraction`` of the train edges of up to ``--val-users`` users (20%, the
  test split's share, so that validation Recall@20 estimates the test metric; with one edge per
  user it measures a hit rate, which ran 0.04 above test recall and chose the epoch badly). Gowalla has no timestamps:
  ``--holdout random`` (the default) orders the train edges by a seeded random permutation, so
  each chosen user's validation edges are a uniformly random subset of their train items;
  ``--holdout file-order`` holds out the end of each ``train.txt`` line (:func:`holdout_order`). Early stopping and the best epoch use
  that slice only; the test fold is evaluated once, on the best-validation model.
- Test embeddings of graph models are propagated over the full train graph (validation edges
  included), as the pipeline's ``model_evaluation`` does; exclusion uses all train items.
- Time budget: ``--time-budget-minutes`` is ``TrainConfig.time_budget_minutes``: training stops at
  the first epoch end past it (validation included); early stopping may end it sooner.
- Training-free models (``popularity``, ``gfcf``, ``dnfilter``) are fitted with the
  ``--param NAME=VALUE`` settings (their own parameters) and ``--seed``; their wall time is fit
  plus evaluation. A ``--distill`` teacher takes ``--distill-param NAME=VALUE``.
- The validation Recall@20-versus-minutes curve comes from ``train_model``'s history, timed by
  the ``log`` callback (``time.perf_counter()`` at each epoch's log line, after that epoch's
  validation pass); minutes count from the ``train_model`` call, set-up included.
- Wall time per model: training, embedding and
  test evaluation; loading the data and building the shared train matrices are reported once.
- Peak memory: VmHWM is reset (``/proc/self/clear_refs``) before each model, so ``peak_rss_mib``
  is that model's own peak (data and shared structures included); ``process_peak_rss_mib`` is
  ``ru_maxrss`` after the model (monotone over the run).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import (
    RESULTS,
    fmt,
    hwm_mib,
    process_peak_mib,
    quiet_sparse_warnings,
    reset_hwm,
    rss_mib,
    write_results,
)
from recs_pipeline.config import SettingError
from recs_pipeline.evaluation.metrics import evaluate_scorer, inner_product
from recs_pipeline.evaluation.selection import (
    DEFAULT_CANDIDATES,
    SelectionError,
    check_candidates,
    select,
)
from recs_pipeline.graph.bipartite import InteractionGraph, interaction_csr, normalized_adjacency
from recs_pipeline.models import MODELS, TRAINING_FREE, declared_params, fit_training_free
from recs_pipeline.training import TrainConfig, train_model
from recs_pipeline.training.cli import (
    add_param_flags,
    add_setting_flags,
    params_from_args,
    settings_from_args,
)

KS = (10, 20, 50)
PAPER = {  # published figures on this split, for the table's reference line only
    "mf": {"recall@20": 0.1291, "ndcg@20": 0.1109, "source": "NGCF paper (SIGIR 2019) Table 2, MF"},
    "lightgcn": {
        "recall@20": 0.1830,
        "ndcg@20": 0.1554,
        "source": "LightGCN paper Table 3, 3 layers",
    },
}


def _parse_lines(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(users, items) of a ``user item item ...`` per line file, without per-token Python loops.

    All integers are parsed in one ``np.fromstring`` call; token boundaries and line numbers
    come from vectorised byte tests, so the first token of each line is known to be the user.
    """
    data = path.read_bytes()
    buf = np.frombuffer(data, dtype=np.uint8)
    whitespace = (buf == ord(" ")) | (buf == ord("\n")) | (buf == ord("\t")) | (buf == ord("\r"))
    previous_ws = np.concatenate(([True], whitespace[:-1]))
    token_start = ~whitespace & previous_ws
    line_of_token = np.cumsum(buf == ord("\n"))[token_start]
    values = np.fromstring(data, dtype=np.int64, sep=" ")
    if values.size != line_of_token.size:
        raise ValueError(
            f"{path}: parsed {values.size} integers but found {line_of_token.size} tokens"
            " (non-integer text?)"
        )
    first = np.ones(values.size, dtype=bool)
    first[1:] = line_of_token[1:] != line_of_token[:-1]
    counts = np.diff(np.flatnonzero(np.append(first, True)))  # tokens per non-empty line
    users = np.repeat(values[first], counts - 1)
    items = values[~first]
    if values.size and values.min() < 0:
        raise ValueError(f"{path}: negative id")
    return users, items


def load_lightgcn_split(path: str | Path):
    """Load ``train.txt`` / ``test.txt`` of a LightGCN-format split (0-based ids).

    Returns ``(n_users, n_items, train_users, train_items, test_users, test_items)``: the two
    counts as ints (max id + 1 over both files) and the edge lists as int64 tensors, in file
    order (per line, user then the line's items).
    """
    path = Path(path)
    train_u, train_i = _parse_lines(path / "train.txt")
    test_u, test_i = _parse_lines(path / "test.txt")
    n_users = int(max(train_u.max(initial=-1), test_u.max(initial=-1))) + 1
    n_items = int(max(train_i.max(initial=-1), test_i.max(initial=-1))) + 1
    return (
        n_users,
        n_items,
        *(torch.from_numpy(np.ascontiguousarray(a)) for a in (train_u, train_i, test_u, test_i)),
    )


HOLDOUTS = ("random", "file-order")


def holdout_order(n_edges: int, seed: int, holdout: str = "random") -> torch.Tensor:
    """The ``last_ts`` that ``validation_split`` holds a user's "latest" train edges out by.

    The split has no timestamps. ``random``: a seeded permutation, so each validation edge is a
    uniformly random train item. ``file-order``: the position in ``train.txt``, the line's last
    items taken as its latest. The order within a line is not random: the mean train degree of
    the items rises with their position in the line (67.6 in its first tenth to 82.1 in its
    last, measured on train alone), as it would if each line ran oldest to newest.
    """
    if holdout == "file-order":
        return torch.arange(n_edges)
    if holdout != "random":
        raise ValueError(f"holdout {holdout!r}: choose from {HOLDOUTS}")
    return torch.randperm(n_edges, generator=torch.Generator().manual_seed(seed))


def fit_filter(config: TrainConfig, name: str, seed: int, data) -> tuple:
    """The training-free model ``name`` (``config.model``) fitted on the train edges of ``data``
    (a loaded split) with its settings ``config.model_params`` and ``seed`` (its randomised
    SVD's start, unless the settings name one); and the settings it ran with."""
    n_users, n_items, train_u, train_i = data[:4]
    params = ({"seed": seed} if "seed" in declared_params(name) else {}) | (
        config.model_params or {}
    )
    model = TRAINING_FREE[name](**params).fit(train_u, train_i, n_users, n_items)
    return model, model.params() if hasattr(model, "params") else params


def split_checks(n_users, n_items, train_u, train_i, test_u, test_i) -> dict:
    """Counts and sanity figures of a loaded split (duplicates, train/test overlap)."""
    train_keys = torch.unique(train_u * n_items + train_i)
    test_keys = torch.unique(test_u * n_items + test_i)
    return {
        "n_users": n_users,
        "n_items": n_items,
        "train_interactions": train_u.numel(),
        "test_interactions": test_u.numel(),
        "train_duplicates": train_u.numel() - train_keys.numel(),
        "test_duplicates": test_u.numel() - test_keys.numel(),
        "train_test_overlap": int(torch.isin(test_keys, train_keys).sum()),
        "test_users": int(torch.unique(test_u).numel()),
        "train_items_seen": int(torch.unique(train_i).numel()),
    }


class TimedLog:
    """A ``log`` callback for ``train_model``: prints and timestamps every line."""

    EPOCH = re.compile(r"^epoch (\d+):")

    def __init__(self, prefix: str, echo: bool = True) -> None:
        self.prefix, self.echo = prefix, echo
        self.started = time.perf_counter()
        self.lines: list[tuple[float, str]] = []

    def __call__(self, message: str) -> None:
        elapsed = time.perf_counter() - self.started
        self.lines.append((elapsed, message))
        if self.echo:
            print(f"  [{self.prefix} {elapsed / 60:6.2f} min] {message}", flush=True)

    def epoch_times(self) -> dict[int, float]:
        """Epoch number → seconds since the ``train_model`` call at its log line."""
        times = {}
        for elapsed, message in self.lines:
            match = self.EPOCH.match(message)
            if match:
                times[int(match.group(1))] = elapsed
        return times


# The TrainConfig settings this benchmark takes as flags (add_setting_flags), with its defaults:
# the CPU regime measured best so far (docs/benchmarks/gowalla.md), not the papers'. The
# validation users' share of edges held out is the test split's (20%).
TRAIN_FLAGS = {
    "epochs": 1000,
    "batch_size": 8192,
    "lr": 5e-3,
    "l2": 1e-4,
    "loss": "softmax",
    "temperature": 0.2,
    "uniform_negatives": 0,
    "shared_negatives": 2048,
    "init": "spectral",
    "dim": 64,
    "layers": 3,
    "patience": 4,
    "eval_every": 1,
    "val_users": 5000,
    "val_fraction": 0.2,
    "plateau_decay": 0.5,
    "distill": None,
    "distill_k": 20,
    "distill_weight": 1.0,
    "distill_own_weight": None,
    "distill_ranked": False,
    "distill_listwise": False,
    "seed": 0,
    "threads": 2,
    "time_budget_minutes": 30.0,
}


def train_config(args, model: str) -> TrainConfig:
    return TrainConfig(
        model=model,
        max_hard_negatives=0,
        val_k=20,
        **settings_from_args(args, TRAIN_FLAGS),
        **training_free_params(args, model),
    )


def training_free_params(args, model: str) -> dict:
    """``model_params`` and ``distill_params`` of ``model``'s config: ``--param`` is the
    training-free models' of ``--models`` (a trained one has its settings in its own flags),
    ``--distill-param`` the teacher's."""
    params = params_from_args(args, model, args.distill)
    if model not in TRAINING_FREE:
        params["model_params"] = None
    return params


def run_trained(
    args, name, data, last_ts, full_adjacency
) -> tuple[dict, torch.Tensor, torch.Tensor]:
    n_users, n_items, train_u, train_i = data[:4]
    record: dict = {}
    config = train_config(args, name)
    graph = InteractionGraph.from_edges(n_users, n_items, train_u, train_i, last_ts)
    log = TimedLog(name, echo=not args.quiet)
    started = time.perf_counter()
    result = train_model(graph, config, log=log)
    train_seconds = time.perf_counter() - started
    times = log.epoch_times()
    curve, epoch_seconds, eval_epoch_seconds = [], [], []
    previous = 0.0
    for entry in result.history:
        at = times.get(entry["epoch"])
        point = {**entry, "seconds": at, "minutes": None if at is None else at / 60}
        curve.append(point)
        if at is not None and entry["epoch"] > 1:
            (eval_epoch_seconds if "val_recall" in entry else epoch_seconds).append(at - previous)
        previous = at if at is not None else previous
    record.update(
        {
            "config": dataclasses.asdict(config),
            "train_seconds": train_seconds,
            "train_model_seconds": result.seconds,
            "epochs_run": len(result.history),
            "best_epoch": result.best_epoch,
            "best_val_recall@20": result.best_val_recall,
            "seconds_to_first_epoch_log": times.get(1),
            "median_epoch_seconds_without_validation": float(np.median(epoch_seconds))
            if epoch_seconds
            else None,
            "median_epoch_seconds_with_validation": float(np.median(eval_epoch_seconds))
            if eval_epoch_seconds
            else None,
            "val_curve": [
                {
                    "minutes": p["minutes"],
                    "epoch": p["epoch"],
                    "val_recall@20": p["val_recall"],
                    "val_ndcg@20": p["val_ndcg"],
                }
                for p in curve
                if "val_recall" in p
            ],
            "history": curve,
        }
    )
    started = time.perf_counter()
    with torch.no_grad():
        user_emb, item_emb = result.model.embed(full_adjacency)
    record["embed_seconds"] = time.perf_counter() - started
    return record, user_emb.detach(), item_emb.detach()


def run_auto(args, data) -> tuple[dict, object]:
    """``--models auto``: the pipeline's model selection on a validation slice of the train
    file (the test file is not passed to it), the champion refitted on the whole train file.
    Returns the record and the champion's score function (the caller tests it once)."""
    n_users, n_items, train_u, train_i = data[:4]
    order = torch.argsort(train_u * n_items + train_i, stable=True)
    no_test = torch.zeros(0, dtype=torch.long)
    graph = InteractionGraph(
        [str(u) for u in range(n_users)],
        [str(i) for i in range(n_items)],
        train_u[order],
        train_i[order],
        torch.zeros(train_u.numel(), dtype=torch.long),  # no timestamps: a random holdout
        no_test,
        no_test,
    )
    candidates = [c.strip() for c in args.auto_candidates.split(",") if c.strip()]
    started = time.perf_counter()
    chosen = select(
        graph,
        candidates=candidates,
        budget_seconds=args.budget_minutes * 60,
        seed=args.seed,
        val_users=args.val_users,
        val_fraction=args.val_fraction,
        train=train_config(args, "lightgcn"),
        max_trials=args.max_trials,
        log=TimedLog("auto", echo=not args.quiet),
    )
    selection_seconds = time.perf_counter() - started
    print(f"auto: chose {chosen.model} {chosen.params} (validation recall@20 {chosen.recall:.4f})")
    refit_started = time.perf_counter()
    if chosen.model in TRAINING_FREE:
        params = dict(chosen.params)
        params |= {"seed": args.seed} if "seed" in declared_params(chosen.model) else {}
        score_fn = fit_training_free(
            chosen.model, train_u, train_i, n_users, n_items, **params
        ).scores
    else:
        config = dataclasses.replace(train_config(args, chosen.model), **chosen.params)
        # The file's edge order, as the selection's graph is sorted: the refit trains on the
        # train file itself (with no timestamps, its validation slice follows that order).
        refit = InteractionGraph.from_edges(n_users, n_items, train_u, train_i, graph.train_last_ts)
        result = train_model(refit, config, log=lambda _: None)
        adjacency = normalized_adjacency(train_u, train_i, n_users, n_items)
        with torch.no_grad():
            user_emb, item_emb = result.model.embed(adjacency)
        score_fn = inner_product(user_emb.detach(), item_emb.detach())
    record = {
        "chosen": chosen.model,
        "settings": chosen.params,
        "trials": len(chosen.trials),
        "trials_by_state": {
            state: sum(t.state == state for t in chosen.trials)
            for state in sorted({t.state for t in chosen.trials})
        },
        "validation": {
            "recall@20": chosen.recall,
            "ndcg@20": chosen.ndcg,
            "users": chosen.validation_users,
        },
        "leaderboard": [
            {"model": t.model, "recall@20": t.recall, "ndcg@20": t.ndcg, "settings": t.params}
            for t in chosen.leaderboard()
        ],
        "selection_seconds": selection_seconds,
        "refit_seconds": time.perf_counter() - refit_started,
        "candidates": candidates,
        "budget_minutes": args.budget_minutes,
    }
    return record, score_fn


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.paper_split",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", required=True, help="folder with train.txt and test.txt")
    parser.add_argument(
        "--models",
        default="popularity,mf,lightgcn",
        help=f"comma-separated: popularity or registered models {sorted(MODELS)}, or auto (the"
        " pipeline's model selection on a validation slice of train, then the test once)",
    )
    parser.add_argument(
        "--budget-minutes", type=float, default=15.0, help="auto: the selection's time budget"
    )
    parser.add_argument(
        "--auto-candidates",
        default=",".join(DEFAULT_CANDIDATES),
        help="auto: the models the selection considers",
    )
    parser.add_argument("--max-trials", type=int, default=None, help="auto: cap on trials")
    add_setting_flags(parser, TRAIN_FLAGS)
    add_param_flags(parser)
    parser.add_argument(
        "--holdout",
        choices=HOLDOUTS,
        default="random",
        help="which train edges are a validation user's latest (holdout_order)",
    )
    parser.add_argument("--quiet", action="store_true", help="do not echo train_model's log")
    parser.add_argument(
        "--save-embeddings",
        default=None,
        help="folder (outside the project) for each trained model's final embeddings",
    )
    parser.add_argument(
        "--out", default=None, help="JSON path (default benchmarks/results/gowalla.json)"
    )
    return parser


def _default_out(data: str) -> str:
    """benchmarks/results/gowalla.json for the Gowalla folder (its history), else
    paper_split_<folder>.json."""
    name = Path(data).resolve().name
    return str(RESULTS / ("gowalla.json" if "gowalla" in name else f"paper_split_{name}.json"))


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_sparse_warnings()

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in MODELS and m not in TRAINING_FREE and m != "auto":
            parser.error(
                f"unknown model {m!r}; choose from {sorted(MODELS) + sorted(TRAINING_FREE)}"
            )
    # --param (and a --filter-* alias without a teacher) sets a training-free model's settings.
    own = params_from_args(args, models[0] if models else None, args.distill)["model_params"]
    if own and not any(m in TRAINING_FREE for m in models):
        parser.error("--param sets a training-free model's settings: none is among --models")
    try:  # every model's settings checked before the first fit, not after it
        configs = {m: train_config(args, m) for m in models if m != "auto"}
        if "auto" in models:
            check_candidates(args.auto_candidates.split(","))
            if not args.budget_minutes > 0:
                parser.error(f"--budget-minutes must be > 0, not {args.budget_minutes:g}")
    except (SettingError, SelectionError) as error:
        parser.error(str(error))
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    started = time.perf_counter()
    data = load_lightgcn_split(args.data)
    load_seconds = time.perf_counter() - started
    n_users, n_items, train_u, train_i, test_u, test_i = data
    checks = split_checks(*data)
    print(
        f"loaded {args.data} in {load_seconds:.2f} s: {n_users} users, {n_items} items,"
        f" {train_u.numel()} train / {test_u.numel()} test interactions"
    )

    started = time.perf_counter()
    exclude = interaction_csr(train_u, train_i, n_users, n_items)
    full_adjacency = normalized_adjacency(train_u, train_i, n_users, n_items)
    last_ts = holdout_order(train_u.numel(), args.seed, args.holdout)
    prep_seconds = time.perf_counter() - started

    results = {}
    for name in models:
        reset_ok = reset_hwm()
        rss_before = rss_mib()
        started = time.perf_counter()
        if name == "auto":
            record, score_fn = run_auto(args, data)
        elif name in TRAINING_FREE:
            model, settings = fit_filter(configs[name], name, args.seed, data)
            record = {"fit_seconds": time.perf_counter() - started, "settings": settings}
            score_fn = model.scores
        else:
            record, user_emb, item_emb = run_trained(args, name, data, last_ts, full_adjacency)
            score_fn = inner_product(user_emb, item_emb)
            if args.save_embeddings:
                path = Path(args.save_embeddings) / f"{name}_embeddings.pt"
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save({"user_emb": user_emb, "item_emb": item_emb}, path)
        eval_started = time.perf_counter()
        metrics = evaluate_scorer(
            score_fn, n_items, exclude, test_u, test_i, tuple(k for k in KS if k <= n_items)
        )
        record["eval_seconds"] = time.perf_counter() - eval_started
        record["wall_seconds"] = time.perf_counter() - started
        record["test"] = {f"{metric}@{k}": value for (metric, k), value in metrics.items()}
        record["recall@20"] = metrics[("recall", 20)]
        record["ndcg@20"] = metrics[("ndcg", 20)]
        record["rss_before_mib"] = rss_before
        record["peak_rss_mib"] = hwm_mib() if reset_ok else None
        record["process_peak_rss_mib"] = process_peak_mib()
        if name in PAPER:
            record["paper"] = PAPER[name]
        results[name] = record
        del score_fn
        print(
            f"{name}: recall@20 {record['recall@20']:.4f}, ndcg@20 {record['ndcg@20']:.4f},"
            f" wall {record['wall_seconds']:.1f} s",
            flush=True,
        )

    print()
    header = (
        f"{'model':<11}{'epochs':>7}{'best':>6}{'val R@20':>10}{'train s':>9}{'eval s':>8}"
        f"{'wall s':>9}{'peak MiB':>10}{'R@20':>8}{'N@20':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(
            f"{name:<11}{r.get('epochs_run', '-')!s:>7}{r.get('best_epoch', '-')!s:>6}"
            f"{fmt(r.get('best_val_recall@20')):>10}{fmt(r.get('train_seconds'), '.1f'):>9}"
            f"{fmt(r['eval_seconds'], '.1f'):>8}{fmt(r['wall_seconds'], '.1f'):>9}"
            f"{fmt(r['peak_rss_mib'] or r['process_peak_rss_mib'], '.0f'):>10}"
            f"{r['recall@20']:>8.4f}{r['ndcg@20']:>8.4f}"
        )
    for name, r in results.items():
        if r.get("val_curve"):
            points = ", ".join(
                f"{p['minutes']:.1f} min {p['val_recall@20']:.4f}" for p in r["val_curve"]
            )
            print(f"{name} validation Recall@20 vs minutes: {points}")
    print("(papers, Gowalla: LightGCN R@20 0.1830 N@20 0.1554; MF-BPR R@20 0.1291 N@20 0.1109)")

    payload = {
        "data": str(args.data),
        "args": vars(args),
        "split": checks,
        "load_seconds": load_seconds,
        "prep_seconds": prep_seconds,
        "protocol": {
            "metric": "evaluate_embeddings: full ranking, train items excluded, mean over test users",
            "validation": "train_model's slice carved from train; last_ts = "
            f"holdout_order({args.holdout!r})",
            "test_embeddings": "best-validation state, propagated over the full train graph",
            "peak_rss_mib": "VmHWM since a reset (clear_refs) just before the model",
        },
        "models": results,
    }
    path = write_results("paper_split", payload, args.out or _default_out(args.data))
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
