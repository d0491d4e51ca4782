"""From a stored checkpoint to a score function over one day's graph.

Every model, trained or training-free, ends as ``score_fn(user_indices) -> (b, n_items)``, the
form that full-ranking evaluation and publication consume
(:func:`recs_pipeline.evaluation.metrics.topk_scored`).
"""

from __future__ import annotations

import torch

from recs_pipeline.evaluation.metrics import ScoreFn, inner_product
from recs_pipeline.graph.bipartite import InteractionGraph
from recs_pipeline.models import TRAINING_FREE, restore


def score_function(state: dict, graph: InteractionGraph, adjacency: torch.Tensor) -> ScoreFn:
    """Scores of the checkpointed model ``state`` on ``graph``'s train edges.

    A trained model propagates over ``adjacency`` (the full train graph of the day, validation
    edges included) once; a training-free model is rebuilt from the train edges and its state.
    """
    name = state["model"]
    if name in TRAINING_FREE:
        model = TRAINING_FREE[name](**state["params"]).restore(
            graph.train_users, graph.train_items, graph.n_users, graph.n_items, state["state"]
        )
        return model.scores
    model = restore(state)
    model.attach_graph(graph.train_users, graph.train_items)  # structure-building models only
    with torch.no_grad():
        user_emb, item_emb = model.embed(adjacency)
    return inner_product(user_emb, item_emb)
