"""Recommender models. Each model is one module registering itself under a config name.

Trained models (:class:`Recommender`) map the joint node space (users 0..n_users-1, then items)
to embeddings through :meth:`Recommender.embed`, given the normalised adjacency to propagate
over, and score a (user, item) pair by the inner product of the final embeddings. Training-free
models (:class:`TrainingFree`: popularity, the GF-CF graph filter) compute scores directly from
the train graph. :func:`recs_pipeline.evaluation.scoring.score_function` turns any checkpoint into scores.
"""

from recs_pipeline.models import dnfilter, gfcf, lightgcn, mf, ngcf, pinsage, popularity  # noqa: F401  (registration)
from recs_pipeline.models.base import (
    MODELS,
    TRAINING_FREE,
    Recommender,
    TrainingFree,
    build_model,
    check_params,
    checkpoint,
    declared_params,
    fit_training_free,
    model_names,
    register,
    register_training_free,
    restore,
)

__all__ = [
    "MODELS",
    "TRAINING_FREE",
    "Recommender",
    "TrainingFree",
    "build_model",
    "check_params",
    "checkpoint",
    "declared_params",
    "fit_training_free",
    "model_names",
    "register",
    "register_training_free",
    "restore",
]
