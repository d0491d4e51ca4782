"""Check that the copies the pipeline keeps outside the warehouse agree with it:
``python -m cli.doctor [--repair] [--check NAME]``.

The checks (recs_pipeline/serving/doctor.py): the serving files applications read (each day's Parquet
file against its checksum and the warehouse's publication of the day, ``published.duckdb``
against those files) and each day's pinned ``published_model.pt`` against the model its lists
were published from. Each problem is printed with its check's name; the exit status is 1 when
anything disagrees (after ``--repair``: when anything still does), else 0. ``--repair``
re-exports the disagreeing days from the warehouse and re-pins a day's model from
trained_model's model.pt when that is still the published one; a day whose model was
retrained since is left for a re-publication of that day, and says so.

The deployment is the one the pipeline uses: RECS_* environment, then ``recs.toml``, then the
data root (docs/configuration.md); ``--warehouse``, ``--serving`` and
``--artifacts`` override it. The warehouse is opened read-write, as a step opens it (waiting
for a running step to let go); run it when no publication is under way, since a publication
between its commit and its export disagrees for that moment.
"""

from __future__ import annotations

import argparse
import sys

from recs_pipeline.serving.doctor import CHECKS, Deployment, run_checks


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--repair", action="store_true", help="repair what disagrees, then check again"
    )
    parser.add_argument(
        "--check",
        action="append",
        choices=[check.name for check in CHECKS],
        help="run only this check (repeatable; default: all)",
    )
    parser.add_argument("--warehouse", help="the warehouse's DuckDB file (RECS_WAREHOUSE)")
    parser.add_argument("--serving", help="the serving folder (RECS_SERVING)")
    parser.add_argument("--artifacts", help="the artifact store's root (RECS_ARTIFACTS)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from resources import ArtifactStore, Warehouse
    from resources.deployment import deployment_defaults

    warehouse_config = deployment_defaults("warehouse")
    if args.warehouse:
        warehouse_config["database"] = args.warehouse
    if args.serving:
        warehouse_config["serving_root"] = args.serving
    artifacts_config = deployment_defaults("artifacts")
    if args.artifacts:
        artifacts_config["root"] = args.artifacts
    warehouse = Warehouse(**warehouse_config)
    store = ArtifactStore(**artifacts_config).store()
    checks = [check for check in CHECKS if not args.check or check.name in args.check]
    with warehouse.session() as con:
        left = run_checks(
            Deployment(con, warehouse.serving_path(), store), checks, repair=args.repair
        )
    for name, problems in left.items():
        print(f"{name}: {'ok' if not problems else f'{len(problems)} disagreeing'}")
    return 1 if any(left.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
