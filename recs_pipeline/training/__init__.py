"""Training: ``train_model(graph, config)`` fits a trained model on an interaction graph's train
edges, early-stopped on a validation slice carved from them.

Read it in this order: ``config`` (what a run computes, the presets), ``loop`` (the loop, one
screen), ``setup`` (the named steps before the first epoch: ``validation``'s slice and fit
graph, the network, ``init``'s warm start or initialisation, ``objective``, ``teacher``'s loss
positives), ``state`` (the run state, its result, resume and save), ``replicas`` and
``data_parallel`` (the same loop on several processes). ``cli`` holds the command-line flags
of the training-free models' own settings.
"""

from recs_pipeline.training.config import TrainConfig
from recs_pipeline.training.loop import train_model
from recs_pipeline.training.state import TrainResult

__all__ = ["TrainConfig", "TrainResult", "train_model"]
