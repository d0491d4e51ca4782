"""Warm start versus cold start: how many epochs day D's model needs from day D-1's.

One command: ``python -m benchmarks.warm_start`` (about two minutes on 2 cores).

Generates the main job's synthetic log (``--days`` days, seeded) in a scratch folder, ingests
it, and runs the chain through the pipeline's own assets (``dg.materialize``):

1. day D-1: ``trained_model`` from a cold start;
2. day D: ``trained_model`` + ``model_evaluation`` twice, cold (``warm_start: false``) and warm
   (from D-1's checkpoint), with a validation check every epoch and the same early stopping.

Reported per run: the validation Recall@20 curve, the best epoch, epochs run, training seconds
and the test Recall@20/NDCG@20 of ``model_evaluation``. The headline is the first epoch at which
the warm run reaches the cold run's best validation recall. Test recall is the clean
comparison: D's test fold lies after everything D-1's model was trained on, whereas some of D's
validation edges (a user's latest train edges) can be older edges that D-1 trained on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks._common import quiet_sparse_warnings, write_results
from recs_pipeline.training.cli import add_setting_flags, settings_from_args

# The trained_model settings this benchmark takes as flags (add_setting_flags), with its defaults:
# the pipeline's, so that both runs stop as a day's training would.
TRAIN_FLAGS = {"model": "lightgcn", "epochs": 60, "patience": 4}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.warm_start")
    parser.add_argument("--days", type=int, default=60, help="days of synthetic log")
    add_setting_flags(parser, TRAIN_FLAGS)
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    quiet_sparse_warnings()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="recs_warm_start_"))
    shutil.rmtree(workdir, ignore_errors=True)
    end = dt.date(2026, 6, 30)
    start = end - dt.timedelta(days=args.days - 1)
    # The partitions definition reads its start at import: set it before importing the assets.
    os.environ["RECS_PARTITION_START"] = start.isoformat()

    import dagster as dg

    from assets.definitions import ALL_ASSETS
    from assets.features import hard_negatives, interaction_graph, interaction_split
    from assets.ingest import raw_interactions
    from assets.model import model_evaluation, trained_model
    from recs_pipeline.data.synthetic import SyntheticLogSpec, write_landing_files
    from recs_pipeline.infra.artifacts import MODEL
    from resources import ArtifactStore, ComputeEngine, LogSource, Warehouse

    spec = SyntheticLogSpec(start=start, days=args.days, dirty_fraction=0.001)
    write_landing_files(spec, workdir / "landing")
    resources = {
        "warehouse": Warehouse(database=str(workdir / "warehouse.duckdb")),
        "artifacts": ArtifactStore(root=str(workdir / "artifacts")),
        "log_source": LogSource(landing_root=str(workdir / "landing")),
        "engine": ComputeEngine(),
    }
    instance = dg.DagsterInstance.ephemeral()
    ok = dg.materialize(
        [raw_interactions],
        instance=instance,
        resources=resources,
        tags={
            "dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": end.isoformat(),
        },
    ).success
    assert ok, "ingest failed"

    def run(day: dt.date, selection: list, warm: bool) -> None:
        train = {
            **settings_from_args(args, TRAIN_FLAGS),
            "eval_every": 1,
            "warm_start": warm,
        }
        result = dg.materialize(
            ALL_ASSETS,
            selection=dg.AssetSelection.assets(*selection),
            partition_key=day.isoformat(),
            instance=instance,
            resources=resources,
            run_config={"ops": {"trained_model": {"config": train}}}
            if trained_model in selection
            else None,
        )
        assert result.success, f"run for {day} failed"

    features = [interaction_split, interaction_graph, hard_negatives]
    previous, day = end - dt.timedelta(days=1), end
    run(previous, [*features, trained_model], warm=False)
    run(day, features, warm=False)

    store = resources["artifacts"].store()
    runs = {}
    for name, warm in (("cold", False), ("warm", True)):
        started = time.perf_counter()
        run(day, [trained_model, model_evaluation], warm=warm)
        seconds = time.perf_counter() - started
        state = store.get(MODEL, day.isoformat())
        with resources["warehouse"].session() as con:
            test = dict(
                con.execute(
                    """SELECT metric, value FROM ml.metrics
                       WHERE as_of_date = ? AND model = ? AND k = 20""",
                    [day, args.model],
                ).fetchall()
            )
        curve = [h["val_recall"] for h in state["history"] if "val_recall" in h]
        runs[name] = {
            "val_recall_by_epoch": curve,
            "best_epoch": state["best_epoch"],
            "best_val_recall": state["val_recall"],
            "epochs_run": len(state["history"]),
            "train_and_eval_seconds": seconds,
            "warm_start": state["warm_start"],
            "test_recall@20": test["recall"],
            "test_ndcg@20": test["ndcg"],
        }

    target = runs["cold"]["best_val_recall"]
    warm_curve = runs["warm"]["val_recall_by_epoch"]
    reach = next((e + 1 for e, r in enumerate(warm_curve) if r >= target), None)
    reach_99 = next((e + 1 for e, r in enumerate(warm_curve) if r >= 0.99 * target), None)
    for name, r in runs.items():
        print(
            f"{name}: best val recall@20 {r['best_val_recall']:.4f} at epoch {r['best_epoch']}"
            f" ({r['epochs_run']} run, {r['train_and_eval_seconds']:.1f} s with evaluation);"
            f" test recall@20 {r['test_recall@20']:.4f}, ndcg@20 {r['test_ndcg@20']:.4f}"
        )
    print(f"warm start carried over: {runs['warm']['warm_start']}")
    print(
        f"warm start reaches the cold start's best validation recall ({target:.4f}) at epoch"
        f" {reach} (99% of it at epoch {reach_99}); the cold start needed"
        f" {runs['cold']['best_epoch']}"
    )
    path = write_results(
        "warm_start",
        {
            "spec": {"days": args.days, "start": start, "end": end},
            "model": args.model,
            "day": day,
            "runs": runs,
            "warm_epochs_to_cold_best": reach,
            "warm_epochs_to_99pct_cold_best": reach_99,
            "cold_best_epoch": runs["cold"]["best_epoch"],
        },
        args.out,
    )
    print(f"wrote {path}")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
