"""The synthetic log: determinism, arrivals after day 0, idempotent landing files."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import polars as pl

from recs_pipeline.data.synthetic import (
    EVENT_TYPES,
    SyntheticLogSpec,
    generate_events,
    write_landing_files,
)

SPEC = SyntheticLogSpec(
    start=dt.date(2024, 3, 1),
    days=6,
    n_users=120,
    n_items=80,
    n_communities=4,
    events_per_day=300,
    files_per_day=2,
    seed=3,
)


def day_of(frame: pl.DataFrame) -> pl.Series:
    return (frame["timestamp"] // 86_400_000).map_elements(
        lambda d: dt.date(1970, 1, 1) + dt.timedelta(days=d), return_dtype=pl.Date
    )


def test_same_seed_same_frame_other_seed_differs():
    first = generate_events(SPEC)
    assert first.equals(generate_events(SPEC))
    other = generate_events(dataclasses.replace(SPEC, seed=4))
    assert not first.equals(other)
    assert first.columns == ["timestamp", "user_id", "item_id", "event_type"]
    assert first["timestamp"].is_sorted()
    assert set(first["event_type"].unique()) <= set(EVENT_TYPES)
    assert first["user_id"].str.contains(r"^u\d{6}$").all()
    assert first["item_id"].str.contains(r"^i\d{6}$").all()


def test_events_fall_inside_the_period_and_new_ids_arrive_later():
    events = generate_events(SPEC)
    days = day_of(events)
    assert days.min() == SPEC.start and days.max() == SPEC.end
    assert set(days.unique()) == {SPEC.start + dt.timedelta(days=d) for d in range(SPEC.days)}

    events = events.with_columns(days.alias("day"))
    first_user_day = events.group_by("user_id").agg(pl.col("day").min())["day"]
    first_item_day = events.group_by("item_id").agg(pl.col("day").min())["day"]
    # Users and items first seen after day 0 (arrivals), on more than one later day.
    later_users = first_user_day.filter(first_user_day > SPEC.start)
    later_items = first_item_day.filter(first_item_day > SPEC.start)
    assert later_users.len() > 0 and later_items.len() > 0
    assert later_users.n_unique() >= 2 and later_items.n_unique() >= 2
    # Day-0 events only use ids that exist on day 0: fewer distinct ids than the whole period.
    day0 = events.filter(pl.col("day") == SPEC.start)
    assert day0["user_id"].n_unique() < events["user_id"].n_unique()
    assert day0["item_id"].n_unique() < events["item_id"].n_unique()


def test_community_signal():
    # With in_community = 1 every event of a user picks an item of the user's community, so all
    # of a user's items carry one community label (labels recomputed from the seed: the
    # generator draws user communities first, then item communities).
    spec = dataclasses.replace(SPEC, in_community=1.0, n_communities=2, seed=8)
    events = generate_events(spec)
    rng = np.random.default_rng(spec.seed)
    rng.integers(0, spec.n_communities, size=spec.n_users)  # user communities (drawn first)
    item_community = rng.integers(0, spec.n_communities, size=spec.n_items)
    labels = events.with_columns(
        pl.col("item_id")
        .str.slice(1)
        .cast(pl.Int64)
        .map_elements(lambda i: int(item_community[i]), return_dtype=pl.Int64)
        .alias("c")
    )
    per_user = labels.group_by("user_id").agg(pl.col("c").n_unique())
    assert (per_user["c"] == 1).all()


def test_write_landing_files_one_folder_per_day_and_idempotent(tmp_path):
    root = tmp_path / "landing"
    files = write_landing_files(SPEC, root)
    assert files == sorted(files)
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert folders == [(SPEC.start + dt.timedelta(days=d)).isoformat() for d in range(SPEC.days)]
    assert all(f.parent.name in folders and f.name.startswith("events-") for f in files)
    assert all(len(list((root / d).glob("*.csv"))) <= SPEC.files_per_day for d in folders)

    # The files hold exactly the generated events, each in its own UTC day's folder.
    written = pl.concat(
        [pl.read_csv(f).with_columns(pl.lit(f.parent.name).alias("folder")) for f in files]
    )
    assert written.height == generate_events(SPEC).height
    assert (day_of(written).cast(pl.String) == written["folder"]).all()
    expected = generate_events(SPEC).sort("timestamp", "user_id", "item_id")
    got = written.drop("folder").sort("timestamp", "user_id", "item_id")
    assert got.equals(expected)

    # Second call: same files, nothing rewritten.
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    assert write_landing_files(SPEC, root) == files
    assert {f: f.stat().st_mtime_ns for f in files} == mtimes

    # A different spec rewrites.
    changed = dataclasses.replace(SPEC, seed=99)
    write_landing_files(changed, root)
    assert (root / "_synthetic_spec.json").read_text() == changed.to_json()


def test_dirty_fraction_corrupts_that_many_rows(tmp_path):
    fraction = 0.2
    spec = dataclasses.replace(SPEC, dirty_fraction=fraction)
    files = write_landing_files(spec, tmp_path)
    frame = pl.concat([pl.read_csv(f, schema_overrides={"timestamp": pl.String}) for f in files])
    clean = generate_events(SPEC)
    assert frame.height == clean.height
    ts = frame["timestamp"].cast(pl.Int64, strict=False)
    day = (ts // 86_400_000).cast(pl.Int64)
    folder_day = pl.Series(
        [
            (dt.date.fromisoformat(f.parent.name) - dt.date(1970, 1, 1)).days
            for f in files
            for _ in range(pl.read_csv(f).height)
        ]
    )
    bad = (
        frame["user_id"].is_null()
        | ts.is_null()
        | (day != folder_day).fill_null(True)
        | ~frame["event_type"].is_in(list(EVENT_TYPES))
    )
    # Each file gets round(fraction * rows) corruptions.
    expected = sum(round(fraction * pl.read_csv(f).height) for f in files)
    assert int(bad.sum()) == expected


def test_dirty_log_is_byte_identical_for_the_same_seed(tmp_path):
    spec = dataclasses.replace(SPEC, dirty_fraction=0.05)
    first = write_landing_files(spec, tmp_path / "a")
    second = write_landing_files(spec, tmp_path / "b")
    assert [f.relative_to(tmp_path / "a") for f in first] == [
        f.relative_to(tmp_path / "b") for f in second
    ]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second, strict=True))
