"""The whole chain on synthetic logs of growing size: time and peak memory per asset.

``python -m benchmarks.pipeline_scaling --events 250000,1000000`` writes, for each size, a
synthetic log (users and items growing with the events) under ``--workdir``, then runs the
Dagster chain with an ephemeral instance, one asset per run so each is timed and measured on
its own: ``raw_interactions`` over every day in one run, then ``interaction_split`` …
``recommendations`` for the newest day. Peak memory is the process's peak RSS during that
asset's run (VmHWM reset before it), so it includes the interpreter and libraries (the
``baseline_rss_mib`` before the first run). Results: ``benchmarks/results/pipeline_scaling.json``
with seconds per million events for each asset, to compare growth across sizes.

Training is bounded (``--epochs``; at most ``--max-steps`` mini-batches per epoch, so batches
grow with the graph) because its cost per epoch, not the number of epochs a model needs, is
what scales with the log.

``--engines ray:1,ray:2`` runs the chain with the first engine, then the steps that use the
engine (hard negatives, training, evaluation, publication) again on the same day with each
other one, side by side in one run (``engines`` in the JSON, with each asset's ratio to the
first engine). ``local`` is the step's own process; ``ray:N`` a local Ray cluster of 2 CPUs the
step starts, N shards and N training ranks. ``peak_rss_mib`` is this process's only (Ray's
workers are processes of their own); ``machine_peak_used_mib`` is the whole machine's memory in
use during the step (MemTotal − MemAvailable, sampled every 0.25 s), which counts the workers and
Ray's object store, and anything else running (hence ``load_average_1m`` beside it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import time
from pathlib import Path

import dagster as dg

from assets.definitions import ALL_ASSETS
from benchmarks._common import (
    MachinePeak,
    hwm_mib,
    machine_used_mib,
    quiet_sparse_warnings,
    reset_hwm,
    rss_mib,
    write_results,
)
from recs_pipeline.data.synthetic import SyntheticLogSpec, write_landing_files
from recs_pipeline.training.cli import add_setting_flags, settings_from_args
from resources import ArtifactStore, ComputeEngine, LogSource, Warehouse

# The trained_model settings this benchmark takes as flags (add_setting_flags), with its defaults:
# a bounded training (the docstring says why).
TRAIN_FLAGS = {"epochs": 1, "batch_size": 16384}
ENGINE_STEPS = ["hard_negatives", "trained_model", "model_evaluation", "recommendations"]
CHAIN = [
    "interaction_split",
    "interaction_graph",
    "hard_negatives",
    "trained_model",
    "model_evaluation",
    "recommendations",
]


def spec_for(events: int, days: int) -> SyntheticLogSpec:
    """A log of about ``events`` events: 1 user per 25 events, 1 item per 100."""
    return SyntheticLogSpec(
        start=dt.date(2026, 1, 1),
        days=days,
        n_users=max(1000, events // 25),
        n_items=max(500, events // 100),
        n_communities=32,
        events_per_day=events // days,
        dirty_fraction=0.0005,
        seed=0,
    )


def engine_for(spec: str) -> ComputeEngine:
    """``local`` or ``ray:N`` (N workers on a local 2-CPU Ray cluster)."""
    if spec == "local":
        return ComputeEngine()
    kind, _, workers = spec.partition(":")
    if kind != "ray" or not workers.isdigit():
        raise SystemExit(f"--engines: 'local' or 'ray:N', not {spec!r}")
    return ComputeEngine(kind="ray", workers=int(workers), num_cpus=2)


class StepFailed(Exception):
    """A step of the chain failed (out of memory, typically): the size ends there."""


def failure_of(result) -> str:
    """The first step failure's error and its causes, as Dagster recorded them (no stacks)."""
    for event in result.get_step_failure_events():
        error = event.event_specific_data.error
        messages = []
        while error is not None:
            messages.append(f"{error.cls_name}: {error.message.strip()}")
            error = error.cause
        if messages:
            return "\ncaused by ".join(messages)[:4000]
    return "the run failed without a step failure event"


