"""The tables inside the hand-written docs pages, produced from their sources.

Each producer returns a Markdown table (or two) for one ``<!-- generated: NAME -->`` block.
Benchmark tables read ``benchmarks/results/*.json`` and end with one stamp: the machine(s), the
date(s) and commit(s) the files recorded (``recorded``, written by
``benchmarks._common.write_results``) and the files themselves. Labels of rows (what a run
was) are written here; every figure comes from the files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

from docsgen import RESULTS, table_cell

TABLES: dict[str, Callable[[], str]] = {}


def table(name: str) -> Callable[[Callable[[], str]], Callable[[], str]]:
    def register(produce: Callable[[], str]) -> Callable[[], str]:
        TABLES[name] = produce
        return produce

    return register


# ---------------------------------------------------------------------------------------------
# helpers


@cache
def load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def f4(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def pair(metrics: dict | None, k: int = 20) -> str:
    """``Recall@K / NDCG@K`` of a metrics dict."""
    if not metrics:
        return "–"
    return f"{f4(metrics.get(f'recall@{k}'))} / {f4(metrics.get(f'ndcg@{k}'))}"


def secs(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 90:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s" if value >= 1 else f"{value:.2f} s"


def number(value: float | None, spec: str = ",.0f") -> str:
    return "–" if value is None else format(value, spec)


def cell(value: Any) -> str:
    return table_cell(value)


def render(header: list[str], rows: Iterable[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _machine(machine: dict) -> str:
    cores = machine.get("sched_affinity") or machine.get("nproc")
    return (
        f"{cores} cores ({machine.get('processor') or 'CPU'}), Python {machine.get('python')},"
        f" torch {machine.get('torch')} with {_plural(machine.get('torch_threads'), 'thread')}"
    )


def _plural(n: Any, word: str) -> str:
    shown = f"{n:g}" if isinstance(n, float) else str(n)
    return f"{shown} {word}" + ("" if n == 1 else "s")


def _ordered(values: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for value in values:
        if value and value not in seen:
            seen.append(value)
    return seen


def stamp(*files: str) -> str:
    """One stamp for a table made from ``files``: machine, date and commit, sources."""
    docs = [load(name) for name in files]
    machines = _ordered(_machine(doc.get("machine") or {}) for doc in docs)
    recorded = sorted(
        ((doc.get("recorded") or {}).get("date") or "", (doc.get("recorded") or {}).get("commit"))
        for doc in docs
    )
    dates = _ordered(date for date, _ in recorded)
    commits = _ordered(commit for _, commit in recorded if commit)
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}" if dates else "undated"
    if len(commits) == 1:
        at = f"at {commits[0]}"
    elif 1 < len(commits) <= 3:
        at = "at " + ", ".join(commits[:-1]) + f" and {commits[-1]}"
    elif commits:
        at = f"at {len(commits)} commits, {commits[0]} to {commits[-1]}"
    else:
        at = "commit not recorded"
    sources = ", ".join(f"`{name}.json`" for name in files)
    return (
        f"<small>Measured on {'; '.join(machines)}. Recorded {when} {at}."
        f" Source: {sources} in `benchmarks/results/`.</small>"
    )


def command(name: str) -> str:
    """The file's command line as ``python -m benchmarks.X ...``, its ``--out`` the file's own
    place (some files were written elsewhere and copied in)."""
    argv = list(load(name)["command"])
    if "-m" in argv:
        argv = argv[argv.index("-m") + 1 :]
    words = ["python", "-m", *argv]
    if "--out" in words:
        at = words.index("--out") + 1
        if at < len(words):
            words[at] = f"benchmarks/results/{name}.json"
    return " ".join(words)


def block(body: str, *files: str) -> str:
    return f"{body}\n\n{stamp(*files)}"


# ---------------------------------------------------------------------------------------------
# the index of results


@table("benchmark-commands")
def benchmark_commands() -> str:
    rows = [
        [f"`{path.stem}.json`", f"`{command(path.stem)}`"]
        for path in sorted(RESULTS.glob("*.json"))
    ]
    return render(["result file", "command"], rows)


# ---------------------------------------------------------------------------------------------
# Gowalla (the LightGCN/NGCF split)

_CHEBYCF = "0.1941 / 0.1616 (ChebyCF, test-tuned)"
GOWALLA_MODELS = [
    ("popularity", "gowalla", "popularity", "–"),
    ("MF (dim 64)", "gowalla_mf", "mf", None),
    ("LightGCN (3 layers, dim 64)", "gowalla", "lightgcn", None),
    ("GF-CF (α 0.3, 256 singular vectors)", "gowalla_gfcf", "gfcf", "0.1849 / 0.1518 (GF-CF paper)"),
    ("dnfilter at its defaults (a ½, β 0.2, γ 0.3, w 0.1, k 768, c 0)", "gowalla_dnfilter", "dnfilter", _CHEBYCF),
    ("dnfilter, the file-order pick (a 0.3, β 0.3, γ 0.5, w 0.1, c 1.0, k 1024), SVD seed 0", "gowalla_dnfilter_file_order_pick_seed0", "dnfilter", _CHEBYCF),
    ("the same, SVD seed 1", "gowalla_dnfilter_file_order_pick_seed1", "dnfilter", _CHEBYCF),
    ("the same, SVD seed 2", "gowalla_dnfilter_file_order_pick_seed2", "dnfilter", _CHEBYCF),
]  # fmt: skip


def _paper(model: dict, typed: str | None) -> str:
    if typed is not None:
        return typed
    paper = model.get("paper") or {}
    if not paper:
        return "–"
    return f"{paper['recall@20']:.4f} / {paper['ndcg@20']:.4f} ({paper.get('source', '')})"


@table("gowalla-models")
def gowalla_models() -> str:
    rows = []
    for label, name, key, typed in GOWALLA_MODELS:
        model = load(name)["models"][key]
        epochs = f"{model['best_epoch']} of {model['epochs_run']}" if "epochs_run" in model else "–"
        rows.append(
            [
                label,
                f4(model["recall@20"]),
                f4(model["ndcg@20"]),
                secs(model["wall_seconds"]),
                number(model.get("peak_rss_mib")),
                epochs,
                _paper(model, typed),
            ]
        )
    header = ["model", "Recall@20", "NDCG@20", "wall", "peak MiB", "best epoch", "published"]
    return block(render(header, rows), *_ordered(n for _, n, _, _ in GOWALLA_MODELS))


GOWALLA_STUDENTS = [
    ("GF-CF, each teacher item weight 1 (τ 0.2)", "gowalla_distill"),
    ("GF-CF, each teacher item weight ½", "gowalla_distill_w05"),
    ("GF-CF, ranked (τ 0.1)", "gowalla_distill_ranked"),
    ("dnfilter defaults, ranked", "gowalla_distill_dnfilter"),
    ("dnfilter defaults, ranked, teacher weight 2", "gowalla_distill_dnfilter_w2"),
    ("dnfilter user-exponent pick (a 0.3, w 0.3, k 1024; then its default), ranked", "gowalla_distill_dnfilter_a03"),
    ("dnfilter defaults, ranked", "gowalla_distill_dnfilter_file_order_default_teacher"),
    ("file-order pick, ranked", "gowalla_distill_dnfilter_file_order"),
    ("file-order pick, ranked, the user's own edges dropped", "gowalla_distill_dnfilter_file_order_own0"),
    ("file-order pick, ranked, teacher weight 2", "gowalla_distill_dnfilter_file_order_w2"),
    ("file-order pick, list-wise, teacher weight 2", "gowalla_distill_dnfilter_file_order_w2_listwise"),
    ("**file-order pick, list-wise, teacher weight 4**", "gowalla_distill_dnfilter_file_order_w4_listwise"),
    ("the same, seed 1", "gowalla_distill_dnfilter_file_order_w4_listwise_seed1"),
    ("file-order pick, ranked, dim 128 (a diagnostic)", "gowalla_distill_dnfilter_file_order_dim128"),
]  # fmt: skip


def _best_validation(model: dict) -> tuple[float | None, float | None]:
    for point in model.get("val_curve") or []:
        if point.get("epoch") == model.get("best_epoch"):
            return point.get("val_recall@20"), point.get("val_ndcg@20")
    return model.get("best_val_recall@20"), None


@table("gowalla-students")
def gowalla_students() -> str:
    rows = []
    for label, name in GOWALLA_STUDENTS:
        doc = load(name)
        model = doc["models"]["lightgcn"]
        val_recall, val_ndcg = _best_validation(model)
        rows.append(
            [
                label,
                doc["args"].get("holdout", "random"),
                f4(model["recall@20"]),
                f4(model["ndcg@20"]),
                f"{f4(val_recall)} / {f4(val_ndcg)}",
                f"{model['best_epoch']} of {model['epochs_run']}",
                secs(model["wall_seconds"]),
            ]
        )
    header = [
        "teacher and regime",
        "validation slice",
        "Recall@20",
        "NDCG@20",
        "validation R@20 / N@20",
        "best epoch",
        "wall",
    ]
    return block(render(header, rows), *(n for _, n in GOWALLA_STUDENTS))


GOWALLA_GRIDS = [
    ("the sharpening step c (β, γ, w, k; a ½)", "gowalla_filters"),
    ("the user exponent a (β, γ, w, k; c 0)", "gowalla_filters_user_exponent"),
    ("file-order grid 1", "gowalla_filters_file_order"),
    ("file-order grid 2 (wider)", "gowalla_filters_file_order_wide"),
    ("file-order grid 3 (the edges of grid 2)", "gowalla_filters_file_order_edges"),
]


def _settings(chosen: dict) -> str:
    names = [("user_exponent", "a"), ("beta", "β"), ("gamma", "γ"), ("weight", "w")]
    names += [("sharpen", "c"), ("k", "k")]
    return ", ".join(f"{short} {chosen[key]:.3g}" for key, short in names if key in chosen)


@table("gowalla-filter-grids")
def gowalla_filter_grids() -> str:
    rows = []
    for label, name in GOWALLA_GRIDS:
        doc = load(name)
        rows.append(
            [
                label,
                doc["args"].get("holdout", "random"),
                doc["seconds"]["search_points"],
                _settings(doc["chosen"]),
                pair(doc["validation"]),
                pair(doc["test"]),
                secs(doc["seconds"]["end_to_end_fit_and_test"]),
            ]
        )
    header = [
        "grid",
        "validation slice",
        "points",
        "chosen on validation",
        "validation R@20 / N@20",
        "test R@20 / N@20",
        "fit + test",
    ]
    return block(render(header, rows), *(n for _, n in GOWALLA_GRIDS))


#: The Gowalla --models auto runs, one per seed (the issue asks for a second seed).
GOWALLA_AUTO_RUNS = ("gowalla_auto", "gowalla_auto_seed1")


@table("gowalla-auto")
def gowalla_auto() -> str:
    rows = []
    for name in GOWALLA_AUTO_RUNS:
        doc = load(name)
        auto = doc["models"]["auto"]
        states = ", ".join(f"{n} {s.lower()}" for s, n in auto["trials_by_state"].items())
        rows.append(
            [
                doc["args"]["seed"],
                auto["chosen"],
                _settings(auto["settings"]),
                f"{auto['trials']} ({states})",
                pair(auto["validation"]),
                pair(auto),
                secs(auto["selection_seconds"]),
                secs(auto["refit_seconds"]),
                secs(auto["eval_seconds"]),
            ]
        )
    summary = render(
        ["seed", "chosen", "settings", "trials", "validation R@20 / N@20", "test R@20 / N@20", "selection", "refit", "test evaluation"],
        rows,
    )  # fmt: skip
    auto = load(GOWALLA_AUTO_RUNS[0])["models"]["auto"]
    board = render(
        ["candidate (seed 0)", "best validation R@20 / N@20", "its settings"],
        [
            [
                entry["model"],
                pair(entry),
                ", ".join(
                    f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in (entry.get("settings") or {}).items()
                )
                or "defaults",
            ]
            for entry in auto["leaderboard"]
        ],
    )
    return block(f"{summary}\n\n{board}", *GOWALLA_AUTO_RUNS)


@table("paper-split-scale")
def paper_split_scale() -> str:
    doc = load("paper_split_100k_items")
    auto = doc["models"]["auto"]
    states = ", ".join(f"{n} {s.lower()}" for s, n in auto["trials_by_state"].items())
    rows = [[
        f"{doc['split']['n_users']:,} users, {doc['split']['n_items']:,} items,"
        f" {doc['split']['train_interactions']:,} train + {doc['split']['test_interactions']:,}"
        " test",
        f"{auto['budget_minutes']:g} min", f"{auto['trials']} ({states})", auto["chosen"],
        secs(auto["selection_seconds"]), secs(auto["wall_seconds"]),
        f"{auto['peak_rss_mib']:,.0f}",
    ]]  # fmt: skip
    header = ["split", "budget", "trials", "chosen", "selection", "selection + refit + test", "peak MiB"]  # fmt: skip
    return block(render(header, rows), "paper_split_100k_items")


@table("gowalla-lecture")
def gowalla_lecture() -> str:
    return block(_variants(load("gowalla_lecture")["results"]), "gowalla_lecture")


def _variants(results: dict, labels: dict | None = None) -> str:
    rows = []
    for key, result in results.items():
        rows.append(
            [
                (labels or {}).get(key, key),
                f4(result.get("recall@20")),
                f4(result.get("ndcg@20")),
                f4(result.get("best_val_recall@20")),
                result.get("epochs_run", "–"),
                number(result.get("seconds"), ".1f"),
                number(result.get("negative_embeddings_per_batch")),
                number(result.get("negative_scores_per_batch")),
            ]
        )
    header = [
        "variant (model/loss/negatives)",
        "Recall@20",
        "NDCG@20",
        "val R@20",
        "epochs",
        "s",
        "negative embeddings per batch",
        "negative scores per batch",
    ]
    return render(header, rows)


@table("gowalla-calibration")
def gowalla_calibration() -> str:
    rows = []
    for slice_name, name in (
        ("random", "gowalla_calibration"),
        ("file-order", "gowalla_calibration_file_order"),
    ):
        results = load(name)["results"]
        for model in ("popularity", "gfcf"):
            val, test = results["validation"][model], results["test"][model]
            rows.append(
                [
                    slice_name,
                    model,
                    pair(val),
                    pair(test),
                    f"{test['recall@20'] / val['recall@20']:.3f} / {test['ndcg@20'] / val['ndcg@20']:.3f}",
                ]
            )
    header = [
        "validation slice",
        "model",
        "validation R@20 / N@20",
        "test R@20 / N@20",
        "test / validation",
    ]
    return block(render(header, rows), "gowalla_calibration", "gowalla_calibration_file_order")  # fmt: skip


@table("gowalla-rank-limit")
def gowalla_rank_limit() -> str:
    doc = load("gowalla_rank_limit")
    results = doc["results"]
    rows = [["the teacher itself (file-order pick)", pair(results["teacher"]["test"])]]
    for transform in ("standardised", "raw"):
        for rank, metrics in (results.get(transform) or {}).get("by_rank", {}).items():
            rows.append([f"rank {rank}, {transform} scores", pair(metrics)])
    return block(render(["rank-k least-squares approximation", "test R@20 / N@20"], rows), "gowalla_rank_limit")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# MovieLens-100K (temporal split)

MOVIELENS_LISTWISE = "lightgcn/softmax/shared+distill-listwise:dnfilter"


@table("movielens-variants")
def movielens_variants() -> str:
    results = dict(load("movielens")["results"])
    results[MOVIELENS_LISTWISE] = load("movielens_distill_listwise")["results"][MOVIELENS_LISTWISE]
    labels = {
        "pinsage+features/bpr/uniform": "pinsage+genres/bpr/uniform",
        MOVIELENS_LISTWISE: "lightgcn/softmax/shared, list-wise distillation from dnfilter at teacher weight 4 (from `movielens_distill_listwise.json`)",
    }  # fmt: skip
    return block(_variants(results, labels), "movielens", "movielens_distill_listwise")


@table("movielens-training-free")
def movielens_training_free() -> str:
    doc = load("movielens_filters")
    validation = doc.get("training_free_on_validation") or {}
    rows = [
        [key, pair(result), pair(validation.get(key))] for key, result in doc["results"].items()
    ]
    sharpened = load("movielens_filters_sharpened")["results"]["dnfilter"]
    rows.append(
        [
            "dnfilter with Gowalla's sharpened pick as its defaults (β 0.2, γ 0.5, w 0.1, c 0.9, k 1024)",
            pair(sharpened),
            "–",
        ]
    )
    header = ["model", "test R@20 / N@20", "validation R@20 / N@20"]
    return block(render(header, rows), "movielens_filters", "movielens_filters_sharpened")


@table("movielens-cold")
def movielens_cold() -> str:
    cold = load("movielens")["cold_items"]
    labels = {
        "pinsage+genres": "PinSAGE + genre features",
        "pinsage": "PinSAGE, ids only (every cold item gets the same embedding)",
        "genre-profile": "genre profile (user's genre counts · item's genres)",
        "random (expected)": "random (expected)",
    }
    rows = [
        [labels.get(key, key), f4(result.get("recall@20")), f4(result.get("ndcg@20"))]
        for key, result in cold["results"].items()
    ]
    return block(render(["model", "cold Recall@20", "cold NDCG@20"], rows), "movielens")


# ---------------------------------------------------------------------------------------------
# model selection


@table("selection-regret-defaults")
def selection_regret_defaults() -> str:
    logs = load("selection_regret")["logs"]
    names = list(logs)
    candidates = _ordered(c for log in logs.values() for c in log["candidates"])
    rows = [
        [candidate] + [pair(logs[name]["candidates"].get(candidate)) for name in names]
        for candidate in candidates
    ]
    header = ["candidate at its defaults"] + [f"{name}: test R@20 / N@20" for name in names]
    return block(render(header, rows), "selection_regret")


@table("selection-regret-search")
def selection_regret_search() -> str:
    doc = load("selection_regret")
    rows = []
    for name, log in doc["logs"].items():
        best = log["best_candidate"]
        for trial in log["auto"]:
            rows.append(
                [
                    name,
                    trial["seed"],
                    trial["chosen"],
                    trial["trials"],
                    f4(trial["validation_recall@20"]),
                    # Where the champion loses on test: did validation disagree, or the search
                    # miss? The best single candidate's own validation score says which.
                    f4(trial.get("validation_recall@20_at_defaults", {}).get(best)),
                    pair(trial),
                ]
            )
        rows.append(
            [
                f"**{name}**",
                "mean ± spread",
                f"best at defaults: {best}",
                "",
                "",
                "",
                f"**{f4(log['auto_mean_recall@20'])} ± {f4(log['seed_spread_recall@20'])}**"
                f" vs {f4(log['best_candidate_recall@20'])}: target"
                f" {'met' if log['target_met'] else 'missed'}",
            ]
        )
    header = [
        "log", "seed", "chosen", "trials", "validation R@20",
        "best candidate's validation R@20 at its defaults", "test R@20 / N@20",
    ]  # fmt: skip
    budget = doc["args"].get("budget_minutes")
    note = f"Each search had {_plural(budget, 'minute')}; the test fold was read once per seed."
    return block(render(header, rows) + "\n\n" + note, "selection_regret")


# ---------------------------------------------------------------------------------------------
# the pipeline's own costs


@table("pyg-speed")
def pyg_speed() -> str:
    doc = load("pyg_speed")
    results = doc["results"]
    ours = results["ours"]["median_seconds_per_batch"]
    labels = {
        "ours": "ours (`recs_pipeline.models.lightgcn`)",
        "pyg": "PyG's `LightGCN`, driven as in its `examples/lightgcn.py`",
        "pyg_sparse": "PyG's module fed our cached sparse adjacency",
    }
    rows = [
        [
            labels.get(key, key),
            f"{result['median_seconds_per_batch'] * 1000:.1f}",
            f"{result['extrapolated_epoch_seconds']:.1f}",
            f"{result['median_seconds_per_batch'] / ours:.2f}×",
            number(result.get("peak_rss_mib_during_timed_batches")),
        ]
        for key, result in results.items()
    ]
    header = ["LightGCN training step", f"ms per batch of {doc['args']['batch_size']:,}", "s per epoch (extrapolated)", "time vs ours", "peak MiB"]  # fmt: skip
    return block(render(header, rows), "pyg_speed")


@table("eval-speed")
def eval_speed() -> str:
    doc = load("eval_speed")
    labels = {
        "core": "the project's full ranking (`recs_pipeline.evaluation.metrics`)",
        "dense_mask": "dense score matrix + mask + `topk` per batch",
    }
    rows = [
        [
            labels.get(key, key),
            f"{result['median_seconds']:.2f}",
            f"+{result['median_peak_over_baseline_mib']:,.0f}",
            f"{result['users_per_second']:,.0f}",
        ]
        for key, result in doc["results"].items()
    ]
    agreement = doc["agreement"]
    note = (
        f"{doc['n_users_evaluated']:,} users × {doc['n_items']:,} items, K = {doc['args']['k']},"
        f" train items excluded. The two agree on the top-{doc['args']['k']} set of"
        f" {agreement['same_set_rows']:,} of {agreement['rows']:,} users."
    )
    header = ["evaluation", "median s", "peak MiB above start", "users per s"]
    return block(render(header, rows) + "\n\n" + note, "eval_speed")


STEPS = [
    "raw_interactions",
    "interaction_split",
    "interaction_graph",
    "hard_negatives",
    "trained_model",
    "model_evaluation",
    "recommendations",
]


def _short(events: int) -> str:
    return f"{events / 1e6:g}M" if events >= 1e6 else f"{events / 1e3:g}k"


@table("pipeline-scaling")
def pipeline_scaling() -> str:
    sizes = dict(load("pipeline_scaling")["sizes"]) | load("pipeline_scaling_10m")["sizes"]
    ordered = sorted(sizes, key=int)
    largest = sizes[ordered[-1]]
    rows = []
    for step in STEPS:
        row = [step]
        for size in ordered:
            value = f"{sizes[size]['seconds_per_million_events'][step]:.1f}"
            if step == "recommendations":
                index = (sizes[size]["steps"][step].get("metadata") or {}).get("index")
                value += f" ({index})" if index else ""
            row.append(value)
        row += [
            number(largest["steps"][step]["peak_rss_mib"]),
            f"{largest['steps'][step]['seconds']:.1f}",
        ]
        rows.append(row)
    rows.append(
        ["users / items / train edges"]
        + [f"{sizes[s]['users']:,} / {sizes[s]['items']:,} / {sizes[s]['train_edges']:,}" for s in ordered]
        + ["", ""]
    )  # fmt: skip
    total = sum(largest["steps"][step]["seconds"] for step in STEPS)
    header = ["asset (s per million events)"] + [_short(int(s)) for s in ordered]
    header += [f"peak MiB at {_short(int(ordered[-1]))}", f"seconds at {_short(int(ordered[-1]))}"]
    note = f"The whole chain at {_short(int(ordered[-1]))}: {total / 60:.1f} minutes."
    return block(render(header, rows) + "\n\n" + note, "pipeline_scaling", "pipeline_scaling_10m")


@table("pipeline-engines")
def pipeline_engines() -> str:
    doc = load("pipeline_scaling_10m_engines")
    (size,) = doc["sizes"].values()
    engines = size["engines"]
    names = list(engines)
    rows = []
    for step in STEPS:
        if step not in engines[names[0]]:
            continue
        seconds = [engines[name][step]["seconds"] for name in names]
        label = step
        meta = engines[names[-1]][step].get("metadata") or {}
        if step == "trained_model":
            label += f" ({doc['args']['max_steps']} steps; {meta.get('training_workers')} DDP ranks with 2 workers)"
        rows.append(
            [label] + [f"{s:.1f} s" for s in seconds] + [f"{seconds[0] / seconds[-1]:.2f}×"]
        )
    once = ", ".join(f"{step} {size['steps'][step]['seconds']:.1f} s" for step in STEPS[:3])
    header = ["asset"] + [_plural(int(n.split(":")[1]), "Ray worker") for n in names] + ["speed-up"]
    note = (
        f"{size['users']:,} users, {size['items']:,} items, {size['train_edges']:,} train edges;"
        f" ingested and prepared once ({once}), then each engine ran the four steps on the same day."
    )
    return block(render(header, rows) + "\n\n" + note, "pipeline_scaling_10m_engines")  # fmt: skip


@table("pipeline-30m")
def pipeline_30m() -> str:
    doc = load("pipeline_scaling_30m_ray2")
    (size,) = doc["sizes"].values()
    rows = []
    for step in STEPS:
        result = size["steps"][step]
        meta = result.get("metadata") or {}
        label = step
        if meta.get("shards"):
            rows_note = f", {meta['rows']:,} rows" if meta.get("rows") else ""
            label += f" ({meta['shards']} shards{rows_note})"
        if meta.get("training_workers"):
            label += f" ({meta['training_workers']} DDP ranks)"
        rows.append(
            [
                label,
                f"{result['seconds']:.1f} s",
                f"{result['machine_peak_used_mib'] / 1024:.1f} GiB",
            ]
        )
    total = sum(size["steps"][step]["seconds"] for step in STEPS)
    note = (
        f"{size['events_ingested']:,} events: {size['users']:,} users, {size['items']:,} items,"
        f" {size['train_edges']:,} train edges; the chain took {total / 60:.1f} minutes"
        f" (plus {size['generate_seconds']:.0f} s to generate the log)."
    )
    header = ["asset", "seconds", "machine memory in use, peak"]
    return block(render(header, rows) + "\n\n" + note, "pipeline_scaling_30m_ray2")


@table("publication")
def publication() -> str:
    doc = load("publication")
    rows = []
    for key, result in doc["results"].items():
        rows.append(
            [
                "exact (every item scored)" if key == "exact" else f"index, {key.split('/')[1]} lists per user",
                number(result.get("items_scanned_per_user")) if key != "exact" else f"{doc['items']:,}",
                f"{result['seconds']:.2f}",
                f"{result['speedup_vs_exact']:.2f}×",
                f"{result['overlap_with_exact']:.3f}",
                f"{result['test']['recall']:.4f}",
                f"+{result['peak_mib_above_start']:,.0f}",
            ]
        )  # fmt: skip
    header = ["ranking", "items scanned per user", "s", "speed-up", "overlap with exact", "test Recall@20", "MiB"]  # fmt: skip
    note = (
        f"All {doc['users']:,} users × {doc['items']:,} items, K = {doc['k']}, train items"
        f" excluded; LightGCN trained {doc['model']['train_minutes']:g} minutes; the index has"
        f" {doc['lists']} lists of at most {doc['longest_list']} items."
    )
    return block(render(header, rows) + "\n\n" + note, "publication")


@table("history-ingest")
def history_ingest() -> str:
    doc = load("history_ingest")
    export = doc["export"]
    rows = [["DuckDB reads the file, rows counted per day", "–", f"{doc['duckdb_read_seconds']:.2f}",
             "–", "–"]]  # fmt: skip
    if "core_ingest_seconds" in doc:
        rows.append(["the core's ingest alone (`ingest_history`, every day)", "–",
                     f"{doc['core_ingest_seconds']:.2f}", "–", "–"])  # fmt: skip
    for run in doc["runs"]:
        event_log = {"project": "the project's", "dagster": "Dagster's own"}.get(
            run.get("event_log"), "Dagster's own"
        )
        if run.get("runs_started") == 0:  # every day found ingested: no run
            rows.append([f"`recs ingest` again, {run['run']}: no run", event_log,
                         f"{run['seconds']:.2f}", "0", "–"])  # fmt: skip
            continue
        rows.append(
            [
                f"`raw_interactions` over every day, {run['run']}",
                event_log,
                f"{run['seconds']:.1f}",
                f"{run['event_log_entries']:,}",
                f"{run['printed_lines']:,}",
            ]
        )
    for run in doc.get("dagster_floor", []):
        days = "every day" if run["days"] > 1 else "one day"
        event_log = "the project's"
        if run.get("storage") == "postgres":
            event_log = "PostgreSQL, " + ("in batches" if run["batches"] else "an event at a time")
        rows.append([f"Dagster's floor: an asset that does nothing, over {days}", event_log,
                     f"{run['seconds']:.1f}", f"{run['event_log_entries']:,}", "–"])  # fmt: skip
    header = ["what", "event log", "s", "event-log entries", "lines printed"]
    note = (
        f"A generated ratings export of {export['rows']:,} rows over {export['span_days']:,} days"
        f" ({export['days_with_rows']:,} with rows), one ranged run in a fresh instance, SQLite where the row does not say PostgreSQL."
    )
    return block(render(header, rows) + "\n\n" + note, "history_ingest")


@table("warm-start")
def warm_start() -> str:
    doc = load("warm_start")
    rows = []
    for key, run in doc["runs"].items():
        rows.append(
            [
                key,
                run["best_epoch"],
                f4(run["best_val_recall"]),
                run["epochs_run"],
                f"{run['train_and_eval_seconds']:.1f}",
                f"{f4(run['test_recall@20'])} / {f4(run['test_ndcg@20'])}",
            ]
        )
    header = ["start", "best epoch", "best validation R@20", "epochs run", "s", "test R@20 / N@20"]
    note = (
        f"{doc['model']} on day {doc['day']} of the demo log; the warm run reached the cold run's"
        f" best validation Recall@20 after {_plural(doc['warm_epochs_to_cold_best'], 'epoch')}, the cold"
        f" run after {doc['cold_best_epoch']}."
    )
    return block(render(header, rows) + "\n\n" + note, "warm_start")


def _backfill(name: str) -> str:
    results = load(name)["results"]
    runs = {key: value for key, value in results.items() if not key.startswith("ratio")}
    rows = [
        [
            key,
            result["runs"],
            f"{result['downstream_backfill_seconds']:.1f}",
            f"{result['median_run_seconds']:.1f}",
            f"{result['median_pool_hold_seconds']:.2f}",
            f"{result['pool_busy_share_of_backfill']:.0%}",
            result["backfill_status"],
        ]
        for key, result in runs.items()
    ]
    header = ["variant", "runs", "backfill s", "median run s", "median pool hold s", "pool busy", "status"]  # fmt: skip
    return block(render(header, rows), name)


@table("backfill-start-methods")
def backfill_start_methods() -> str:
    return _backfill("backfill")


@table("backfill-instances")
def backfill_instances() -> str:
    return _backfill("backfill_instances_7d")


@table("data-parallel")
def data_parallel() -> str:
    doc = load("data_parallel")
    labels = {
        "workers_1_threads_1": "one process, 1 thread",
        "workers_2": "two worker processes, 1 thread each",
        "workers_1_threads_2": "one process, 2 threads",
    }
    rows = [
        [labels.get(key, key), f"{run['seconds_per_epoch']:.2f}", f4(run.get("val_recall"))]
        for key, run in doc["runs"].items()
    ]
    diff = doc["runs"].get("workers_2", {}).get("max_abs_param_diff")
    note = (
        f"{doc['edges']:,} edges, {doc['steps_per_epoch']} steps per epoch, LightGCN"
        f" (batch {doc['config']['batch_size']:,}); the propagation every rank repeats takes"
        f" {doc['propagation_seconds_per_epoch']:.2f} s per epoch."
        + (f" Largest weight difference between one and two workers: {diff:.1e}." if diff else "")
    )
    header = ["training", "s per epoch", "validation R@20"]
    return block(render(header, rows) + "\n\n" + note, "data_parallel")


@table("sharding-steps")
def sharding_steps() -> str:
    doc = load("sharding")
    labels = {
        "local": "local engine (one process)",
        "ray_1": "1 Ray worker",
        "ray_2": "2 Ray workers",
    }
    engines = list(doc["steps"])
    rows = []
    for step in ("hard_negatives", "model_evaluation", "recommendations"):
        rows.append(
            [step]
            + [f"{doc['steps'][e][step]['seconds']:.1f} s" for e in engines]
            + [f"{doc['speedup_2_workers_over_1'][step]:.2f}×"]
        )
    same = all(v.get("pools") and v.get("lists") for v in doc["identical_to_local"].values())
    log = doc["log"]
    note = (
        f"{log['events']:,} events: {log['users']:,} users, {log['items']:,} items. Pools and"
        f" lists {'identical to' if same else 'differing from'} the local run's for every engine."
    )
    header = ["step"] + [labels.get(e, e) for e in engines] + ["2 workers over 1"]
    return block(render(header, rows) + "\n\n" + note, "sharding")


@table("sharding-overhead")
def sharding_overhead() -> str:
    doc = load("sharding")
    over = doc["overhead"]
    rows = [
        [
            "start of a no-op shard",
            f"{over['ray_task']['round_trip_seconds'] * 1000:.0f} ms round trip (warm workers;"
            f" {over['ray_task']['per_task_in_a_batch_seconds'] * 1000:.1f} ms each in a batch of"
            f" {over['ray_task']['tasks']})",
            f"{over['dagster_multiprocess_spawn']['step_to_step_seconds']:.1f} s step to step with"
            f" spawn (Dagster's default), {over['dagster_primed_forkserver']['step_to_step_seconds']:.1f} s"
            " with the project's primed forkserver",
        ]
    ]
    for move in doc["data_movement"]:
        rows.append(
            [
                f"{move['what']} ({move['pickled_mib']:g} MiB pickled)",
                f"{move['ray_put_seconds']:.2f} s put once + {move['worker_fetch_seconds']:.2f} s fetch per worker",
                f"{move['reread_and_rebuild_seconds']:.1f} s per step to re-read and rebuild",
            ]
        )  # fmt: skip
    note = f"A local Ray cluster took {over['ray_local_cluster_start_seconds']:.1f} s to start."
    return block(render(["", "Ray task", "Dagster step"], rows) + "\n\n" + note, "sharding")


@table("scale-projection")
def scale_projection() -> str:
    doc = load("scale_projection")
    measured = doc["measured"][max(doc["measured"], key=int)]
    projected = doc["projected"]
    sizes = sorted(projected, key=int)

    def duration(seconds: float) -> str:
        if seconds >= 3600:
            return f"{seconds / 3600:.1f} h"
        return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"

    rows = []
    for step in STEPS:
        m = measured["assets"][step]
        rows.append(
            [step, f"{m['seconds']:.0f} s, {m['memory_mib'] / 1024:.2f} GiB"]
            + [
                f"{duration(projected[s]['assets'][step]['seconds'])}, {projected[s]['assets'][step]['memory_gib']:g} GiB"
                for s in sizes
            ]
        )  # fmt: skip
    rows.append(
        ["one training step (whole-graph propagation)", f"{measured['train_step_seconds']:.1f} s"]
        + [duration(projected[s]["train_step_seconds"]) for s in sizes]
    )
    rows.append(
        ["one full epoch (steps)", "–"]
        + [f"{projected[s]['full_epoch_steps']:,} steps, {duration(projected[s]['full_epoch_hours'] * 3600)}" for s in sizes]
    )  # fmt: skip
    largest = _short(int(max(doc["measured"], key=int)))
    header = ["asset", f"{largest} measured"] + [f"{_short(int(s)).replace('000M', 'B')} projected" for s in sizes]  # fmt: skip
    return block(render(header, rows), "scale_projection")


@table("warehouse-backends")
def warehouse_backends() -> str:
    results = {r["backend"]: r for r in load("warehouse_backends")["results"]}
    names = list(results)
    labels = {"duckdb_file": "DuckDB file", "ducklake_postgres": "DuckLake on PostgreSQL"}

    def row(label: str, value: Callable[[dict], str]) -> list[str]:
        return [label] + [value(results[n]) for n in names]

    rows = [
        row("ingest in one run", lambda r: f"{r['ingest_s']:.1f} s"),
        row(
            "warehouse steps of one chain (split, graph, evaluation, publication), per day",
            lambda r: ", ".join(f"{sum(c['warehouse_steps_s'].values()):.1f} s" for c in r["chains"]),
        ),
        row("one chain's wall time, per day", lambda r: ", ".join(f"{c['wall_s']:.1f} s" for c in r["chains"])),
        row(
            "two more days in two processes at once",
            lambda r: f"{r['two_concurrent_chains_wall_s']:.1f} s, {r['lock_waits_logged']} lock"
            f" waits, {r['conflict_retries_logged']} conflict retries",
        ),
        row(
            "an application: connect + first query; then one user's latest list",
            lambda r: f"{r['application_read']['connect_and_first_query_s']:.3f} s;"
            f" {r['application_read']['median_query_ms']:.1f} ms",
        ),
    ]  # fmt: skip
    header = [""] + [labels.get(n, n) for n in names]
    return block(render(header, rows), "warehouse_backends")


@table("artifact-store")
def artifact_store() -> str:
    runs = load("artifact_store")["runs"]
    rows = []
    for key, run in runs.items():
        rows.append(
            [
                f"{key}: {run['store']} on {run['root']}",
                f"{run['put']['median_seconds']:.2f} s, +{run['put']['median_peak_above_start_mib']:,.1f} MiB",
                f"{run['get']['median_seconds']:.2f} s, +{run['get']['median_peak_above_start_mib']:,.0f} MiB",
            ]
        )  # fmt: skip
    mb = next(iter(runs.values()))["mb"]
    return block(render(["store", f"put {mb} MB (median)", f"get {mb} MB (median)"], rows), "artifact_store")  # fmt: skip


@table("train-step-profile")
def train_step_profile() -> str:
    doc = load("train_step_profile")
    spmm = render(
        ["graph nodes", "nonzeros", "embedding table MiB", "ns per nonzero"],
        [
            [f"{r['nodes']:,}", f"{r['nonzeros']:,}", f"{r['table_mib']:.0f}", f"{r['ns_per_nonzero']:.1f}"]
            for r in doc["spmm"]
        ],
    )  # fmt: skip
    epochs = render(
        ["events", "edges", "s per million edges", "top operations (self seconds)"],
        [
            [
                f"{r['events']:,}",
                f"{r['edges']:,}",
                f"{r['step_seconds_per_million_edges']:.1f}",
                ", ".join(f"{op.removeprefix('aten::')} {s:.1f}" for op, s in list(r["top_ops_self_seconds"].items())[:4]),
            ]
            for r in doc["epochs"]
        ],
    )  # fmt: skip
    return block(f"{spmm}\n\n{epochs}", "train_step_profile")


# ---------------------------------------------------------------------------------------------
# the warehouse's own declarations


@table("serving-columns")
def serving_columns() -> str:
    from recs_pipeline.schema import columns

    rows = [
        [f"`{c.name}`", c.type, "yes" if c.nullable else "no", c.description]
        for c in columns("serving.recommendations")
    ]
    return render(["column", "type", "may be NULL", "meaning"], rows)


@table("warehouse-tables")
def warehouse_tables() -> str:
    from recs_pipeline.schema import PARTITION_COLUMN, TABLES, VIEWS, columns

    rows = [
        [
            f"`{name}`",
            f"`{PARTITION_COLUMN[name]}`",
            ", ".join(f"`{c.name}`" for c in columns(name)),
        ]
        for name in TABLES
    ]
    rows += [[f"`{name}` (view)", "", " ".join(sql.split())] for name, sql in VIEWS.items()]
    return render(["table", "partitioned by", "columns"], rows)


# ---------------------------------------------------------------------------------------------
# the layout, from the modules' own docstrings

# The top-level folders, in the layers' order; each subpackage follows its parent.
LAYOUT_ROOTS = ["recs_pipeline", "resources", "assets", "cli", "benchmarks", "docsgen"]


def _summary(path) -> str:
    import ast
    import re

    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    text = " ".join(doc.strip().split("\n\n")[0].split())
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text).replace("``", "`")
    end = re.search(r"(?<!\bal)(?<!\be\.g)(?<!\bi\.e)\.\s+(?=[A-Z`])", text)
    return text[: end.start() + 1] if end else text


@table("layout")
def layout() -> str:
    from docsgen import ROOT

    parts = []
    packages = [
        str(init.parent.relative_to(ROOT))
        for top in LAYOUT_ROOTS
        for init in sorted((ROOT / top).rglob("__init__.py"), key=lambda p: p.parent.parts)
        if "__pycache__" not in init.parts
    ]
    for package in packages:
        rows = []
        for path in sorted((ROOT / package).glob("*.py")):
            name = "`__init__`" if path.stem == "__init__" else f"`{path.stem}`"
            rows.append([name, _summary(path) or "–"])
        parts.append(f"**`{package}/`**\n\n" + render(["module", "what it is"], rows))
    return "\n\n".join(parts)


@table("gowalla-lightgcn-curve")
def gowalla_lightgcn_curve() -> str:
    model = load("gowalla")["models"]["lightgcn"]
    rows = [[p["epoch"], f"{p['minutes']:.1f}", f4(p["val_recall@20"])] for p in model["val_curve"]]
    return block(render(["epoch", "minutes", "validation Recall@20"], rows), "gowalla")


@table("suite-cpu")
def suite_cpu() -> str:
    doc = load("suite_cpu")
    total = doc["sampled_cpu_seconds"]
    rows = [
        [row["kind"], f"{row['cpu_seconds']:.1f}", f"{row['cpu_seconds'] / total:.0%}",
         f"{row['processes']:,}"]
        for row in doc["kinds"]
        if row["cpu_seconds"] >= 1
    ]  # fmt: skip
    suite, speed = doc["suite"], doc["speed_probe_seconds"]
    floor = doc["machine_busy_cpu_seconds"] / doc["cores"]
    note = (
        f"`{' '.join(suite['command'])}`: {suite['result']}, {suite['wall_seconds']:.0f} s."
        f" The machine was busy {doc['machine_busy_cpu_seconds']:.0f} CPU-seconds,"
        f" {doc['busy_share_of_cores']:.0%} of its {doc['cores']} cores: the same work takes at"
        f" least {floor:.0f} s on them however it is scheduled. Speed probe (a single-core Python"
        f" loop): {speed['before']:.2f} s before, {speed['after']:.2f} s after."
    )
    return block(render(["processes", "CPU s", "share", "count"], rows) + "\n\n" + note,
                 "suite_cpu")  # fmt: skip
