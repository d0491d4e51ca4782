"""Recommender models. Each model is one module registering itself under a config name.

Trained models (:class:`Recommender`) map the joint node space (users 0..n_users-1, then items)
to embeddings through :meth:`Recommender.embed`, given the normalised adjacency to propagate
over, and score a (user, item) pair by the inner product of the final embeddings. Training-free
models (:class:`TrainingFree`: popularity, the GF-CF graph filter) compute scores directly from
the train graph. :func:`recs_pipeline.evaluation.scoring.score_function` turns any checkpoint into scores.

What each model declares (its name, settings and search space) is in
:mod:`recs_pipeline.models.declarations`, which needs no torch; the implementations here
(``MODELS``, ``build_model`` and the rest of :mod:`recs_pipeline.models.base`) are imported, every
model registered, on first use, so that importing this package for a model's name or settings
(``TrainConfig`` does, and the code location with it) does not load torch.
"""

import importlib

from recs_pipeline.models.declarations import check_params, declared_params, model_names

# The model modules: importing one registers its model.
MODULES = ("dnfilter", "gfcf", "lightgcn", "mf", "ngcf", "pinsage", "popularity")
# What recs_pipeline.models.base provides once every model module is imported.
IMPLEMENTATIONS = (
    "MODELS",
    "TRAINING_FREE",
    "Recommender",
    "TrainingFree",
    "build_model",
    "checkpoint",
    "fit_training_free",
    "register",
    "register_training_free",
    "restore",
)


def __getattr__(name: str):
    if name not in IMPLEMENTATIONS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for module in MODULES:
        importlib.import_module(f"{__name__}.{module}")
    base = importlib.import_module(f"{__name__}.base")
    declarations = importlib.import_module(f"{__name__}.declarations")
    for registered, declared in (
        (base.MODELS, declarations.MODELS),
        (base.TRAINING_FREE, declarations.TRAINING_FREE),
    ):
        if missing := sorted(set(declared) - set(registered)):
            raise ImportError(f"models declared but registered by no module of MODULES: {missing}")
    globals().update({attribute: getattr(base, attribute) for attribute in IMPLEMENTATIONS})
    return globals()[name]


__all__ = [*IMPLEMENTATIONS, "check_params", "declared_params", "model_names"]