def run_size(events: int, args) -> dict:
    spec = spec_for(events, args.days)
    root = Path(args.workdir) / f"events_{events}"
    shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    write_landing_files(spec, root / "landing")
    generate_seconds = time.perf_counter() - started
    resources = {
        "warehouse": Warehouse(database=str(root / "warehouse.duckdb")),
        "artifacts": ArtifactStore(root=str(root / "artifacts")),
        "log_source": LogSource(landing_root=str(root / "landing")),
        "engine": engine_for(args.engines[0]),
    }
    instance = dg.DagsterInstance.ephemeral()
    run_config = {
        "ops": {
            "interaction_split": {"config": {"window_days": args.days, "test_days": 2}},
            "trained_model": {
                "config": {
                    **settings_from_args(args, TRAIN_FLAGS),
                    "max_steps_per_epoch": args.max_steps,
                    "eval_every": 1,
                }
            },
            "model_evaluation": {"config": {"baselines": ["popularity"]}},
        }
    }
    by_key = {a.key.to_user_string(): a for a in ALL_ASSETS}
    steps: dict[str, dict] = {}
    baseline = rss_mib()
    machine_baseline = machine_used_mib()

    def measure(name: str, steps: dict = steps, **kwargs) -> None:
        reset_hwm()
        started = time.perf_counter()
        with MachinePeak() as machine_peak:
            result = dg.materialize(
                ALL_ASSETS,
                selection=dg.AssetSelection.assets(by_key[name]),
                instance=instance,
                resources=resources,
                raise_on_error=False,
                **kwargs,
            )
        steps[name] = {
            "seconds": time.perf_counter() - started,
            "peak_rss_mib": hwm_mib(),
            "machine_peak_used_mib": machine_peak.peak_mib,
            "load_average_1m": os.getloadavg()[0],
            "success": result.success,
        }
        if not result.success:
            steps[name]["failure"] = failure_of(result)
            print(f"  {name} FAILED after {steps[name]['seconds']:.1f} s: {steps[name]['failure']}")
            raise StepFailed(name)
        # trained_model: where the time went; recommendations: exact ranking or the index.
        if name in ("trained_model", "recommendations"):
            (event,) = result.get_asset_materialization_events()
            steps[name]["metadata"] = {
                key: value.value
                for key, value in event.materialization.metadata.items()
                # Scalars only: the preview, training history and hyperparameters are tables/JSON.
                if isinstance(value.value, (int, float, str, bool))
            }
        print(
            f"  {name:<20}{steps[name]['seconds']:>8.1f} s{steps[name]['peak_rss_mib']:>9.0f} MiB"
            f"{steps[name]['machine_peak_used_mib'] or 0:>9.0f} MiB machine",
            flush=True,
        )

    print(f"{events:,} events: {spec.n_users:,} users, {spec.n_items:,} items, {spec.days} days")
    described = {
        "events_requested": events,
        "users": spec.n_users,
        "items": spec.n_items,
        "generate_seconds": generate_seconds,
        "baseline_rss_mib": baseline,
        "machine_baseline_used_mib": machine_baseline,
        "steps": steps,
    }
    try:
        return {**described, **run_chain(spec, args, resources, run_config, measure, steps)}
    except StepFailed as failed:
        return {**described, "failed_step": str(failed)}
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def run_chain(spec, args, resources, run_config, measure, steps) -> dict:
    """Every asset of the chain in turn, then the engine steps again with each other engine."""
    measure(
        "raw_interactions",
        tags={
            "dagster/asset_partition_range_start": spec.start.isoformat(),
            "dagster/asset_partition_range_end": spec.end.isoformat(),
        },
    )
    for name in CHAIN:
        config = {"ops": {name: run_config["ops"][name]}} if name in run_config["ops"] else {}
        measure(name, partition_key=spec.end.isoformat(), run_config=config)
    engines = {args.engines[0]: {name: steps[name] for name in ENGINE_STEPS}}
    for engine in args.engines[1:]:
        print(f"  engine {engine}:")
        resources["engine"] = engine_for(engine)
        engines[engine] = {}
        for name in ENGINE_STEPS:
            config = {"ops": {name: run_config["ops"][name]}} if name in run_config["ops"] else {}
            measure(name, engines[engine], partition_key=spec.end.isoformat(), run_config=config)
    with resources["warehouse"].session() as con:
        ingested = con.execute("SELECT count(*) FROM raw.interactions").fetchone()[0]
        train_edges = con.execute(
            "SELECT count(*) FROM features.train_interactions WHERE as_of_date = ?", [spec.end]
        ).fetchone()[0]
        recall = con.execute(
            """SELECT model, value FROM ml.metrics
               WHERE as_of_date = ? AND k = 20 AND metric = 'recall'""",
            [spec.end],
        ).fetchall()
    return {
        "events_ingested": ingested,
        "train_edges": train_edges,
        "seconds_per_million_events": {
            name: step["seconds"] / (ingested / 1e6) for name, step in steps.items()
        },
        "recall@20": dict(recall),
        "engines": engines,
        "speedup_over_first": {
            engine: {
                name: engines[args.engines[0]][name]["seconds"] / step["seconds"]
                for name, step in by_step.items()
            }
            for engine, by_step in engines.items()
        },
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline_scaling")
    parser.add_argument("--events", default="250000,1000000", help="comma-separated sizes")
    parser.add_argument("--days", type=int, default=30)
    add_setting_flags(parser, TRAIN_FLAGS)
    parser.add_argument("--max-steps", type=int, default=16, help="mini-batches per epoch, at most")
    parser.add_argument("--workdir", default="/tmp/recs_pipeline_scaling")
    parser.add_argument("--keep", action="store_true", help="keep each size's files")
    parser.add_argument(
        "--engines", default="local", help="comma-separated: local, ray:N (N workers)"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    quiet_sparse_warnings()
    sizes = [int(x) for x in args.events.split(",") if x.strip()]
    results: dict[str, dict] = {}
    for n in sizes:
        results[str(n)] = run_size(n, args)
        if "failed_step" in results[str(n)]:
            # Larger logs would fail the same way; the ladder stops at the first failure.
            print(f"{n:,} events failed in {results[str(n)]['failed_step']}; larger sizes skipped")
            break
    names = ["raw_interactions", *CHAIN]
    print(f"\n{'asset':<20}" + "".join(f"{n:>14,}" for n in sizes) + "   (s per million events)")
    for name in names:
        print(
            f"{name:<20}"
            + "".join(
                f"{results[str(n)]['seconds_per_million_events'][name]:>14.1f}"
                if "seconds_per_million_events" in results.get(str(n), {})
                else f"{'-':>14}"
                for n in sizes
            )
        )
    path = write_results("pipeline_scaling", {"args": vars(args), "sizes": results}, args.out)
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
