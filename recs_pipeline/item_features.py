"""Item features (genres, categories, prices...) from a catalogue file, aligned to an id map.

The file (CSV, Parquet or newline-delimited JSON, by extension) has one row per item: the
item id column and any number of feature columns. Numeric and boolean columns become features;
other columns are ignored and listed. 0/1 columns stay as they are; other numeric columns are
standardised (zero mean, unit variance over the file's items) so that no column dominates by
its unit. Items of the id map that the file lacks, and missing values, get 0.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from pathlib import Path

import duckdb
import numpy as np
import torch

from recs_pipeline.logs import LogConfigError, control_character_sql, normalized_id_sql
from recs_pipeline.warehouse import quote_identifier

_READERS = {
    ".csv": "read_csv",
    ".parquet": "read_parquet",
    ".json": "read_json",
    ".jsonl": "read_json",
}
_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "BOOLEAN")


@dataclasses.dataclass
class ItemFeatures:
    values: torch.Tensor  # (n_items, n_features) float32, rows in id-map order
    columns: list[str]
    ignored_columns: list[str]
    matched_items: int


def feature_file(landing_root: str | os.PathLike, relative: str) -> Path | None:
    """The catalogue file ``relative`` under ``landing_root``, or None if there is none.
    Like the logs, it must lie inside the landing root."""
    root = Path(landing_root).resolve()
    if os.path.isabs(relative):
        raise LogConfigError(f"item_features_path {relative!r} must be relative to landing_root")
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise LogConfigError(f"item_features_path {relative!r} reaches outside landing_root")
    if path.suffix.lower() not in _READERS:
        raise LogConfigError(
            f"item_features_path {relative!r}: unknown format, use one of {sorted(_READERS)}"
        )
    return path if path.is_file() else None


def read_item_features(path: Path, item_column: str, item_ids: list[str]) -> ItemFeatures:
    """The features of ``item_ids`` (in that order) from the catalogue file at ``path``."""
    con = duckdb.connect()
    try:
        reader = _READERS[path.suffix.lower()]
        # DuckDB's readers glob their path: escape it so the file is read as itself.
        con.execute(
            f"CREATE TEMP TABLE catalogue AS SELECT * FROM {reader}(?)", [glob.escape(str(path))]
        )
        described = con.execute("DESCRIBE catalogue").fetchall()
        names = [row[0] for row in described]
        if item_column not in names:
            raise LogConfigError(
                f"item_column {item_column!r} is not a column of the item features file"
                f" {path.name} (columns: {names})"
            )
        columns = [n for n, kind, *_ in described if n != item_column and kind in _NUMERIC]
        ignored = [n for n in names if n != item_column and n not in columns]
        import polars as pl  # lazily, as in recommend.publish_recommendations

        ids = pl.DataFrame({"idx": np.arange(len(item_ids)), "item_id": list(item_ids)})
        con.register("ids", ids)
        selected = ", ".join(
            f"any_value({quote_identifier(c)})::DOUBLE AS {quote_identifier(c)}" for c in columns
        )
        # Catalogue ids follow the ingest id rule (NFC, trimmed), so they match the stored ids;
        # an id with a control character matches none (ingest quarantines such ids).
        item = normalized_id_sql(f"{quote_identifier(item_column)}::VARCHAR")
        valid = f"NOT {control_character_sql(item)}"
        rows = con.execute(
            f"""SELECT ids.idx, f.* EXCLUDE (item_id) FROM ids LEFT JOIN (
                    SELECT {item} AS item_id{", " + selected if columns else ""}
                    FROM catalogue WHERE {valid} GROUP BY 1) f ON f.item_id = ids.item_id
                ORDER BY ids.idx"""
        ).fetchnumpy()
        matched = con.execute(
            f"SELECT count(DISTINCT {item}) FROM catalogue WHERE {valid} AND {item} IN"
            " (SELECT item_id FROM ids)"
        ).fetchone()[0]
    finally:
        con.close()
    values = np.zeros((len(item_ids), len(columns)), dtype=np.float64)
    for j, column in enumerate(columns):
        data = np.ma.asarray(rows[column]).astype(np.float64).filled(np.nan)
        missing = ~np.isfinite(data)
        present = data[~missing]
        if present.size and not np.isin(present, (0.0, 1.0)).all() and present.std() > 0:
            data = (data - present.mean()) / present.std()
        data[missing] = 0.0
        values[:, j] = data
    return ItemFeatures(torch.from_numpy(values.astype(np.float32)), columns, ignored, matched)
