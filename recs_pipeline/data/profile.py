"""A log's profile: its days, events, users and items per day, the share of empty days, and a
suggested window and test period for the temporal split.

The suggestion, as of the log's last day D:

* test days H: the smallest H (1 up to a third of the log's span) whose last H days hold at
  least ``min_test_users`` users who were also active before them (only those are evaluated);
  when no H reaches it, the H that holds the most such users, with a warning that says so.
* window W: each of those test users needs ``min_train_events`` events before the test period;
  W is the smallest window (counted back from D, test period included) that gives at least half
  of them that many, and never less than 2H (a train period shorter than the test period trains
  on too little to judge it); when fewer than half have that many in the whole log, the whole
  span, with a warning.

Beside the suggestion, ``candidates`` lists what other test periods would give (test users,
the window the rule picks, train users) and a quick validation Recall@20 of popularity and
GF-CF at their defaults on the slice model selection would carve from that train period, so a
choice can be made knowing the trade-off (GF-CF is left out above ``QUICK_SCORE_MAX_ITEMS``
items, where its item graph would cost more than a profile should).

The partition start is the log's first day, except that a few implausible early days (less than
1% of the events, before a gap of more than a year, such as 1956 dates in a 2005-2011 log) are
left out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re

import duckdb

from recs_pipeline.data.logs import LogConfigError, LogFormat, _timestamp_sql, export_files

_DATE_FIELD = re.compile(r"\{date(:[^}]*)?\}")
OUTLIER_GAP_DAYS = 365
OUTLIER_SHARE = 0.01
QUICK_SCORE_MAX_ITEMS = 20_000


def all_files(landing_root: str | os.PathLike, pattern: str) -> list[str]:
    """Every file the pattern can match on any day (``{date:...}`` as a wildcard), inside the
    landing root, found as ingest finds them (each file once, links never followed out)."""
    return export_files(landing_root, _DATE_FIELD.sub("*", pattern))


@dataclasses.dataclass(frozen=True)
class DayCounts:
    day: dt.date
    events: int
    users: int
    items: int


@dataclasses.dataclass(frozen=True)
class Candidate:
    """What a test period of ``test_days`` gives, with the window the rule picks for it."""

    test_days: int
    test_users: int
    window_days: int
    train_users: int
    covered_test_users: int
    # A quick look at what the window gives a model: validation users and each baseline's
    # validation Recall@20 at its defaults, on the slice model selection would carve from its
    # train period (empty when the profile was asked not to score, or too few users).
    validation_users: int = 0
    scores: tuple[tuple[str, float], ...] = ()


@dataclasses.dataclass(frozen=True)
class LogProfile:
    files: int
    events: int
    unreadable_timestamps: int
    users: int
    items: int
    first_day: dt.date
    last_day: dt.date
    per_day: tuple[DayCounts, ...]  # the days with events, in order
    partition_start: dt.date
    outlier_events: int  # events before partition_start
    test_days: int
    test_users: int
    window_days: int
    covered_test_users: int  # test users with min_train_events in the window
    min_train_events: int
    min_test_users: int
    candidates: tuple[Candidate, ...] = ()
    warnings: tuple[str, ...] = ()
    # Test users with any event in the window's train days: the day's graph knows only them,
    # so at most these are evaluated (and judged by the quality gate).
    window_test_users: int = 0

    @property
    def span_days(self) -> int:
        return (self.last_day - self.partition_start).days + 1

    @property
    def empty_share(self) -> float:
        active = sum(1 for d in self.per_day if d.day >= self.partition_start)
        return 1 - active / self.span_days


def _events_sql(fmt: LogFormat) -> str:
    def q(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    if fmt.format == "csv":
        source = "read_csv(?, all_varchar=true, union_by_name=true, null_padding=true)"
    elif fmt.format == "parquet":
        source = "read_parquet(?, union_by_name=true)"
    else:
        source = "read_json(?, format='newline_delimited', union_by_name=true)"
    # As ingest reads it: one timestamp column, or a date from (year, month, day) columns.
    if fmt.date_columns is not None:
        timestamp = " || '-' || ".join(f"CAST({q(c)} AS VARCHAR)" for c in fmt.date_columns)
    else:
        timestamp = f"CAST({q(fmt.timestamp_column)} AS VARCHAR)"
    return f"""
        CREATE TEMP TABLE events AS
        WITH raw AS (
            SELECT CAST({q(fmt.user_column)} AS VARCHAR) AS user_id,
                   CAST({q(fmt.item_column)} AS VARCHAR) AS item_id,
                   {timestamp} AS ts_raw
            FROM {source})
        SELECT user_id, item_id, CAST({_timestamp_sql(fmt)} AS DATE) AS day
        FROM raw WHERE user_id IS NOT NULL AND item_id IS NOT NULL"""


def profile_log(
    files: list[str],
    fmt: LogFormat,
    *,
    min_train_events: int = 5,
    min_test_users: int = 100,
    scores: bool = True,
) -> LogProfile:
    """Read every file once (columns mapped as ingest maps them) and profile the log;
    ``scores``: score the baselines on each candidate window (module docstring)."""
    if not files:
        raise LogConfigError("no landing files match the path pattern")
    con = duckdb.connect(":memory:")
    try:
        unreadable, events, users, items = _load_events(con, fmt, files)
        per_day = _per_day(con)
        split = _suggest_split(con, per_day, events, min_train_events, min_test_users)
        candidates = _candidates(con, split, min_train_events, scores)
    finally:
        con.close()
    return LogProfile(
        files=len(files),
        events=events,
        unreadable_timestamps=unreadable,
        users=users,
        items=items,
        first_day=per_day[0].day,
        last_day=split.last,
        per_day=per_day,
        partition_start=split.start,
        outlier_events=split.outlier_events,
        test_days=split.test_days,
        test_users=split.test_users,
        window_days=split.window,
        covered_test_users=split.covered,
        min_train_events=min_train_events,
        min_test_users=min_test_users,
        candidates=candidates,
        warnings=_warnings(split, min_train_events, min_test_users),
        window_test_users=split.in_window,
    )


def _load_events(
    con: duckdb.DuckDBPyConnection, fmt: LogFormat, files: list[str]
) -> tuple[int, int, int, int]:
    """(unreadable timestamps, events, users, items), once the table ``events`` holds the rows
    with a readable day: the rest are only counted. Raises :class:`LogConfigError` when no row
    is readable, since nothing can be suggested and the likely cause is the timestamp mapping."""
    con.execute(_events_sql(fmt), [files])
    unreadable = con.execute("SELECT count(*) FROM events WHERE day IS NULL").fetchone()[0]
    con.execute("DELETE FROM events WHERE day IS NULL")
    events, users, items = con.execute(
        "SELECT count(*), count(DISTINCT user_id), count(DISTINCT item_id) FROM events"
    ).fetchone()
    if not events:
        raise LogConfigError(
            f"no event with a readable timestamp in {len(files)} file(s): check"
            f" timestamp_column ({fmt.timestamp_column!r}) and timestamp_unit"
            f" ({fmt.timestamp_unit!r})"
        )
    return unreadable, events, users, items


def _per_day(con: duckdb.DuckDBPyConnection) -> tuple[DayCounts, ...]:
    """The counts of each day with events, in order: what the start and the table rest on."""
    return tuple(
        DayCounts(*row)
        for row in con.execute(
            """SELECT day, count(*), count(DISTINCT user_id), count(DISTINCT item_id)
               FROM events GROUP BY day ORDER BY day"""
        ).fetchall()
    )


@dataclasses.dataclass(frozen=True)
class _Split:
    """The suggested split as of the log's last day, with the numbers it rests on, kept
    together so the candidates and the warnings read them from one place."""

    start: dt.date  # the partition start: the first plausible day
    outlier_events: int  # events before start
    last: dt.date
    span: int  # days from start to last, both included
    most: int  # the longest test period considered: a third of the span
    test_days: int
    test_users: int
    window: int
    covered: int  # test users with the wanted train events in the window
    in_window: int  # test users with any event in the window's train days


def _suggest_split(
    con: duckdb.DuckDBPyConnection,
    per_day: tuple[DayCounts, ...],
    events: int,
    min_train_events: int,
    min_test_users: int,
) -> _Split:
    """The suggested partition start, test period and window (module docstring)."""
    start = _plausible_start(per_day, events)
    outliers = sum(d.events for d in per_day if d.day < start)
    last = per_day[-1].day
    span = (last - start).days + 1
    most = max(1, span // 3)
    test_days, test_users = _test_days(con, last, most, min_test_users)
    window, covered = _window(con, last, test_days, span, min_train_events)
    in_window = _test_users_in_window(con, last, test_days, window)
    return _Split(
        start, outliers, last, span, most, test_days, test_users, window, covered, in_window
    )


def _candidates(
    con: duckdb.DuckDBPyConnection, split: _Split, min_train_events: int, scores: bool
) -> tuple[Candidate, ...]:
    """What each test period of the grid (and the suggested one) would give, shortest first,
    so the suggestion can be weighed against its neighbours."""
    return tuple(
        _candidate(con, split.last, days, split.span, min_train_events, scores)
        for days in sorted({*_grid(split.most), split.test_days})
    )


def _warnings(split: _Split, min_train_events: int, min_test_users: int) -> tuple[str, ...]:
    """Why the suggestion falls short of what was asked, if it does: the rule's fallbacks
    (module docstring) give a number either way, and these say it is a compromise."""
    warnings = []
    if split.test_users < min_test_users:
        warnings.append(
            f"no test period of up to {split.most} days holds {min_test_users} users active"
            f" before it: the most is {split.test_users} (test_days = {split.test_days})."
            " Metrics on so few users are noisy: the quality gate reports insufficient evidence"
            " below its min_test_users, and model selection chooses on train alone."
        )
    if split.test_users and split.covered < (split.test_users + 1) // 2:
        warnings.append(
            f"only {split.covered} of the {split.test_users} test users have"
            f" {min_train_events} events before the test period in the whole log:"
            f" window_days = {split.window} (all of it)"
        )
    return tuple(warnings)


def _grid(most: int) -> list[int]:
    """Test periods worth comparing: days, a week, a month, a quarter, a year and more."""
    days = [1, 2, 3, 7, 14, 30, 60, 90, 180, 365, 730, 1460]
    return [d for d in days if d <= most] or [1]


def _train_users(con: duckdb.DuckDBPyConnection, last: dt.date, window: int, test: int) -> int:
    start, cut = last - dt.timedelta(days=window - 1), last - dt.timedelta(days=test)
    return con.execute(
        "SELECT count(DISTINCT user_id) FROM events WHERE day BETWEEN ? AND ?", [start, cut]
    ).fetchone()[0]


def _candidate(
    con, last: dt.date, test_days: int, span: int, wanted: int, scores: bool = False
) -> Candidate:
    window, covered = _window(con, last, test_days, span, wanted)
    train_users = _train_users(con, last, window, test_days)
    validation_users, scored = _quick_scores(con, last, window, test_days) if scores else (0, ())
    return Candidate(
        test_days,
        _test_users(con, last, test_days),
        window,
        train_users,
        covered,
        validation_users,
        scored,
    )


def _quick_scores(
    con, last: dt.date, window: int, test_days: int
) -> tuple[int, tuple[tuple[str, float], ...]]:
    """The baselines' validation Recall@20 on the candidate's train period (module docstring):
    its (user, item) edges, each at its latest day, carved as model selection carves them."""
    import torch

    from recs_pipeline.evaluation.selection import quick_scores
    from recs_pipeline.graph.bipartite import InteractionGraph

    start, cut = last - dt.timedelta(days=window - 1), last - dt.timedelta(days=test_days)
    edges = con.execute(
        """SELECT dense_rank() OVER (ORDER BY user_id) - 1 AS u,
                  dense_rank() OVER (ORDER BY item_id) - 1 AS i,
                  epoch_us(CAST(max(day) AS TIMESTAMP)) AS ts
           FROM events WHERE day BETWEEN ? AND ? GROUP BY user_id, item_id ORDER BY u, i""",
        [start, cut],
    ).fetchnumpy()
    if not len(edges["u"]):
        return 0, ()
    users = torch.from_numpy(edges["u"].astype("int64"))
    items = torch.from_numpy(edges["i"].astype("int64"))
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    empty = torch.zeros(0, dtype=torch.long)
    graph = InteractionGraph(
        [str(u) for u in range(n_users)], [str(i) for i in range(n_items)],
        users, items, torch.from_numpy(edges["ts"].astype("int64")), empty, empty,
    )  # fmt: skip
    models = ("popularity", "gfcf") if n_items <= QUICK_SCORE_MAX_ITEMS else ("popularity",)
    validation_users, recalls = quick_scores(graph, models)
    return validation_users, tuple(recalls.items())


def _plausible_start(per_day: tuple[DayCounts, ...], events: int) -> dt.date:
    start = per_day[0].day
    before = 0
    for previous, current in zip(per_day, per_day[1:], strict=False):
        before += previous.events
        if (current.day - previous.day).days > OUTLIER_GAP_DAYS and before < OUTLIER_SHARE * events:
            start = current.day
    return start


def _test_users(con: duckdb.DuckDBPyConnection, last: dt.date, days: int) -> int:
    cut = last - dt.timedelta(days=days)
    return con.execute(
        """SELECT count(DISTINCT user_id) FROM events
           WHERE day > ? AND user_id IN (SELECT user_id FROM events WHERE day <= ?)""",
        [cut, cut],
    ).fetchone()[0]


def _test_users_in_window(
    con: duckdb.DuckDBPyConnection, last: dt.date, test_days: int, window_days: int
) -> int:
    """Test-period users with an event in the window before the test period."""
    cut = last - dt.timedelta(days=test_days)
    start = last - dt.timedelta(days=window_days)
    return con.execute(
        """SELECT count(DISTINCT user_id) FROM events
           WHERE day > ? AND user_id IN (SELECT user_id FROM events WHERE day > ? AND day <= ?)""",
        [cut, start, cut],
    ).fetchone()[0]


def _test_days(
    con: duckdb.DuckDBPyConnection, last: dt.date, most: int, wanted: int
) -> tuple[int, int]:
    for days in range(1, min(most, 60) + 1):
        users = _test_users(con, last, days)
        if users >= wanted:
            return days, users
    # Longer periods on a coarse grid (a sparse log's span runs to thousands of days).
    counted = {days: _test_users(con, last, days) for days in sorted({*_grid(most), most})}
    for days, users in counted.items():
        if users >= wanted:
            return days, users
    best = max(counted.values())
    return min(d for d, users in counted.items() if users == best), best


def _window(
    con: duckdb.DuckDBPyConnection, last: dt.date, test_days: int, span: int, wanted: int
) -> tuple[int, int]:
    """The window giving half the test users ``wanted`` train events, and how many it covers."""
    cut = last - dt.timedelta(days=test_days)
    # Per test user: the day of their wanted-th most recent event before the test period; the
    # window must reach back to it.
    needs = [
        row[0]
        for row in con.execute(
            """WITH test AS (SELECT DISTINCT user_id FROM events WHERE day > ?
                             AND user_id IN (SELECT user_id FROM events WHERE day <= ?)),
                    train AS (
                        SELECT user_id, day,
                               row_number() OVER (PARTITION BY user_id ORDER BY day DESC) AS n
                        FROM events WHERE day <= ? AND user_id IN (SELECT user_id FROM test))
               SELECT datediff('day', day, CAST(? AS DATE)) + 1 FROM train WHERE n = ?
               ORDER BY 1""",
            [cut, cut, cut, last, wanted],
        ).fetchall()
    ]
    test_users = _test_users(con, last, test_days)
    half = (test_users + 1) // 2
    if test_users == 0 or len(needs) < half:
        return max(span, 2 * test_days), len(needs)
    window = max(needs[half - 1], 2 * test_days)
    return window, sum(1 for need in needs if need <= window)


def describe(profile: LogProfile, shown_days: int = 14) -> str:
    """The profile in words, for the terminal."""
    active = [d for d in profile.per_day if d.day >= profile.partition_start]
    lines = [
        *_overview_lines(profile, active),
        *_recent_day_lines(active, shown_days),
        *_suggestion_lines(profile),
        *_candidate_lines(profile),
        *(f"WARNING: {warning}" for warning in profile.warnings),
    ]
    return "\n".join(lines)


def _spread(values: list[int]) -> str:
    """Min, median and max of ``values``: a day's typical size and its extremes in one line."""
    values = sorted(values)
    return f"min {values[0]:,}, median {values[len(values) // 2]:,}, max {values[-1]:,}"


