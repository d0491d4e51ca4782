"""A synthetic click log with real collaborative signal: the embedded default data.

Model: users and items each belong to one of ``n_communities`` latent communities. An event of
user u picks, with probability ``in_community``, an item of u's community, otherwise an item of
any community; within the chosen set, items follow a power law (Zipf with ``zipf_exponent`` over
a random ranking), so a few items are very popular. Users' activity is log-normal. A fraction
of users and items exists from the first day; the rest arrive uniformly over the period, so new
users and items appear every day. Everything is a function of ``seed``.

Landing layout: ``{root}/{YYYY-MM-DD}/events-{n}.csv`` with columns
``timestamp`` (epoch milliseconds), ``user_id``, ``item_id``, ``event_type``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl

EVENT_TYPES = ("view", "click", "purchase")
EVENT_TYPE_PROBABILITIES = (0.70, 0.25, 0.05)
_SPEC_FILE = "_synthetic_spec.json"


@dataclasses.dataclass(frozen=True)
class SyntheticLogSpec:
    start: dt.date
    days: int = 60
    n_users: int = 4000
    n_items: int = 2000
    n_communities: int = 16
    events_per_day: int = 4000
    in_community: float = 0.85
    zipf_exponent: float = 1.0
    initial_user_fraction: float = 0.6
    initial_item_fraction: float = 0.7
    files_per_day: int = 2
    dirty_fraction: float = 0.0
    seed: int = 0

    @property
    def end(self) -> dt.date:
        return self.start + dt.timedelta(days=self.days - 1)

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "start": self.start.isoformat()})


def _arrival_days(rng: np.random.Generator, n: int, initial: float, days: int) -> np.ndarray:
    arrival = rng.integers(0, days, size=n)
    arrival[rng.random(n) < initial] = 0
    return arrival


def generate_events(spec: SyntheticLogSpec) -> pl.DataFrame:
    """All events of the period as one frame (timestamp ms, user_id, item_id, event_type)."""
    rng = np.random.default_rng(spec.seed)
    user_community = rng.integers(0, spec.n_communities, size=spec.n_users)
    item_community = rng.integers(0, spec.n_communities, size=spec.n_items)
    user_arrival = _arrival_days(rng, spec.n_users, spec.initial_user_fraction, spec.days)
    item_arrival = _arrival_days(rng, spec.n_items, spec.initial_item_fraction, spec.days)
    activity = rng.lognormal(0.0, 1.0, size=spec.n_users)
    # Zipf weights over a random ranking of items, within each community and globally.
    item_weight = (1.0 + rng.permutation(spec.n_items)) ** -spec.zipf_exponent

    frames = []
    for day in range(spec.days):
        n_events = rng.poisson(spec.events_per_day)
        user_p = np.where(user_arrival <= day, activity, 0.0)
        users = rng.choice(spec.n_users, size=n_events, p=user_p / user_p.sum())
        live_weight = np.where(item_arrival <= day, item_weight, 0.0)
        community = np.where(
            rng.random(n_events) < spec.in_community,
            user_community[users],
            -1,  # any community
        )
        items = np.empty(n_events, dtype=np.int64)
        for c in range(-1, spec.n_communities):
            rows = np.flatnonzero(community == c)
            if rows.size == 0:
                continue
            w = live_weight if c < 0 else np.where(item_community == c, live_weight, 0.0)
            if w.sum() == 0:
                w = live_weight
            items[rows] = rng.choice(spec.n_items, size=rows.size, p=w / w.sum())
        day_start_ms = (
            dt.datetime.combine(spec.start + dt.timedelta(days=day), dt.time(), dt.UTC).timestamp()
            * 1000
        )
        frames.append(
            pl.DataFrame(
                {
                    "timestamp": (day_start_ms + rng.integers(0, 86_400_000, n_events)).astype(
                        np.int64
                    ),
                    "user_id": users,
                    "item_id": items,
                    "event_type": rng.choice(
                        len(EVENT_TYPES), size=n_events, p=EVENT_TYPE_PROBABILITIES
                    ),
                }
            )
        )
    events = pl.concat(frames).sort("timestamp")
    return events.with_columns(
        pl.format("u{}", pl.col("user_id").cast(pl.String).str.zfill(6)).alias("user_id"),
        pl.format("i{}", pl.col("item_id").cast(pl.String).str.zfill(6)).alias("item_id"),
        pl.col("event_type").replace_strict(dict(enumerate(EVENT_TYPES))).alias("event_type"),
    )


N_GENRES = 8
ITEM_CATALOGUE = "items.csv"


def item_catalogue(spec: SyntheticLogSpec, noise: float = 0.05) -> pl.DataFrame:
    """One row per item: ``item_id`` and ``N_GENRES`` 0/1 genre flags. Community c has genres
    c mod 8 and (c + 1 + c // 8) mod 8; each flag is then flipped with probability ``noise``,
    so genres carry most, not all, of an item's community (the signal PinSAGE's features use)."""
    rng = np.random.default_rng(spec.seed)
    rng.integers(0, spec.n_communities, size=spec.n_users)  # the same draws as generate_events
    item_community = rng.integers(0, spec.n_communities, size=spec.n_items)
    flags = np.zeros((spec.n_items, N_GENRES), dtype=np.int64)
    rows = np.arange(spec.n_items)
    flags[rows, item_community % N_GENRES] = 1
    flags[rows, (item_community + 1 + item_community // N_GENRES) % N_GENRES] = 1
    flip = np.random.default_rng(spec.seed + 2).random(flags.shape) < noise
    flags = np.where(flip, 1 - flags, flags)
    return pl.DataFrame(
        {
            "item_id": [f"i{i:06d}" for i in range(spec.n_items)],
            **{f"genre_{g}": flags[:, g] for g in range(N_GENRES)},
        }
    )


def _dirty(frame: pl.DataFrame, fraction: float, rng: np.random.Generator) -> pl.DataFrame:
    """Corrupt ``fraction`` of rows the way real logs go bad (missing ids, bad timestamps...)."""
    n_bad = int(round(fraction * frame.height))
    if n_bad == 0:
        return frame.cast({"timestamp": pl.String})
    rows = rng.choice(frame.height, size=n_bad, replace=False)
    kinds = rng.integers(0, 4, size=n_bad)
    out = frame.cast({"timestamp": pl.String}).to_dict(as_series=False)
    for row, kind in zip(rows.tolist(), kinds.tolist(), strict=True):
        if kind == 0:
            out["user_id"][row] = None
        elif kind == 1:
            out["timestamp"][row] = "not-a-timestamp"
        elif kind == 2:
            out["timestamp"][row] = str(int(out["timestamp"][row]) - 3 * 86_400_000)
        else:
            out["event_type"][row] = "unknown_event"
    return pl.DataFrame(out)


def write_landing_files(spec: SyntheticLogSpec, root: str | Path) -> list[Path]:
    """Write the period's events as daily landing files under ``root``, and the item catalogue
    (genre flags) as ``root/items.csv``; returns the daily files.

    Idempotent: when ``root`` already holds a log written from the same spec, nothing is
    rewritten (the spec is recorded in ``root/_synthetic_spec.json``).
    """
    root = Path(root)
    spec_path = root / _SPEC_FILE
    if spec_path.exists() and spec_path.read_text() == spec.to_json():
        if not (root / ITEM_CATALOGUE).exists():
            item_catalogue(spec).write_csv(root / ITEM_CATALOGUE)
        return sorted(root.glob("*/*.csv"))
    events = generate_events(spec)
    rng = np.random.default_rng(spec.seed + 1)
    root.mkdir(parents=True, exist_ok=True)
    written = []
    events = events.with_columns(
        (pl.col("timestamp") // 86_400_000).alias("_day"),
        pl.Series("_file", rng.integers(0, spec.files_per_day, size=events.height)),
    )
    # Files in a fixed order: the corruption draws below consume `rng` file by file.
    parts = events.partition_by(["_day", "_file"], maintain_order=True, as_dict=True)
    for (day_number, file_number), part in sorted(parts.items()):
        day = dt.date(1970, 1, 1) + dt.timedelta(days=int(day_number))
        folder = root / day.isoformat()
        folder.mkdir(exist_ok=True)
        path = folder / f"events-{file_number}.csv"
        _dirty(part.drop("_day", "_file"), spec.dirty_fraction, rng).write_csv(path)
        written.append(path)
    item_catalogue(spec).write_csv(root / ITEM_CATALOGUE)
    spec_path.write_text(spec.to_json())
    return sorted(written)


def recorded_spec(root: str | Path) -> SyntheticLogSpec | None:
    """The spec a synthetic log under ``root`` was written from, or None."""
    spec_path = Path(root) / _SPEC_FILE
    if not spec_path.exists():
        return None
    fields = json.loads(spec_path.read_text())
    return SyntheticLogSpec(**{**fields, "start": dt.date.fromisoformat(fields["start"])})
