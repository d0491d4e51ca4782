"""Training: ``train_model(graph, config)`` fits a trained model on an interaction graph's train
edges, early-stopped on a validation slice carved from them.

Read it in this order: ``config`` (what a run computes, the presets), ``loop`` (the loop, one
screen), ``setup`` (the named steps before the first epoch: ``validation``'s slice and fit
graph, the network, ``init``'s warm start or initialisation, ``objective``, ``teacher``'s loss
positives), ``state`` (the run state, its result, resume and save), ``replicas`` and
``data_parallel`` (the same loop on several processes). ``cli`` holds the command-line flags
of the training-free models' own settings.
"""

import importlib

from recs_pipeline.training.config import TrainConfig

# Imported on first use: TrainConfig needs no torch, and the code location imports it (through
# this package) where no step runs.
_LAZY = {"train_model": "loop", "TrainResult": "state"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


__all__ = ["TrainConfig", "TrainResult", "train_model"]
