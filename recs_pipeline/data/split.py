"""The temporal train/test split, in DuckDB SQL.

For as-of date D, window W days and H test days:
train = events with event_date in [D-W+1, D-H], test = events with event_date in (D-H, D].
Repeated (user, item) events collapse to one edge. A pair already in train is not a test edge
(it is not a new interaction). Test keeps only users and items that train knows: cold-start
rows are dropped and counted. With ``min_degree`` > 1, train is reduced to its iterative k-core
(every user and item keeps at least that many edges) before test is filtered.

Explicit feedback: with ``min_weight`` set, an event whose weight (a rating, say) is below it
is no interaction at all, in train and test alike (ratings 1-5 with min_weight 4: the 4s and
5s are the positives); such rows are counted. An edge's weight is the sum of its events'
weights; training can read it (``TrainConfig.weighted``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import duckdb

from recs_pipeline.config import SettingError, check_declared, setting
from recs_pipeline.infra.warehouse import replace_partition, transaction


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    window_days: int = setting(
        28, "W: days of history up to and including D that the split uses.", ge=2
    )
    test_days: int = setting(2, "H: the newest H days of the window are the test fold.", ge=1)
    min_degree: int = setting(
        1, "Iterative k-core on train: users and items keep at least this many edges.", ge=1
    )
    min_weight: float | None = setting(
        None,
        "Events weighing less than this (explicit ratings: the rating) are not interactions,"
        " in train and test; none by default (every event is one).",
    )

    def __post_init__(self) -> None:
        check_declared(self)
        if self.window_days <= self.test_days:
            raise SettingError(
                ("window_days", "test_days"),
                f"window_days ({self.window_days}) must be longer than test_days"
                f" ({self.test_days}): the train period would be empty",
            )

    def train_range(self, as_of: dt.date) -> tuple[dt.date, dt.date]:
        return (
            as_of - dt.timedelta(days=self.window_days - 1),
            as_of - dt.timedelta(days=self.test_days),
        )

    def test_range(self, as_of: dt.date) -> tuple[dt.date, dt.date]:
        return as_of - dt.timedelta(days=self.test_days - 1), as_of


@dataclasses.dataclass(frozen=True)
class SplitReport:
    train_edges: int
    test_edges: int
    train_users: int
    train_items: int
    test_users: int
    cold_start_test_rows_dropped: int
    repeat_test_rows_dropped: int
    k_core_edges_dropped: int
    below_min_weight_rows_dropped: int = 0


_EDGES = """
    SELECT user_id, item_id, count(*)::INTEGER AS n_events, sum(weight) AS weight,
           min(event_ts) AS first_ts, max(event_ts) AS last_ts
    FROM raw.interactions
    WHERE event_date BETWEEN ? AND ? AND (CAST(? AS DOUBLE) IS NULL OR weight >= ?)
    GROUP BY user_id, item_id