def _overview_lines(p: LogProfile, active: list[DayCounts]) -> list[str]:
    """The log's size, its days (and the implausible early ones left out), per-day spreads and
    unreadable rows: what was read, before anything is suggested from it."""
    lines = [
        f"{p.files} file(s), {p.events:,} events, {p.users:,} users, {p.items:,} items",
        f"days: {p.first_day} .. {p.last_day}"
        + (
            f"; {p.outlier_events:,} events before {p.partition_start} look implausible"
            f" (under {OUTLIER_SHARE:.0%} of the log, before a gap of over {OUTLIER_GAP_DAYS}"
            " days) and are left out below"
            if p.outlier_events
            else ""
        ),
        f"{p.span_days:,} days from {p.partition_start}, {len(active):,} with events:"
        f" {p.empty_share:.1%} of days empty",
        f"per day with events: events {_spread([d.events for d in active])};"
        f" users {_spread([d.users for d in active])}; items {_spread([d.items for d in active])}",
    ]
    if p.unreadable_timestamps:
        lines.append(f"{p.unreadable_timestamps:,} rows with an unreadable timestamp (ignored)")
    return lines


def _recent_day_lines(active: list[DayCounts], shown_days: int) -> list[str]:
    """A table of the last ``shown_days`` days with events: where a test period would fall."""
    lines = [
        f"the last {min(shown_days, len(active))} days with events:",
        f"  {'day':<12}{'events':>10}{'users':>8}{'items':>8}",
    ]
    for d in active[-shown_days:]:
        lines.append(f"  {d.day!s:<12}{d.events:>10,}{d.users:>8,}{d.items:>8,}")
    return lines


