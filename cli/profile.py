"""Profile your log before choosing settings: ``python -m cli.profile [--write]``.

Reads every file the ``log_source`` settings match (the same settings ingest uses: RECS_*
variables, then the project config file) and prints events, users and items per day, the share
of empty days, and a suggested ``window_days``, ``test_days`` and partition start (the rule:
:mod:`recs_pipeline.data.profile`). ``--write`` stores the partition start and the suggested window
and test period in the project config file (``recs.toml``, or the file in RECS_CONFIG), so every
process loading the code location (UI, daemon, CLI) has partitions from the log's first day and
splits with that window.
"""

from __future__ import annotations

import argparse
import sys

from recs_pipeline.data.logs import LogConfigError
from recs_pipeline.data.profile import all_files, describe, profile_log
from recs_pipeline.infra import project_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--min-train-events", type=int, default=5, help="train events wanted per test user"
    )
    parser.add_argument("--min-test-users", type=int, default=100, help="test users wanted")
    parser.add_argument(
        "--no-scores",
        action="store_true",
        help="skip the baselines' quick validation scores of each candidate window",
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="write partition_start, window_days and test_days to the project config file",
    )
    args = parser.parse_args(argv)

    from assets.definitions import default_resources

    source = default_resources()["log_source"]
    try:
        files = all_files(source.landing_root, source.path_pattern)
        profile = profile_log(
            files,
            source.log_format(),
            min_train_events=args.min_train_events,
            min_test_users=args.min_test_users,
            scores=not args.no_scores,
        )
    except (LogConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"log: {source.landing_root}/{source.path_pattern}")
    print(describe(profile))
    if args.write:
        path = project_config.write_top_level(
            "partition_start", profile.partition_start.isoformat()
        )
        for key in ("window_days", "test_days"):
            project_config.write_table_value("ops.interaction_split", key, getattr(profile, key))
        print(
            f"wrote partition_start = {profile.partition_start}, [ops.interaction_split]"
            f" window_days = {profile.window_days}, test_days = {profile.test_days} to {path}"
        )
    else:
        print(
            "write the partition start and the window for every process (the schedule,"
            " backfills, the UI): recs profile --write"
        )
    if profile.warnings:
        print(
            f"{len(profile.warnings)} warning(s) above: the log cannot meet the targets; the"
            " suggestion is the best it allows",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
