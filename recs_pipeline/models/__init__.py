"""Recommender models. Each model is one module registering itself under a config name.

Every model maps the joint node space (users 0..n_users-1, then items) to embeddings through
:meth:`Recommender.embed`, given the normalised adjacency of the graph to propagate over, and
scores a (user, item) pair by the inner product of their final embeddings.
"""

from recs_pipeline.models import lightgcn, mf  # noqa: F401  (registration)
from recs_pipeline.models.base import (
    MODELS,
    Recommender,
    build_model,
    checkpoint,
    register,
    restore,
)

__all__ = ["MODELS", "Recommender", "build_model", "checkpoint", "register", "restore"]
