"""Run config: what a user tunes per run, shown with defaults and descriptions in the launchpad."""

import dagster as dg
from pydantic import Field

from assets.partitions import DEFAULT_TEST_DAYS, DEFAULT_WINDOW_DAYS
from recs_pipeline.models import model_names
from recs_pipeline.recommend import PublishIndex
from recs_pipeline.sampling import HardNegativeConfig
from recs_pipeline.split import SplitConfig
from recs_pipeline.train import TrainConfig

_TRAIN = TrainConfig()
_HARD = HardNegativeConfig()


class SplitSettings(dg.Config):
    window_days: int = Field(
        default=DEFAULT_WINDOW_DAYS,
        description="W: days of history up to and including D that the split uses.",
    )
    test_days: int = Field(
        default=DEFAULT_TEST_DAYS,
        description="H: the newest H days of the window are the test fold.",
    )
    min_degree: int = Field(
        default=1,
        description="Iterative k-core on train: users and items keep at least this many edges.",
    )

    def to_core(self) -> SplitConfig:
        return SplitConfig(self.window_days, self.test_days, self.min_degree)


class HardNegativeSettings(dg.Config):
    band_start: float = Field(
        default=_HARD.band_start,
        description="Start of the hard-negative band of random-walk ranks, as a fraction of the catalogue.",
    )
    band_end: float = Field(
        default=_HARD.band_end, description="End of the band, as a fraction of the catalogue."
    )
    pool_size: int = Field(default=_HARD.pool_size, description="Hard negatives kept per user.")
    restart: float = Field(
        default=_HARD.restart, description="Restart probability of the random walk."
    )
    method: str = Field(
        default=_HARD.method,
        description="ppr (exact personalised PageRank), walks (sampled random walks with"
        " restart, cost independent of the graph's size) or auto (ppr on small graphs).",
    )

    def to_core(self) -> HardNegativeConfig:
        return HardNegativeConfig(
            band_start=self.band_start,
            band_end=self.band_end,
            pool_size=self.pool_size,
            restart=self.restart,
            method=self.method,
        )


