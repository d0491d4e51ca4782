"""The main job on the embedded default: ``python -m assets.main``.

1. Writes about 60 days of synthetic click logs into the landing folder (once; later runs reuse
   them), ending yesterday (UTC).
2. Ingests every day in one run of ``raw_interactions`` over the partition range.
3. Materialises the rest of the chain for the newest day.
4. Prints the model's and the popularity baseline's metrics and a few published lists.

The terminal shows one line per finished step, the steps' warnings and errors, and the
results (``assets/console.py``); Dagster's DEBUG events stay in the run's event log.

Runs are recorded in the project's Dagster instance (``DAGSTER_HOME``, default
``dagster_home/``), so ``dagster dev`` afterwards shows the run history and materialisations.
"""

import argparse
import datetime as dt
import os
import sys
import time

from assets.partitions import PROJECT_ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--days", type=int, default=60, help="days of synthetic log to generate")
    parser.add_argument(
        "--model",
        default="lightgcn",
        help="model: lightgcn, mf, ngcf, pinsage (uses items.csv genres), popularity or gfcf",
    )
    parser.add_argument("--epochs", type=int, default=None, help="maximum training epochs")
    parser.add_argument(
        "--small",
        action="store_true",
        help="a small synthetic log (500 users, 250 items, 900 events a day): a quick check",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / "dagster_home"))
    import dagster as dg

    from recs_pipeline.console import silence_unfixable_warnings

    silence_unfixable_warnings()  # before the asset modules are imported

    from assets.instance import InstanceCorrupted, prepare_instance

    try:
        prepare_instance(os.environ["DAGSTER_HOME"])
    except InstanceCorrupted as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    from assets.console import materialize
    from assets.definitions import ALL_ASSETS, default_resources
    from assets.ingest import raw_interactions
    from recs_pipeline.synthetic import SyntheticLogSpec, recorded_spec, write_landing_files

    resources = default_resources()
    landing = resources["log_source"].landing_root
    spec = recorded_spec(landing)
    small = {"n_users": 500, "n_items": 250, "n_communities": 6, "events_per_day": 900}
    if spec is None or spec.days != args.days or (spec.n_users == small["n_users"]) != args.small:
        yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        spec = SyntheticLogSpec(
            start=yesterday - dt.timedelta(days=args.days - 1),
            days=args.days,
            dirty_fraction=0.001,
            **(small if args.small else {}),
        )
        print(
            f"writing {spec.days} days of synthetic logs ({spec.start} .. {spec.end}) to {landing}"
        )
        write_landing_files(spec, landing)
    else:
        print(f"reusing the synthetic logs in {landing} ({spec.start} .. {spec.end})")
    newest = spec.end.isoformat()
    instance = dg.DagsterInstance.get()

    started = time.perf_counter()
    ingest = materialize(
        [raw_interactions],
        instance=instance,
        resources=resources,
        tags={
            "dagster/asset_partition_range_start": spec.start.isoformat(),
            "dagster/asset_partition_range_end": newest,
        },
    )
    print(
        f"ingested {spec.days} days in {time.perf_counter() - started:.1f}s (run {ingest.run_id})"
    )

    train_config = {"model": args.model} | ({"epochs": args.epochs} if args.epochs else {})
    started = time.perf_counter()
    chain = materialize(
        ALL_ASSETS,
        selection=dg.AssetSelection.assets(*ALL_ASSETS)
        - dg.AssetSelection.assets(raw_interactions),
        partition_key=newest,
        instance=instance,
        resources=resources,
        run_config={"ops": {"trained_model": {"config": train_config}}},
        raise_on_error=False,
    )
    print(f"chain for {newest} in {time.perf_counter() - started:.1f}s (run {chain.run_id})")

    with resources["warehouse"].session() as con:
        metrics = con.execute(
            """SELECT model, k, metric, value FROM ml.metrics WHERE as_of_date = ?
               ORDER BY model = 'popularity', model, metric, k""",
            [spec.end],
        ).fetchall()
        print(f"\nfull-ranking test metrics as of {newest} (training items excluded):")
        print(f"{'model':<12}{'metric':<11}{'@10':>8}{'@20':>8}{'@50':>8}")
        table: dict[tuple[str, str], dict[int, float]] = {}
        for model, k, metric, value in metrics:
            table.setdefault((model, metric), {})[k] = value
        for (model, metric), values in table.items():
            print(
                f"{model:<12}{metric:<11}"
                + "".join(f"{values.get(k, float('nan')):>8.4f}" for k in (10, 20, 50))
            )
        published = con.execute(
            """SELECT user_id, model, string_agg(item_id, ' ' ORDER BY rank)
               FROM serving.latest_recommendations
               WHERE user_id IN (SELECT user_id FROM serving.latest_recommendations
                                 GROUP BY user_id ORDER BY user_id LIMIT 3)
               GROUP BY user_id, model ORDER BY user_id"""
        ).fetchall()
        latest = con.execute(
            "SELECT max(as_of_date), count(DISTINCT user_id) FROM serving.latest_recommendations"
        ).fetchone()
    if not chain.success:
        print("\nthe chain did not finish: see the run in the Dagster UI (quality gate or error)")
        return 1
    print(f"\npublished lists as of {latest[0]} for {latest[1]} users; the first three:")
    for user, model, items in published:
        print(f"  {user} [{model}]: {items}")
    print("\nopen the UI on this state: make ui")
    return 0


if __name__ == "__main__":
    sys.exit(main())