def _suggestion_lines(p: LogProfile) -> list[str]:
    """The suggested test period, window and partition start, each with what it gives."""
    return [
        f"suggested test_days = {p.test_days}: the last {p.test_days} day(s) hold"
        f" {p.test_users:,} users also active before them (wanted >= {p.min_test_users})",
        f"suggested window_days = {p.window_days}: gives {p.covered_test_users:,} of those test"
        f" users >= {p.min_train_events} train events (wanted: half of them);"
        f" {p.window_test_users:,} have an event in it, the most the evaluation can judge",
        f"suggested partition_start = {p.partition_start}",
    ]


def _candidate_lines(p: LogProfile) -> list[str]:
    """The candidates' table (empty without candidates), the suggested row marked, with a
    score column for each baseline the most scored candidate has: one table for all of them."""
    if not p.candidates:
        return []
    scored = [name for name, _ in max((c.scores for c in p.candidates), key=len)]
    lines = ["other test periods, each with the window the rule picks for it:"]
    lines.append(
        f"  {'test_days':>9}{'test users':>12}{'window_days':>13}{'train users':>13}"
        f"{'covered':>9}"
        + (f"{'val users':>11}" + "".join(f"{name + '@20':>14}" for name in scored)
           if scored else "")
    )  # fmt: skip
    for c in p.candidates:
        mark = "  <- suggested" if c.test_days == p.test_days else ""
        lines.append(_candidate_row(c, scored) + mark)
    if scored:
        lines.append(
            "  (@20: validation Recall@20 at the model's defaults on each train period's"
            " latest edges, as model selection carves them; '-': too few users or items)"
        )
    return lines


def _candidate_row(c: Candidate, scored: list[str]) -> str:
    """One candidate's row of the table, '-' for a baseline it was not scored with."""
    recalls = dict(c.scores)
    return (
        f"  {c.test_days:>9,}{c.test_users:>12,}{c.window_days:>13,}{c.train_users:>13,}"
        f"{c.covered_test_users:>9,}"
        + (f"{c.validation_users:>11,}"
           + "".join(f"{recalls[n]:>14.4f}" if n in recalls else f"{'-':>14}"
                     for n in scored) if scored else "")
    )  # fmt: skip