class TrainSettings(dg.Config):
    model: str = Field(
        default=_TRAIN.model,
        description=f"One of {model_names()}; popularity and gfcf are training-free (fit, no epochs).",
    )
    dim: int = Field(default=_TRAIN.dim, description="Embedding dimension.")
    layers: int = Field(default=_TRAIN.layers, description="Propagation layers (graph models).")
    alphas: list[float] | None = Field(
        default=None,
        description="LightGCN's layer coefficients α₀..α_K (layers + 1 values); default 1/(K+1) each.",
    )
    epochs: int = Field(
        default=_TRAIN.epochs, description="Maximum epochs (early stopping may end sooner)."
    )
    learning_rate: float = Field(default=_TRAIN.lr, description="Adam learning rate.")
    batch_size: int = Field(default=_TRAIN.batch_size, description="Positive edges per mini-batch.")
    max_steps_per_epoch: int | None = Field(
        default=None,
        description="Cap on mini-batches per epoch (batches grow on larger graphs), so that an"
        " epoch of a graph model costs time linear in the edges.",
    )
    l2: float = Field(default=_TRAIN.l2, description="L2 weight on the batch's layer-0 embeddings.")
    loss: str = Field(default=_TRAIN.loss, description="bpr, binary or softmax (sampled softmax).")
    temperature: float = Field(default=_TRAIN.temperature, description="Softmax temperature.")
    uniform_negatives: int = Field(
        default=_TRAIN.uniform_negatives, description="Uniform negatives per positive."
    )
    shared_negatives: int = Field(
        default=_TRAIN.shared_negatives,
        description="Negatives drawn once per mini-batch and shared by all its users"
        " (instead of uniform_negatives; set that to 0).",
    )
    init: str = Field(
        default=_TRAIN.init,
        description="normal, or spectral (truncated SVD of the normalised interaction matrix).",
    )
    time_budget_minutes: float | None = Field(
        default=None, description="Stop training at the first epoch end past this many minutes."
    )
    max_hard_negatives: int = Field(
        default=_TRAIN.max_hard_negatives,
        description="Cap of the curriculum: epoch n adds min(n-1, cap) hard negatives per positive.",
    )
    patience: int = Field(
        default=_TRAIN.patience, description="Validation checks without gain before stopping."
    )
    eval_every: int = Field(
        default=_TRAIN.eval_every, description="Epochs between validation checks."
    )
    seed: int = Field(default=_TRAIN.seed, description="Random seed.")

    distill: str | None = Field(
        default=None,
        description="Training-free teacher (gfcf, popularity) whose top distill_k unseen items"
        " per user become extra loss positives (knowledge distillation); none by default.",
    )
    distill_k: int = Field(default=_TRAIN.distill_k, description="Teacher items per user.")
    distill_weight: float = Field(
        default=_TRAIN.distill_weight, description="Loss weight of the teacher's positives."
    )
    distill_ranked: bool = Field(
        default=_TRAIN.distill_ranked,
        description="Scale the teacher's r-th item (r = 0, 1, ...) by the DCG discount"
        " 1/log2(r + 2), so the model learns the teacher's order, not only its set.",
    )
    warm_start: bool = Field(
        default=True,
        description="Initialise from trained_model(D-1) when it exists (same model and sizes):"
        " known users and items keep their embeddings, new ones start fresh.",
    )
    resume: bool = Field(
        default=True,
        description="Resume an interrupted run of this partition from its last validation"
        " check (progress.pt in the artifact store) instead of starting over.",
    )

    def to_core(self) -> TrainConfig:
        return TrainConfig(
            model=self.model,
            dim=self.dim,
            layers=self.layers,
            alphas=None if self.alphas is None else tuple(self.alphas),
            epochs=self.epochs,
            batch_size=self.batch_size,
            max_steps_per_epoch=self.max_steps_per_epoch,
            lr=self.learning_rate,
            l2=self.l2,
            loss=self.loss,
            temperature=self.temperature,
            uniform_negatives=self.uniform_negatives,
            shared_negatives=self.shared_negatives,
            init=self.init,
            time_budget_s=None
            if self.time_budget_minutes is None
            else 60 * self.time_budget_minutes,
            max_hard_negatives=self.max_hard_negatives,
            patience=self.patience,
            eval_every=self.eval_every,
            seed=self.seed,
            distill=self.distill,
            distill_k=self.distill_k,
            distill_weight=self.distill_weight,
            distill_ranked=self.distill_ranked,
        )


class EvaluationSettings(dg.Config):
    baselines: list[str] = Field(
        default=["popularity", "gfcf"],
        description="Training-free models evaluated beside the trained one on the same test fold.",
    )
    max_users: int | None = Field(
        default=20_000,
        description="Evaluate on a seeded random sample of at most this many test users (None:"
        " all). Full ranking costs users × items, so a fixed sample keeps evaluation linear in"
        " the catalogue; at 20,000 users a Recall@20 near 0.3 has a standard error near 0.003.",
    )
    seed: int = Field(default=0, description="Seed of the test-user sample.")


_PUBLISH = PublishIndex()


class PublishSettings(dg.Config):
    k: int = Field(default=20, description="K: items published per user.")
    index: str = Field(
        default=_PUBLISH.kind,
        description="How model users are ranked: exact (every item scored), ivf (an inverted-file"
        " index over item embeddings: each user scores only its `ivf_probes` nearest lists of"
        " about `ivf_list_size` items, so publication grows with users, not users × items) or"
        " auto (ivf where it scans at most an eighth of the catalogue: 65,536 items and more at the"
        " defaults; exact elsewhere)."
        " Training-free models (popularity, gfcf) are always ranked exactly.",
    )
    ivf_list_size: int = Field(
        default=_PUBLISH.list_size, description="Items per inverted list (about)."
    )
    ivf_probes: int = Field(default=_PUBLISH.probes, description="Lists scanned per user.")
    ivf_overlap_users: int = Field(
        default=_PUBLISH.overlap_users,
        description="Users also ranked exactly, to record the index's overlap with exact lists.",
    )

    def publish_index(self) -> PublishIndex:
        return PublishIndex(
            kind=self.index,
            list_size=self.ivf_list_size,
            probes=self.ivf_probes,
            overlap_users=self.ivf_overlap_users,
        )
