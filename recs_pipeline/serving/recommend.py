"""Top-K lists for publication.

Users the model knows get the model's top-K; users seen in the window but unknown to the model
(they arrived in the test period) get the popularity fallback. Every list excludes every item
the user interacted with up to the as-of date, including test-period interactions. On large
catalogues the model's lists come from an inverted-file index (:class:`PublishIndex`), so
publication grows with the users rather than with users × items.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np
import torch

from recs_pipeline.config import SettingError
from recs_pipeline.evaluation.metrics import ScoreFn, pad_to_k, topk_scored
from recs_pipeline.graph.bipartite import InteractionGraph, interaction_csr
from recs_pipeline.infra.engine import Engine, ShardRun, map_shards, shard_ranges
from recs_pipeline.infra.warehouse import replace_partition, transaction
from recs_pipeline.models.popularity import Popularity
from recs_pipeline.serving.ann import IVFIndex, list_overlap
from recs_pipeline.serving.config import PublishConfig, PublishIndex
from recs_pipeline.serving.files import record_publication


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


def rank_model_users(
    score_fn: ScoreFn,
    model_index: torch.Tensor,
    rows: torch.Tensor,
    exclude: torch.Tensor,
    k: int,
    index: PublishIndex,
    n_items: int,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Top-``k`` (scores, items) of the publish rows ``rows``, whose users are
    ``model_index[rows]`` in the model, exact or by the index, with what was used and
    measured. ``exclude`` is indexed by publish row."""
    ranked = rank_publish_rows(score_fn, model_index, exclude, k, index, n_items, rows=rows)
    return ranked.model_scores, ranked.model_top, ranked.used


@dataclass(frozen=True)
class RankedRows:
    """Publication's lists: the model users' rows with their (scores, items), the fallback
    users' likewise, and what ranked the model's users (exact or the index, measured)."""

    model_rows: torch.Tensor
    model_scores: torch.Tensor
    model_top: torch.Tensor
    fallback_rows: torch.Tensor
    fallback_scores: torch.Tensor
    fallback_top: torch.Tensor
    used: dict


@dataclass(frozen=True)
class _Ranking:
    """What every shard of publication reads (shared with the cluster once)."""

    score_fn: ScoreFn
    fallback_fn: ScoreFn | None
    model_index: torch.Tensor
    exclude: torch.Tensor
    k: int
    ivf: IVFIndex | None
    probes: int
    overlap_rows: torch.Tensor  # sorted model rows also ranked exactly (ivf)


def rank_publish_rows(
    score_fn: ScoreFn,
    model_index: torch.Tensor,
    exclude: torch.Tensor,
    k: int,
    index: PublishIndex,
    n_items: int,
    fallback_fn: ScoreFn | None = None,
    rows: torch.Tensor | None = None,
    engine: Engine | None = None,
    on_shard: Callable[[ShardRun], None] | None = None,
) -> RankedRows:
    """Top-``k`` lists of the publish rows ``rows`` (default: all), in the engine's shards of
    rows: rows whose ``model_index`` is a model user (≥ 0) by ``score_fn``, exact or by the
    index, the others by ``fallback_fn``. ``exclude`` is indexed by publish row. The index is
    built once, before the shards; the overlap sample is drawn over all model rows, so the
    lists and the measurements are those of one shard."""
    engine = engine or Engine()
    rows = torch.arange(model_index.numel()) if rows is None else rows
    model_rows = rows[model_index[rows] >= 0]
    used: dict = {"index": "exact"}
    ivf, overlap_rows = None, torch.empty(0, dtype=torch.long)
    if model_rows.numel() and index.uses_ivf(score_fn, n_items):
        started = time.perf_counter()
        ivf = IVFIndex.build(score_fn.item_emb, index.list_size, seed=index.seed)
        used = {
            "index": "ivf",
            "ivf_lists": ivf.centroids.shape[0],
            "ivf_probes": min(index.probes, ivf.centroids.shape[0]),
            "ivf_build_seconds": round(time.perf_counter() - started, 3),
        }
        # The index's own lists are measured against exact ones on a sample, before any repair.
        generator = torch.Generator().manual_seed(index.seed)
        sample = torch.randperm(model_rows.numel(), generator=generator)[: index.overlap_users]
        overlap_rows = model_rows[sample].sort().values
    ranking = _Ranking(
        score_fn, fallback_fn, model_index, exclude, k, ivf, index.probes, overlap_rows
    )
    shards = [rows[r.start : r.stop] for r in shard_ranges(rows.numel(), engine.workers)]
    parts, _ = map_shards(engine, _rank_shard, shards, engine.share(ranking), on_done=on_shard)
    cat = lambda name: torch.cat([part[name] for part in parts])  # noqa: E731
    if ivf is not None:
        used |= {
            "ivf_short_users_ranked_exactly": sum(part["short"] for part in parts),
            f"ivf_overlap@{k}": list_overlap(
                cat("sample_top"), cat("sample_exact"), cat("sample_exact_scores")
            ),
            "ivf_overlap_users": overlap_rows.numel(),
        }
    return RankedRows(
        cat("model_rows"),
        cat("model_scores"),
        cat("model_top"),
        cat("fallback_rows"),
        cat("fallback_scores"),
        cat("fallback_top"),
        used,
    )


