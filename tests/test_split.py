"""temporal_split on hand-worked logs: cutoff ties, duplicate collapse, cold start, k-core."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from recs_pipeline.data.split import SplitConfig, temporal_split

AS_OF = dt.date(2024, 1, 10)
# window 10 days, 2 test days: train = [Jan 1, Jan 8], test = [Jan 9, Jan 10].
CONFIG = SplitConfig(window_days=10, test_days=2)


def ts(day: int, hour: int = 12, minute: int = 0, second: int = 0, us: int = 0) -> dt.datetime:
    return dt.datetime(2024, 1, day, hour, minute, second, us)


def insert_events(con, events):
    """events: (timestamp, user, item[, weight]) tuples; event_date is the timestamp's day."""
    rows = []
    for event in events:
        when, user, item = event[:3]
        weight = event[3] if len(event) > 3 else 1.0
        rows.append((when.date(), when, user, item, "click", weight, "hand.csv"))
    con.executemany("INSERT INTO raw.interactions VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def split_rows(con, table):
    return con.execute(
        f"""SELECT user_id, item_id, n_events, weight, first_ts, last_ts
            FROM features.{table} WHERE as_of_date = ? ORDER BY user_id, item_id""",
        [AS_OF],
    ).fetchall()


HAND_LOG = [
    # --- train period [Jan 1, Jan 8] ---
    (ts(1, 10), "u1", "i1", 1.0),
    (ts(3, 10), "u1", "i1", 2.5),  # duplicate pair: one edge, n_events 2, weight 3.5
    (ts(8, 23, 59, 59, 999_999), "u1", "i2"),  # last microsecond before the test period
    (ts(2), "u2", "i1"),
    (ts(5), "u2", "i2"),
    (ts(4), "u3", "i1"),
    (ts(6), "u3", "i3"),
    # --- outside the window: ignored entirely ---
    (dt.datetime(2023, 12, 31, 12), "u4", "i4"),
    (dt.datetime(2024, 1, 11, 0), "u1", "i3"),
    # --- test period [Jan 9, Jan 10] ---
    (ts(9, 0), "u2", "i3"),  # exactly midnight starting the test period: test
    (ts(9, 12), "u1", "i1"),  # pair already in train: stays train, not a test edge
    (ts(10, 1), "u3", "i2"),
    (ts(10, 2), "u3", "i2"),  # duplicate test pair: one edge, n_events 2
    (ts(10, 3), "u9", "i1"),  # unknown user: cold start
    (ts(10, 4), "u1", "i9"),  # unknown item: cold start
    (ts(10, 5), "u4", "i4"),  # both unknown in train (u4/i4 only before the window)
]


def test_hand_worked_split(con):
    insert_events(con, HAND_LOG)
    report = temporal_split(con, AS_OF, CONFIG)

    assert split_rows(con, "train_interactions") == [
        ("u1", "i1", 2, 3.5, ts(1, 10), ts(3, 10)),
        ("u1", "i2", 1, 1.0, ts(8, 23, 59, 59, 999_999), ts(8, 23, 59, 59, 999_999)),
        ("u2", "i1", 1, 1.0, ts(2), ts(2)),
        ("u2", "i2", 1, 1.0, ts(5), ts(5)),
        ("u3", "i1", 1, 1.0, ts(4), ts(4)),
        ("u3", "i3", 1, 1.0, ts(6), ts(6)),
    ]
    assert split_rows(con, "test_interactions") == [
        ("u2", "i3", 1, 1.0, ts(9, 0), ts(9, 0)),
        ("u3", "i2", 2, 2.0, ts(10, 1), ts(10, 2)),
    ]
    assert report.train_edges == 6
    assert report.test_edges == 2
    assert report.train_users == 3
    assert report.train_items == 3
    assert report.test_users == 2
    assert report.cold_start_test_rows_dropped == 3
    assert report.repeat_test_rows_dropped == 1
    assert report.k_core_edges_dropped == 0


def test_midnight_boundary_alone_decides_the_side(con):
    # The same pair one microsecond apart around the cutoff: the earlier event is train, so the
    # midnight event is a repeat; a fresh pair at midnight is a test edge.
    insert_events(
        con,
        [
            (ts(8, 23, 59, 59, 999_999), "a", "x"),
            (ts(9, 0), "a", "x"),
            (ts(7), "b", "y"),
            (ts(7), "a", "y"),
            (ts(9, 0), "b", "x"),
        ],
    )
    report = temporal_split(con, AS_OF, CONFIG)
    assert [r[:3] for r in split_rows(con, "train_interactions")] == [
        ("a", "x", 1),
        ("a", "y", 1),
        ("b", "y", 1),
    ]
    assert [r[:3] for r in split_rows(con, "test_interactions")] == [("b", "x", 1)]
    assert report.repeat_test_rows_dropped == 1
    assert report.cold_start_test_rows_dropped == 0


def brute_force_k_core(edges: set[tuple[str, str]], k: int) -> set[tuple[str, str]]:
    edges = set(edges)
    while True:
        user_deg: dict[str, int] = {}
        item_deg: dict[str, int] = {}
        for u, i in edges:
            user_deg[u] = user_deg.get(u, 0) + 1
            item_deg[i] = item_deg.get(i, 0) + 1
        keep = {(u, i) for u, i in edges if user_deg[u] >= k and item_deg[i] >= k}
        if keep == edges:
            return keep
        edges = keep


def test_k_core_cascades(con):
    # u4 has one edge -> (u4, i3) goes; then i3 has one edge -> (u3, i3) goes; then u3 has one
    # edge -> (u3, i2) goes. Only the 2x2 block u1,u2 x i1,i2 survives.
    train = [("u1", "i1"), ("u1", "i2"), ("u2", "i1"), ("u2", "i2"), ("u3", "i2")]
    train += [("u3", "i3"), ("u4", "i3")]
    insert_events(con, [(ts(2 + n % 5), u, i) for n, (u, i) in enumerate(train)])
    # Test rows: u3 and i3 were removed by the k-core, so these are cold start.
    insert_events(con, [(ts(9), "u3", "i1"), (ts(9), "u1", "i3"), (ts(10), "u2", "i1")])
    report = temporal_split(con, AS_OF, SplitConfig(window_days=10, test_days=2, min_degree=2))

    expected = brute_force_k_core(set(train), 2)
    assert expected == {("u1", "i1"), ("u1", "i2"), ("u2", "i1"), ("u2", "i2")}
    got = {(u, i) for u, i, *_ in split_rows(con, "train_interactions")}
    assert got == expected
    assert report.k_core_edges_dropped == 3
    assert split_rows(con, "test_interactions") == []
    assert report.cold_start_test_rows_dropped == 2
    assert report.repeat_test_rows_dropped == 1


def test_k_core_matches_brute_force_on_random_graph(con):
    rng = random.Random(7)
    train = {(f"u{rng.randrange(30)}", f"i{rng.randrange(20)}") for _ in range(120)}
    insert_events(con, [(ts(1 + n % 8), u, i) for n, (u, i) in enumerate(sorted(train))])
    for k in (2, 3, 4):
        report = temporal_split(con, AS_OF, SplitConfig(10, 2, min_degree=k))
        expected = brute_force_k_core(train, k)
        got = {(u, i) for u, i, *_ in split_rows(con, "train_interactions")}
        assert got == expected
        assert report.k_core_edges_dropped == len(train) - len(expected)


def test_rerun_replaces_partition(con):
    insert_events(con, HAND_LOG)
    first = temporal_split(con, AS_OF, CONFIG)
    train, test = split_rows(con, "train_interactions"), split_rows(con, "test_interactions")
    second = temporal_split(con, AS_OF, CONFIG)
    assert second == first
    assert split_rows(con, "train_interactions") == train
    assert split_rows(con, "test_interactions") == test
    total = con.execute("SELECT count(*) FROM features.train_interactions").fetchone()[0]
    assert total == len(train) == 6

    # Another as-of date is its own partition and leaves this one alone.
    other = AS_OF + dt.timedelta(days=1)
    temporal_split(con, other, CONFIG)
    assert split_rows(con, "train_interactions") == train
    dates = con.execute(
        "SELECT DISTINCT as_of_date FROM features.train_interactions ORDER BY 1"
    ).fetchall()
    assert dates == [(AS_OF,), (other,)]


@pytest.mark.parametrize(("window_days", "test_days"), [(2, 2), (1, 2), (5, 7)])
def test_config_rejects_window_not_longer_than_test(window_days, test_days):
    with pytest.raises(ValueError, match="window_days"):
        SplitConfig(window_days=window_days, test_days=test_days)


def test_config_ranges():
    config = SplitConfig(window_days=10, test_days=2)
    assert config.train_range(AS_OF) == (dt.date(2024, 1, 1), dt.date(2024, 1, 8))
    assert config.test_range(AS_OF) == (dt.date(2024, 1, 9), dt.date(2024, 1, 10))
    with pytest.raises(ValueError):
        SplitConfig(window_days=5, test_days=0)
    with pytest.raises(ValueError):
        SplitConfig(window_days=5, test_days=1, min_degree=0)


def test_min_weight_turns_ratings_into_positives_and_counts_the_rest(con):
    # Issue 12, finding 6: ratings 1-5 stored as weights; with min_weight 4 only ratings of 4 and
    # more are edges (train and test), the others are counted; the graph carries the weights.
    from assets.lib.settings import SplitSettings
    from recs_pipeline.graph.bipartite import index_split

    assert "min_weight" in SplitSettings.model_fields  # a run-config setting like the others
    ratings = [
        (ts(1), "u1", "i1", 5.0),
        (ts(2), "u1", "i2", 2.0),  # below: no edge
        (ts(3), "u2", "i1", 4.0),
        (ts(4), "u2", "i2", 3.0),  # below: no edge
        (ts(5), "u1", "i3", 1.0),  # below; re-rated 5 later: one edge from the 5
        (ts(6), "u1", "i3", 5.0),
        (ts(6, 13), "u2", "i3", 4.0),
        (ts(7), "u3", "i2", 4.0),
        (ts(9), "u2", "i2", 5.0),  # a test edge: the train rating 3 was no edge
        (ts(10), "u1", "i2", 1.0),  # below: no test edge
    ]
    insert_events(con, ratings)
    report = temporal_split(con, AS_OF, SplitConfig(window_days=10, test_days=2, min_weight=4))
    assert split_rows(con, "train_interactions") == [
        ("u1", "i1", 1, 5.0, ts(1), ts(1)),
        ("u1", "i3", 1, 5.0, ts(6), ts(6)),
        ("u2", "i1", 1, 4.0, ts(3), ts(3)),
        ("u2", "i3", 1, 4.0, ts(6, 13), ts(6, 13)),
        ("u3", "i2", 1, 4.0, ts(7), ts(7)),
    ]
    assert split_rows(con, "test_interactions") == [("u2", "i2", 1, 5.0, ts(9), ts(9))]
    assert report.below_min_weight_rows_dropped == 4
    graph = index_split(con, AS_OF)
    assert graph.train_weight.tolist() == [5.0, 5.0, 4.0, 4.0, 4.0]
