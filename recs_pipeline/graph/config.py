"""Settings of the hard negatives (:mod:`recs_pipeline.graph.negatives`). No torch here: the
code location derives ``hard_negatives``' run config from them."""

from __future__ import annotations

import dataclasses

from recs_pipeline.config import SettingError, check_declared, setting


@dataclasses.dataclass(frozen=True)
class HardNegativeConfig:
    """Band of random-walk ranks (as fractions of the catalogue) to draw hard negatives from.

    ``method`` ranks items for a user by ``ppr`` (personalised PageRank by power iteration:
    exact, cost ∝ users × edges × iterations), ``walks`` (visit counts of ``walks`` random walks
    with restart of ``walk_length`` steps each, the lecture's procedure: cost ∝ users × walks ×
    steps, independent of the graph's size) or ``auto`` (``ppr`` up to ``ppr_max_nodes`` nodes).
    """

    band_start: float = setting(
        0.02,
        "Start of the hard-negative band of random-walk ranks, as a fraction of the catalogue.",
        ge=0.0,
        lt=1.0,
    )
    band_end: float = setting(
        0.10, "End of the band, as a fraction of the catalogue.", gt=0.0, le=1.0
    )
    pool_size: int = setting(64, "Hard negatives kept per user.", ge=1)
    restart: float = setting(0.3, "Restart probability of the random walk.", gt=0.0, lt=1.0)
    iterations: int = setting(30, "Power iterations of ppr.", ge=1)
    batch_users: int = setting(512, "Users ranked per batch by ppr (memory ∝ this × nodes).", ge=1)
    method: str = setting(
        "auto",
        "ppr (exact personalised PageRank), walks (sampled random walks with"
        " restart, cost independent of the graph's size) or auto (ppr on small graphs).",
        choices=("auto", "ppr", "walks"),
    )
    ppr_max_nodes: int = setting(5_000, "auto uses ppr up to this many nodes, walks above.", ge=0)
    walks: int = setting(256, "Random walks per user (walks).", ge=1)
    walk_length: int = setting(32, "Steps per random walk (walks).", ge=1)
    walk_batch_users: int = setting(2048, "Users walked per batch (walks).", ge=1)
    seed: int = setting(0, "Seed of the random walks.")

    def __post_init__(self) -> None:
        check_declared(self)
        # Equal ends are a band of one rank (see ``band``); a reversed band is a mistake.
        if self.band_start > self.band_end:
            raise SettingError(
                ("band_start", "band_end"),
                f"band_start ({self.band_start}) must not exceed band_end ({self.band_end})",
            )

    def band(self, n_items: int) -> tuple[int, int]:
        """The rank band [lo, hi) for a catalogue of ``n_items`` (at least one rank wide)."""
        lo = int(self.band_start * n_items)
        hi = max(lo + 1, int(round(self.band_end * n_items)))
        return lo, min(hi, n_items)
