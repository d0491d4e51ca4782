"""Settings of publication (:mod:`recs_pipeline.serving.recommend`). No torch here: the code
location derives ``recommendations``' run config from them."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from recs_pipeline.config import check_declared, setting

if TYPE_CHECKING:
    from recs_pipeline.evaluation.metrics import ScoreFn


@dataclasses.dataclass(frozen=True)
class PublishIndex:
    """How model users' lists are ranked: ``exact`` scores every item; ``ivf`` searches an
    :class:`~recs_pipeline.serving.ann.IVFIndex` (embedding models only); ``auto`` picks ``ivf``
    where it would scan at most an eighth of the catalogue (``probes × list_size ≤ items/8``,
    65,536 items and more at the defaults: below that exact ranking is cheap) and exact
    ranking elsewhere. ``overlap_users`` exact lists are computed beside an index
    search to measure its recall against exact ranking."""

    kind: str = setting(
        "auto",
        "How model users are ranked: exact (every item scored), ivf (an inverted-file"
        " index over item embeddings: each user scores only its `ivf_probes` nearest lists of"
        " about `ivf_list_size` items, so publication grows with users, not users × items) or"
        " auto (ivf where it scans at most an eighth of the catalogue: 65,536 items and more at the"
        " defaults; exact elsewhere)."
        " Training-free models (popularity, gfcf) are always ranked exactly.",
        choices=("auto", "exact", "ivf"),
    )
    list_size: int = setting(256, "Items per inverted list (about).", ge=1)
    probes: int = setting(32, "Lists scanned per user.", ge=1)
    overlap_users: int = setting(
        1000, "Users also ranked exactly, to record the index's overlap with exact lists.", ge=0
    )
    seed: int = setting(0, "Seed of the index's clustering and of the overlap sample.")

    def __post_init__(self) -> None:
        check_declared(self)

    def uses_ivf(self, score_fn: ScoreFn, n_items: int) -> bool:
        from recs_pipeline.evaluation.metrics import InnerProduct  # torch: a step's, at publication

        if not isinstance(score_fn, InnerProduct):
            if self.kind == "ivf":
                raise ValueError("the ivf index needs an embedding model's inner-product scores")
            return False
        if self.kind == "auto":  # lists hold list_size items on average
            return 8 * self.probes * self.list_size <= n_items
        return self.kind == "ivf"


@dataclasses.dataclass(frozen=True)
class PublishConfig:
    """How many items a published list holds. Whether the catalogue has that many is known
    only at publication: :func:`~recs_pipeline.serving.recommend.publish_recommendations`
    fails then (see there)."""

    k: int = setting(20, "K: items published per user.", ge=1)

    def __post_init__(self) -> None:
        check_declared(self)
