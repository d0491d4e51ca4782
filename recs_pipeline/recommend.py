"""Top-K lists for publication.

Users the model knows get the model's top-K; users seen in the window but unknown to the model
(they arrived in the test period) get the popularity fallback. Every list excludes every item
the user interacted with up to the as-of date, including test-period interactions.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import polars as pl
import torch

from recs_pipeline.graph import InteractionGraph, interaction_csr
from recs_pipeline.metrics import ScoreFn, topk_scored
from recs_pipeline.models.popularity import Popularity
from recs_pipeline.warehouse import replace_partition


def _seen_items(
    con: duckdb.DuckDBPyConnection, as_of: dt.date, window_start: dt.date
) -> pl.DataFrame:
    """(user_id, item_idx) for every catalogue item each window user interacted with up to D."""
    return pl.DataFrame(
        con.execute(
            """WITH users AS (
               SELECT DISTINCT user_id FROM raw.interactions
               WHERE event_date BETWEEN ? AND ?)
           SELECT DISTINCT r.user_id, ii.idx AS item_idx
           FROM raw.interactions r
           JOIN users USING (user_id)
           JOIN features.item_index ii ON ii.as_of_date = ? AND ii.item_id = r.item_id
           WHERE r.event_date <= ?""",
            [window_start, as_of, as_of, as_of],
        ).fetchnumpy()
    )


def _window_users(con: duckdb.DuckDBPyConnection, as_of: dt.date, window_start: dt.date):
    rows = con.execute(
        """SELECT DISTINCT user_id FROM raw.interactions WHERE event_date BETWEEN ? AND ?
           ORDER BY user_id""",
        [window_start, as_of],
    ).fetchnumpy()["user_id"]
    return [str(u) for u in rows]


def publish_recommendations(
    con: duckdb.DuckDBPyConnection,
    as_of: dt.date,
    window_start: dt.date,
    graph: InteractionGraph,
    score_fn: ScoreFn,
    model_name: str,
    k: int,
) -> dict[str, int]:
    """Replace ``serving.recommendations[as_of]`` with top-``k`` lists for every user active in
    [window_start, as_of]. ``score_fn`` scores users by their index in ``graph``. Returns the
    counts of users served by the model and by the popularity fallback, and of rows."""
    users = _window_users(con, as_of, window_start)
    known = {u: i for i, u in enumerate(graph.user_ids)}
    seen = _seen_items(con, as_of, window_start)
    position = {u: j for j, u in enumerate(users)}
    seen_rows = torch.as_tensor(
        np.fromiter((position[u] for u in seen["user_id"]), dtype=np.int64, count=seen.height)
    )
    seen_items = torch.as_tensor(seen["item_idx"].to_numpy().astype(np.int64))
    # Rows of `exclude` are publish positions; score functions map positions to their users.
    exclude = interaction_csr(seen_rows, seen_items, len(users), graph.n_items)
    model_index = torch.tensor([known.get(u, -1) for u in users], dtype=torch.long)
    popularity = Popularity().fit(
        graph.train_users, graph.train_items, graph.n_users, graph.n_items
    )
    groups = (
        (
            torch.nonzero(model_index >= 0).squeeze(1),
            lambda b: score_fn(model_index[b]),
            model_name,
        ),
        (torch.nonzero(model_index < 0).squeeze(1), popularity.scores, "popularity"),
    )
    user_array = np.array(users, dtype=object)
    item_array = np.array(graph.item_ids, dtype=object)
    frames = []
    for rows, scorer, name in groups:
        if rows.numel() == 0:
            continue
        scores, top = topk_scored(scorer, rows, exclude, k)
        frames.append(
            pl.DataFrame(
                {
                    "user_id": np.repeat(user_array[rows.numpy()], top.shape[1]),
                    "rank": np.tile(np.arange(1, top.shape[1] + 1, dtype=np.int32), rows.numel()),
                    "item_id": item_array[top.reshape(-1).numpy()],
                    "score": scores.reshape(-1).double().numpy(),
                    "model": np.full(top.numel(), name, dtype=object),
                }
            ).filter(pl.col("score").is_finite())
        )
    recs = pl.concat(frames) if frames else pl.DataFrame(schema=_SCHEMA)
    con.register("_recommendations", recs)
    try:
        replace_partition(
            con,
            "serving.recommendations",
            as_of,
            """SELECT CAST(? AS DATE), user_id, rank, item_id, score, model
               FROM _recommendations ORDER BY user_id, rank""",
            [as_of],
        )
    finally:
        con.unregister("_recommendations")
    n_model = int((model_index >= 0).sum())
    return {"model_users": n_model, "fallback_users": len(users) - n_model, "rows": recs.height}


_SCHEMA = {
    "user_id": pl.String,
    "rank": pl.Int32,
    "item_id": pl.String,
    "score": pl.Float64,
    "model": pl.String,
}