"""


def _k_core(con: duckdb.DuckDBPyConnection, k: int) -> int:
    """Iteratively drop users and items with fewer than k edges from ``_train``; rows dropped."""
    dropped = 0
    while True:
        removed = con.execute(
            """DELETE FROM _train WHERE user_id IN (
                   SELECT user_id FROM _train GROUP BY user_id HAVING count(*) < ?)
               OR item_id IN (
                   SELECT item_id FROM _train GROUP BY item_id HAVING count(*) < ?)""",
            [k, k],
        ).fetchone()[0]
        if removed == 0:
            return dropped
        dropped += removed


def temporal_split(
    con: duckdb.DuckDBPyConnection, as_of: dt.date, config: SplitConfig
) -> SplitReport:
    """Compute the split for ``as_of`` and replace its partitions of
    ``features.train_interactions`` and ``features.test_interactions`` in one transaction."""
    train_start, train_end = config.train_range(as_of)
    test_start, test_end = config.test_range(as_of)
    threshold = [config.min_weight, config.min_weight]
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _train AS {_EDGES}", [train_start, train_end, *threshold]
    )
    k_core_dropped = _k_core(con, config.min_degree) if config.min_degree > 1 else 0
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _test_all AS {_EDGES}", [test_start, test_end, *threshold]
    )
    below = 0
    if config.min_weight is not None:
        below = con.execute(
            "SELECT count(*) FROM raw.interactions WHERE event_date BETWEEN ? AND ? AND weight < ?",
            [train_start, test_end, config.min_weight],
        ).fetchone()[0]
    repeat, cold = con.execute(
        """SELECT
             count(*) FILTER (WHERE tr.user_id IS NOT NULL),
             count(*) FILTER (WHERE tr.user_id IS NULL AND (
                 t.user_id NOT IN (SELECT user_id FROM _train)
                 OR t.item_id NOT IN (SELECT item_id FROM _train)))
           FROM _test_all t
           LEFT JOIN _train tr USING (user_id, item_id)"""
    ).fetchone()
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _test AS
           SELECT t.* FROM _test_all t
           ANTI JOIN _train tr USING (user_id, item_id)
           WHERE t.user_id IN (SELECT user_id FROM _train)
             AND t.item_id IN (SELECT item_id FROM _train)"""
    )
    with transaction(con):
        for table, source in (
            ("features.train_interactions", "_train"),
            ("features.test_interactions", "_test"),
        ):
            replace_partition(
                con,
                table,
                as_of,
                f"""SELECT CAST(? AS DATE), user_id, item_id, n_events, weight, first_ts, last_ts
                    FROM {source} ORDER BY user_id, item_id""",
                [as_of],
            )
    stats = con.execute(
        """SELECT (SELECT count(*) FROM _train), (SELECT count(*) FROM _test),
                  (SELECT count(DISTINCT user_id) FROM _train),
                  (SELECT count(DISTINCT item_id) FROM _train),
                  (SELECT count(DISTINCT user_id) FROM _test)"""
    ).fetchone()
    for table in ("_train", "_test_all", "_test"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return SplitReport(*stats, cold, repeat, k_core_dropped, below)


def _days(days: list[dt.date], first: int = 5) -> str:
    shown = ", ".join(d.isoformat() for d in days[:first])
    return shown + (f" … (first {first} of {len(days)})" if len(days) > first else "")


def explain_empty_train(
    con: duckdb.DuckDBPyConnection,
    as_of: dt.date,
    config: SplitConfig,
    ingested: set[dt.date] | None = None,
) -> str:
    """Why the split of ``as_of`` has no train edges, and what to do about it.

    Days never ingested (not in ``ingested``, the days the orchestrator recorded as
    materialised, and without any row, accepted or quarantined, in the warehouse) are told
    apart from days ingested but empty, and from events all removed by the k-core filter. When
    the train period holds no events, the nearest earlier events in ``raw.interactions`` give
    the window that would include them.
    """
    start, end = config.train_range(as_of)
    where = f"no train interactions in [{start}, {end}]"
    recorded = {
        day
        for (day,) in con.execute(
            """SELECT DISTINCT event_date FROM raw.interactions WHERE event_date BETWEEN ? AND ?
               UNION SELECT DISTINCT event_date FROM raw.rejected_interactions
               WHERE event_date BETWEEN ? AND ?""",
            [start, end, start, end],
        ).fetchall()
    }
    period = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    known = recorded | (ingested or set())
    missing = [day for day in period if day not in known]
    events = con.execute(
        "SELECT count(*) FROM raw.interactions WHERE event_date BETWEEN ? AND ?", [start, end]
    ).fetchone()[0]
    if events:
        return (
            f"{where}: its {events} events were all removed by the k-core filter"
            f" (min_degree {config.min_degree}): lower min_degree or widen window_days"
        )
    parts = []
    if missing:
        parts.append(
            f"{len(missing)} of {len(period)} days were never ingested ({_days(missing)}):"
            " ingest raw_interactions for those days first"
        )
    empty = len(period) - len(missing)
    if empty:
        parts.append(
            ("all " if not missing else "")
            + f"{empty} of {len(period)} days were ingested and hold no events"
        )
    nearest = con.execute(
        "SELECT max(event_date) FROM raw.interactions WHERE event_date < ?", [start]
    ).fetchone()[0]
    if nearest is not None:
        parts.append(
            f"the nearest events are {(start - nearest).days} days earlier ({nearest}):"
            f" window_days ≥ {(as_of - nearest).days + 1} would include them"
        )
    elif not missing:
        parts.append("raw.interactions holds no events before this period either")
    return f"{where}: " + "; ".join(parts)