def _rank_shard(rows: torch.Tensor, r: _Ranking) -> dict[str, torch.Tensor | int]:
    """One shard of :func:`rank_publish_rows`: the lists of its rows, and its part of the
    index's measurements."""
    is_model = r.model_index[rows] >= 0
    model_rows, fallback_rows = rows[is_model], rows[~is_model]
    by_row = lambda batch: r.score_fn(r.model_index[batch])  # noqa: E731
    out: dict = {"model_rows": model_rows, "fallback_rows": fallback_rows, "short": 0}
    if r.ivf is None:
        out["model_scores"], out["model_top"] = topk_scored(by_row, model_rows, r.exclude, r.k)
    else:
        user_emb = r.score_fn.user_emb[r.model_index[model_rows]]
        scores, top = r.ivf.search(user_emb, r.k, r.probes, r.exclude, model_rows)
        sampled = torch.isin(model_rows, r.overlap_rows)
        out["sample_top"] = top[sampled]
        out["sample_exact_scores"], out["sample_exact"] = pad_to_k(
            *topk_scored(by_row, model_rows[sampled], r.exclude, r.k), r.k
        )
        # Users whose probed lists hold fewer than k unseen items are ranked exactly instead.
        short = torch.nonzero(~torch.isfinite(scores[:, -1])).squeeze(1)
        if short.numel():
            scores[short], top[short] = pad_to_k(
                *topk_scored(by_row, model_rows[short], r.exclude, r.k), r.k
            )
        out["model_scores"], out["model_top"], out["short"] = scores, top, short.numel()
    if r.fallback_fn is not None:
        out["fallback_scores"], out["fallback_top"] = topk_scored(
            r.fallback_fn, fallback_rows, r.exclude, r.k
        )
    else:  # rows of users the model does not know, and no fallback: none ranked
        out["fallback_rows"] = fallback_rows[:0]
        out["fallback_scores"], out["fallback_top"] = torch.empty(0, r.k), torch.empty(0, r.k)
        out["fallback_top"] = out["fallback_top"].long()
    return out


def publish_recommendations(
    con: duckdb.DuckDBPyConnection,
    as_of: dt.date,
    window_start: dt.date,
    graph: InteractionGraph,
    score_fn: ScoreFn,
    model_name: str,
    k: int,
    index: PublishIndex | None = None,
    engine: Engine | None = None,
    on_shard: Callable[[ShardRun], None] | None = None,
    model_sha256: str | None = None,
) -> dict:
    """Replace ``serving.recommendations[as_of]`` with top-``k`` lists for every user active in
    [window_start, as_of]. ``score_fn`` scores users by their index in ``graph``; ``index``
    chooses exact or approximate ranking for them. The ranking runs in the ``engine``'s shards
    of users (:func:`rank_publish_rows`); reading and writing stay here. The day's record in
    ``serving.publications`` (with ``model_sha256``, the fingerprint of the model.pt the caller
    pins) commits with the lists. Returns the counts of users served by the model and by the
    popularity fallback and of rows, what ranked the model's users, and the publication's id."""
    _check_k(k, graph, as_of)
    model_index, exclude = _publish_targets(con, as_of, window_start, graph)
    fallback_fn = None
    if bool((model_index < 0).any()):
        fallback_fn = (
            Popularity().fit(graph.train_users, graph.train_items, graph.n_users, graph.n_items)
        ).scores
    lists = rank_publish_rows(
        score_fn,
        model_index,
        exclude,
        k,
        index or PublishIndex(),
        graph.n_items,
        fallback_fn=fallback_fn,
        engine=engine,
        on_shard=on_shard,
    )
    recs = _list_rows(lists, model_name)
    publication = _write_lists(con, as_of, recs, graph, model_sha256)
    n_model = lists.model_rows.numel()
    return {
        "model_users": n_model,
        "fallback_users": model_index.numel() - n_model,
        "rows": recs.height,
        "publication": publication,
        **lists.used,
    }


