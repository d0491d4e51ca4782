"""Item features (genres, categories, prices...) from a catalogue file, aligned to an id map.

The file (CSV, Parquet or newline-delimited JSON, by extension) has one row per item: the
item id column and any number of feature columns.

- Numeric and boolean columns: 0/1 columns stay as they are; other numeric columns are
  standardised (zero mean, unit variance over the file's items) so that no column dominates by
  its unit.
- Text columns are categorical. A column whose values hold the ``separator`` (MovieLens genres
  ``Adventure|Animation``) is multi-valued and becomes one 0/1 column per value (multi-hot,
  named ``genres=Adventure``); other text columns one-hot, one 0/1 column per value.
  A text column with more than ``max_categories`` distinct values, or a different value for
  every item (titles, names, ids), is not a category: it would add a column per item, far
  more inputs than the catalogue can inform, so it is ignored.
- Every column not used (other types, the text columns above) is listed in ``ignored`` with
  the reason.

Items of the id map that the file lacks, and missing values, get 0.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from recs_pipeline.data.logs import LogConfigError, control_character_sql, normalized_id_sql
from recs_pipeline.infra.warehouse import quote_identifier

if TYPE_CHECKING:
    import numpy as np
    import torch

_READERS = {
    ".csv": "read_csv",
    ".parquet": "read_parquet",
    ".json": "read_json",
    ".jsonl": "read_json",
}
_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "BOOLEAN")
_TEXT = ("VARCHAR",)
DEFAULT_SEPARATOR = "|"
DEFAULT_MAX_CATEGORIES = 50


@dataclasses.dataclass
class ItemFeatures:
    values: torch.Tensor  # (n_items, n_features) float32, rows in id-map order
    columns: list[str]
    ignored_columns: list[str]
    matched_items: int
    ignored: dict[str, str] = dataclasses.field(default_factory=dict)  # column -> reason


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


def read_item_features(
    path: Path,
    item_column: str,
    item_ids: list[str],
    separator: str | None = DEFAULT_SEPARATOR,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
) -> ItemFeatures:
    """The features of ``item_ids`` (in that order) from the catalogue file at ``path``
    (see the module docstring for which columns become features and how)."""
    con = duckdb.connect()
    try:
        candidates = _load_catalogue(con, path, item_column)
        _register_ids(con, item_ids)
        n_catalogue = _collapse_per_item(con, item_column, candidates)
        columns, encoders, ignored = _plan_columns(
            con, candidates, n_catalogue, separator, max_categories
        )
        rows, matched = _aligned_rows(con)
    finally:
        con.close()
    values = _encode(rows, encoders, len(item_ids))
    # numpy, torch and polars lazily, in the functions that use them: every process that loads
    # the code location imports this module (the run workers, code servers and the CLI, through
    # assets/features.py), and only a step reads features; numpy alone is ~0.1 s of each start.
    import numpy as np
    import torch

    return ItemFeatures(
        torch.from_numpy(values.astype(np.float32)), columns, list(ignored), matched, ignored
    )


# How a source column becomes features: (column, separator of a multi-valued text column,
# its category values). No values: a numeric column, one feature of its own.
_Encoder = tuple[str, str | None, list[str]]


def _load_catalogue(
    con: duckdb.DuckDBPyConnection, path: Path, item_column: str
) -> list[tuple[str, str]]:
    """(column, type) of the feature candidates, once the file is loaded as ``catalogue``."""
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
    return [(n, kind) for n, kind, *_ in described if n != item_column]


def _register_ids(con: duckdb.DuckDBPyConnection, item_ids: list[str]) -> None:
    """Register the id map as the table ``ids`` (idx, item_id), so SQL can align to it."""
    import numpy as np
    import polars as pl  # lazily, as in recommend.publish_recommendations

    ids = pl.DataFrame({"idx": np.arange(len(item_ids)), "item_id": list(item_ids)})
    con.register("ids", ids)


def _collapse_per_item(
    con: duckdb.DuckDBPyConnection, item_column: str, candidates: list[tuple[str, str]]
) -> int:
    """Items of ``per_item``, created as one row per catalogue id with its usable columns."""
    # Catalogue ids follow the ingest id rule (NFC, trimmed), so they match the stored ids;
    # an id with a control character matches none (ingest quarantines such ids).
    item = normalized_id_sql(f"{quote_identifier(item_column)}::VARCHAR")
    valid = f"NOT {control_character_sql(item)}"
    selected = "".join(
        f", any_value({quote_identifier(c)})"
        + ("::DOUBLE" if kind in _NUMERIC else "")
        + f" AS {quote_identifier(c)}"
        for c, kind in candidates
        if kind in _NUMERIC or kind in _TEXT
    )
    con.execute(
        f"""CREATE TEMP TABLE per_item AS SELECT {item} AS item_id{selected}
            FROM catalogue WHERE {valid} GROUP BY 1"""
    )
    return con.execute("SELECT count(*) FROM per_item").fetchone()[0]


def _plan_columns(
    con: duckdb.DuckDBPyConnection,
    candidates: list[tuple[str, str]],
    n_catalogue: int,
    separator: str | None,
    max_categories: int,
) -> tuple[list[str], list[_Encoder], dict[str, str]]:
    """(feature names, an encoder per used column, ignored column -> reason) of ``per_item``."""
    columns: list[str] = []
    encoders: list[_Encoder] = []
    ignored: dict[str, str] = {}
    for column, kind in candidates:
        if kind in _NUMERIC:
            columns.append(column)
            encoders.append((column, None, []))
        elif kind in _TEXT:
            reason, split, values = _categories(con, column, n_catalogue, separator, max_categories)
            if reason:
                ignored[column] = reason
            else:
                columns.extend(f"{column}={v}" for v in values)
                encoders.append((column, split, values))
        else:
            ignored[column] = f"type {kind}: neither numeric, boolean nor text"
    return columns, encoders, ignored


def _aligned_rows(con: duckdb.DuckDBPyConnection) -> tuple[dict[str, np.ndarray], int]:
    """(``per_item``'s columns in id-map order, masked where an item is missing; ids matched)."""
    rows = con.execute(
        """SELECT ids.idx, f.* EXCLUDE (item_id) FROM ids
           LEFT JOIN per_item f ON f.item_id = ids.item_id ORDER BY ids.idx"""
    ).fetchnumpy()
    matched = con.execute(
        "SELECT count(*) FROM per_item WHERE item_id IN (SELECT item_id FROM ids)"
    ).fetchone()[0]
    return rows, matched


def _encode(rows: dict[str, np.ndarray], encoders: list[_Encoder], n_items: int) -> np.ndarray:
    """The (n_items, n_features) float64 matrix: each encoder's block, side by side."""
    import numpy as np

    blocks = [
        _hot(rows[column], split, values) if values else _scaled(rows[column])[:, None]
        for column, split, values in encoders
    ]
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((n_items, 0))


def _scaled(data: np.ndarray) -> np.ndarray:
    """A numeric column as float64, standardised unless 0/1 or constant, missing values 0."""
    import numpy as np

    data = np.ma.asarray(data).astype(np.float64).filled(np.nan)
    missing = ~np.isfinite(data)
    present = data[~missing]
    if present.size and not np.isin(present, (0.0, 1.0)).all() and present.std() > 0:
        data = (data - present.mean()) / present.std()
    data[missing] = 0.0
    return data


def _categories(
    con: duckdb.DuckDBPyConnection,
    column: str,
    n_items: int,
    separator: str | None,
    max_categories: int,
) -> tuple[str | None, str | None, list[str]]:
    """(reason to ignore or None, the separator if multi-valued, the sorted distinct values)."""
    ref = quote_identifier(column)
    multi = (
        bool(separator)
        and con.execute(
            f"SELECT count(*) FROM per_item WHERE contains({ref}, ?)", [separator]
        ).fetchone()[0]
        > 0
    )
    if multi:
        values_sql = f"SELECT DISTINCT trim(unnest(string_split({ref}, ?))) AS v FROM per_item"
        params = [separator]
    else:
        values_sql, params = f"SELECT DISTINCT trim({ref}) AS v FROM per_item", []
    values = [
        v
        for (v,) in con.execute(
            f"SELECT v FROM ({values_sql}) WHERE v IS NOT NULL AND v <> '' ORDER BY v", params
        ).fetchall()
    ]
    n_present = con.execute(
        f"SELECT count(*) FROM per_item WHERE nullif(trim({ref}), '') IS NOT NULL"
    ).fetchone()[0]
    kind = f"multi-valued ({separator!r})" if multi else "text"
    if not values:
        return "no values", None, []
    if len(values) > max_categories:
        return (
            f"{kind}, {len(values)} distinct values > max_categories {max_categories}"
            " (a column per value would outnumber what the catalogue can inform)",
            None,
            [],
        )
    if not multi and n_present > 1 and len(values) == n_present:
        return (
            f"text with a different value for every item ({len(values)} of {n_items}):"
            " a name or an id, not a category",
            None,
            [],
        )
    return None, separator if multi else None, values


def _hot(data: np.ndarray, separator: str | None, values: list[str]) -> np.ndarray:
    """One 0/1 column per value: the item's value (one-hot) or values (multi-hot) set."""
    import numpy as np

    index = {v: j for j, v in enumerate(values)}
    out = np.zeros((len(data), len(values)))
    for row, cell in enumerate(np.ma.asarray(data, dtype=object).filled(None)):
        if cell is None:
            continue
        for token in cell.split(separator) if separator else [cell]:
            j = index.get(token.strip())
            if j is not None:
                out[row, j] = 1.0
    return out
