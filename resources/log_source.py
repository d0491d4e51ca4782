"""Where the landing logs are and how their columns map onto ``raw.interactions``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from pydantic import Field

from recs_pipeline.data.item_features import feature_file
from recs_pipeline.data.logs import (
    DEFAULT_PATTERN,
    MIN_PLAUSIBLE_DATE,
    LogConfigError,
    LogFormat,
    day_files,
    export_files,
    is_history_pattern,
)


class LogSource(dg.ConfigurableResource):
    """Landing files: one folder or file pattern per day, or one history export."""

    landing_root: str = Field(
        default="data/landing", description="Folder holding the daily landing files."
    )
    path_pattern: str = Field(
        default=DEFAULT_PATTERN,
        description="Files of one day, relative to landing_root; {date:...} takes strftime"
        " codes, e.g. '{date:%Y-%m-%d}/*.csv' or 'dt={date:%Y%m%d}/*.parquet'. Without {date}"
        " it names a history export (one file, a glob, '**' across folders such as"
        " 'month=*/*.parquet'): read once per run, each row written to its event day.",
    )
    format: str = Field(default="csv", description="csv, parquet or json (newline-delimited).")
    user_column: str = Field(default="user_id", description="Column holding the user id.")
    item_column: str = Field(default="item_id", description="Column holding the item id.")
    timestamp_column: str = Field(default="timestamp", description="Column holding event time.")
    timestamp_unit: str = Field(
        default="ms", description="s, ms or us (epoch numbers) or iso (ISO-8601 text)."
    )
    event_type_column: str | None = Field(
        default="event_type", description="Column holding the event type (optional)."
    )
    weight_column: str | None = Field(
        default=None, description="Column holding a numeric event weight (optional)."
    )
    event_types: list[str] | None = Field(
        default=None, description="Accepted event types; other types are quarantined."
    )
    date_columns: str | None = Field(
        default=None,
        description="Year, month and day columns, comma-separated (e.g. 'year,month,day'),"
        " building the event date (midnight UTC) instead of timestamp_column.",
    )
    min_plausible_date: str | None = Field(
        default=MIN_PLAUSIBLE_DATE.isoformat(),
        description="Events dated before this day (YYYY-MM-DD) are quarantined as 'implausible"
        " timestamp'; empty or 'none' accepts any date.",
    )
    item_features_path: str | None = Field(
        default="items.csv",
        description="Catalogue file relative to landing_root (csv, parquet or json): the"
        " item_column plus numeric/boolean feature columns (genres, categories...), read by"
        " interaction_graph for models that take item features (pinsage). Ignored when absent.",
    )
    item_feature_separator: str | None = Field(
        default="|",
        description="Separator of multi-valued catalogue columns (MovieLens genres"
        " 'Adventure|Animation'): such a column becomes one 0/1 feature per value. None: none.",
    )
    item_feature_max_categories: int = Field(
        default=50,
        description="Text catalogue columns with more distinct values than this are ignored"
        " (and reported), not one-/multi-hot encoded.",
    )

    def log_format(self) -> LogFormat:
        return LogFormat(
            format=self.format,
            user_column=self.user_column,
            item_column=self.item_column,
            timestamp_column=self.timestamp_column,
            timestamp_unit=self.timestamp_unit,
            event_type_column=self.event_type_column,
            weight_column=self.weight_column,
            event_types=tuple(self.event_types) if self.event_types is not None else None,
            date_columns=tuple(c.strip() for c in self.date_columns.split(","))
            if self.date_columns
            else None,
            min_plausible_date=self.plausible_from(),
        )

    def plausible_from(self) -> dt.date | None:
        if not self.min_plausible_date or self.min_plausible_date.lower() == "none":
            return None
        try:
            return dt.date.fromisoformat(self.min_plausible_date)
        except ValueError:
            raise LogConfigError(
                f"min_plausible_date must be a date YYYY-MM-DD, not {self.min_plausible_date!r}"
            ) from None

    def item_features_file(self) -> Path | None:
        if self.item_features_path is None:
            return None
        return feature_file(self.landing_root, self.item_features_path)

    def files_for(self, day: dt.date, progress: Callable[[str], None] | None = None) -> list[str]:
        return day_files(self.landing_root, self.path_pattern, day, progress=progress)

    def is_history_export(self) -> bool:
        """path_pattern has no {date}: one export holding every day."""
        return is_history_pattern(self.path_pattern)

    def export_files(self, progress: Callable[[str], None] | None = None) -> list[str]:
        """The export's files; a long walk of the landing folder reports to ``progress``."""
        return export_files(self.landing_root, self.path_pattern, progress=progress)