def _check_k(k: int, graph: InteractionGraph, as_of: dt.date) -> None:
    """Refuse a ``k`` below 1 or above the day's catalogue, before anything is written: the
    previous publication stays the latest one, instead of a day of lists silently shorter than
    the K consumers were promised."""
    PublishConfig(k)  # k >= 1
    if k > graph.n_items:
        raise SettingError(
            "k",
            f"k ({k}) exceeds the catalogue of {as_of} ({graph.n_items} items): no list can"
            f" hold {k} items; publish with k <= {graph.n_items}",
        )


def _publish_targets(
    con: duckdb.DuckDBPyConnection, as_of: dt.date, window_start: dt.date, graph: InteractionGraph
) -> tuple[torch.Tensor, torch.Tensor]:
    """The users to publish for, by publish position: each one's index in the model (-1 for a
    user it does not know), and the items each has seen up to ``as_of`` (a CSR whose rows are
    publish positions), which no list may hold. Leaves the temp table ``_publish_users``."""
    _publish_users(con, as_of, window_start)
    model_index = torch.from_numpy(
        con.execute("SELECT coalesce(model_idx, -1) AS idx FROM _publish_users ORDER BY pos")
        .fetchnumpy()["idx"]
        .astype(np.int64)
    )
    seen = _seen_items(con, as_of)
    exclude = interaction_csr(
        torch.from_numpy(seen["pos"].astype(np.int64)),
        torch.from_numpy(seen["item_idx"].astype(np.int64)),
        model_index.numel(),
        graph.n_items,
    )
    return model_index, exclude


def _list_rows(lists: RankedRows, model_name: str):
    """The ranked lists as one polars frame of integer rows ``(pos, rank, item_idx, score,
    model)``, unranked (infinite) slots dropped: DuckDB maps positions and item indices back to
    ids, so no step holds users × K Python strings."""
    # Imported here, not with the module: polars' runtime takes ~2 s to load, and every process
    # that loads the code location (webserver, daemon, each run) would pay it.
    import polars as pl

    ranked = [
        (lists.model_rows, lists.model_scores, lists.model_top, model_name),
        (lists.fallback_rows, lists.fallback_scores, lists.fallback_top, "popularity"),
    ]
    frames = [
        pl.DataFrame(
            {
                "pos": rows.repeat_interleave(top.shape[1]).numpy(),
                "rank": np.tile(np.arange(1, top.shape[1] + 1, dtype=np.int32), rows.numel()),
                "item_idx": top.reshape(-1).numpy(),
                "score": scores.reshape(-1).double().numpy(),
            }
        )
        .filter(pl.col("score").is_finite())
        .with_columns(pl.lit(name).alias("model"))
        for rows, scores, top, name in ranked
        if rows.numel()
    ]
    if frames:
        return pl.concat(frames)
    return pl.DataFrame(
        schema={
            "pos": pl.Int64,
            "rank": pl.Int32,
            "item_idx": pl.Int64,
            "score": pl.Float64,
            "model": pl.String,
        }
    )


def _write_lists(
    con: duckdb.DuckDBPyConnection,
    as_of: dt.date,
    recs,
    graph: InteractionGraph,
    model_sha256: str | None,
) -> str:
    """Replace the day's lists and record its publication in one transaction (the record is
    what the serving files and published_model.pt are checked against:
    recs_pipeline/serving/files.py); returns the publication's id. Drops ``_publish_users``."""
    import polars as pl

    items = pl.DataFrame({"idx": np.arange(graph.n_items), "item_id": graph.item_ids})
    con.register("_recommendations", recs)
    con.register("_items", items)
    try:
        with transaction(con):
            replace_partition(
                con,
                "serving.recommendations",
                as_of,
                """SELECT CAST(? AS DATE), p.user_id, r.rank, it.item_id, r.score, r.model
                   FROM _recommendations r
                   JOIN _publish_users p USING (pos)
                   JOIN _items it ON it.idx = r.item_idx
                   ORDER BY p.user_id, r.rank""",
                [as_of],
            )
            publication = record_publication(con, as_of, model_sha256)
    finally:
        con.unregister("_recommendations")
        con.unregister("_items")
    con.execute("DROP TABLE IF EXISTS _publish_users")
    return publication
