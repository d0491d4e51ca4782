"""Top-K lists for publication.

Users the model knows get the model's top-K; users seen in the window but unknown to the model
(they arrived in the test period) get the popularity fallback. Every list excludes every item
the user interacted with up to the as-of date, including test-period interactions.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import torch

from recs_pipeline.graph import InteractionGraph, interaction_csr
from recs_pipeline.metrics import ScoreFn, topk_scored
from recs_pipeline.models.popularity import Popularity
from recs_pipeline.warehouse import replace_partition


def _publish_users(con: duckdb.DuckDBPyConnection, as_of: dt.date, window_start: dt.date):
    """Temp table ``_publish_users(user_id, pos, model_idx)``: every user active in the window,
    its publish position (0.., in id order) and its index in the model (NULL if unknown)."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _publish_users AS
           SELECT w.user_id, (row_number() OVER (ORDER BY w.user_id) - 1)::BIGINT AS pos,
                  ui.idx::BIGINT AS model_idx
           FROM (SELECT DISTINCT user_id FROM raw.interactions
                 WHERE event_date BETWEEN ? AND ?) w
           LEFT JOIN features.user_index ui ON ui.as_of_date = ? AND ui.user_id = w.user_id""",
        [window_start, as_of, as_of],
    )


def _seen_items(con: duckdb.DuckDBPyConnection, as_of: dt.date) -> dict[str, np.ndarray]:
    """(pos, item_idx) for every catalogue item each publish user interacted with up to D."""
    return con.execute(
        """SELECT DISTINCT p.pos, ii.idx::BIGINT AS item_idx
           FROM raw.interactions r
           JOIN _publish_users p USING (user_id)
           JOIN features.item_index ii ON ii.as_of_date = ? AND ii.item_id = r.item_id
           WHERE r.event_date <= ?""",
        [as_of, as_of],
    ).fetchnumpy()


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
    _publish_users(con, as_of, window_start)
    publish = con.execute(
        "SELECT user_id, coalesce(model_idx, -1) AS model_idx FROM _publish_users ORDER BY pos"
    ).fetchnumpy()
    n_publish = len(publish["user_id"])
    seen = _seen_items(con, as_of)
    # Rows of `exclude` are publish positions; score functions map positions to their users.
    exclude = interaction_csr(
        torch.from_numpy(seen["pos"].astype(np.int64)),
        torch.from_numpy(seen["item_idx"].astype(np.int64)),
        n_publish,
        graph.n_items,
    )
    model_index = torch.from_numpy(publish["model_idx"].astype(np.int64))
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
    # Imported here, not with the module: polars' runtime takes ~2 s to load, and every process
    # that loads the code location (webserver, daemon, each run) would pay it.
    import polars as pl

    user_array = np.asarray(publish["user_id"], dtype=object)
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
    con.execute("DROP TABLE IF EXISTS _publish_users")
    n_model = int((model_index >= 0).sum())
    return {"model_users": n_model, "fallback_users": n_publish - n_model, "rows": recs.height}
