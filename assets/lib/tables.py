"""The warehouse table each asset writes, as Dagster's standard table metadata: its name and
column schema (declared on the asset, built from :mod:`recs_pipeline.schema`, where the columns
and their descriptions are spelled once) and each materialisation's row count for its
partition."""

import dagster as dg

from recs_pipeline.schema import columns

# model_selection's metadata entry holding its choice's sentence, which `recs run` prints (a
# key here, with the other metadata keys, so the command reads it without loading the assets).
CHOICE = "choice"
TABLE_NAME = "dagster/table_name"
COLUMN_SCHEMA = "dagster/column_schema"
ROW_COUNT = "dagster/row_count"


def column_schema(table: str) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                column.name,
                column.type,
                description=column.description or None,
                constraints=dg.TableColumnConstraints(nullable=column.nullable),
            )
            for column in columns(table)
        ]
    )


def table_metadata(table: str, *also: str) -> dict:
    """Definition metadata of an asset writing ``table`` (and, with the same partitioning,
    the tables ``also``, listed under ``tables``)."""
    metadata: dict = {TABLE_NAME: table, COLUMN_SCHEMA: column_schema(table)}
    if also:
        metadata["tables"] = ", ".join((table, *also))
    return metadata


def row_count(rows: int) -> dict:
    """Materialisation metadata: the rows of the asset's table in this partition."""
    return {ROW_COUNT: int(rows)}
