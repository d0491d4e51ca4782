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
from recs_pipeline.metrics import popularity_embeddings, topk_excluding
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
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    model_name: str,
    k: int,
) -> dict[str, int]:
    """Replace ``serving.recommendations[as_of]`` with top-``k`` lists for every user active in
    [window_start, as_of]. Returns counts of users served by the model and by the fallback."""
    users = _window_users(con, as_of, window_start)
    known = {u: i for i, u in enumerate(graph.user_ids)}
    seen = _seen_items(con, as_of, window_start)
    position = {u: j for j, u in enumerate(users)}
    seen_rows = torch.as_tensor(
        np.fromiter((position[u] for u in seen["user_id"]), dtype=np.int64, count=seen.height)
    )
    seen_items = torch.as_tensor(seen["item_idx"].to_numpy().astype(np.int64))
    exclude = interaction_csr(seen_rows, seen_items, len(users), graph.n_items)

    model_rows = [j for j, u in enumerate(users) if u in known]
    fallback_rows = [j for j, u in enumerate(users) if u not in known]
    pop_user, pop_item = popularity_embeddings(graph.item_degree(), 1)
    frames = []
    for rows, embeddings, items, name in (
        (model_rows, user_emb[[known[users[j]] for j in model_rows]], item_emb, model_name),
        (fallback_rows, pop_user.expand(len(fallback_rows), -1), pop_item, "popularity"),
    ):
        if not rows:
            continue
        # Row r of `embeddings` belongs to publish position rows[r]; index the exclusion
        # matrix by publish position through a permuted copy of the embeddings.
        full = torch.zeros(len(users), embeddings.shape[1])
        full[rows] = embeddings
        scores, top = topk_excluding(full, items, torch.tensor(rows), exclude, k)
        n = len(rows)
        frames.append(
            pl.DataFrame(
                {
                    "user_id": np.repeat(np.array(users, dtype=object)[rows], top.shape[1]),
                    "rank": np.tile(np.arange(1, top.shape[1] + 1, dtype=np.int32), n),
                    "item_id": np.array(graph.item_ids, dtype=object)[top.reshape(-1).numpy()],
                    "score": scores.reshape(-1).double().numpy(),
                    "model": [name] * (n * top.shape[1]),
                }
            ).filter(pl.col("score").is_finite())
        )
    recs = (
        pl.concat(frames)
        if frames
        else pl.DataFrame(
            schema={
                "user_id": pl.String,
                "rank": pl.Int32,
                "item_id": pl.String,
                "score": pl.Float64,
                "model": pl.String,
            }
        )
    )
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
    return {
        "model_users": len(model_rows),
        "fallback_users": len(fallback_rows),
        "rows": recs.height,
    }
