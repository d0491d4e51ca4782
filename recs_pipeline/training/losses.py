"""Training losses over (user, positive item, negative items) triples.

With s⁺ = score(u, i⁺) and s⁻ⱼ = score(u, i⁻ⱼ) for the j-th negative:

- BPR (Rendle et al., 2009): L = −mean log σ(s⁺ − s⁻ⱼ), a pairwise ranking loss.
- Binary: L = −mean [log σ(s⁺) + log(1 − σ(s⁻ⱼ))], sigmoid cross-entropy per pair,
  each positive weighed once against the mean over its negatives.
- Sampled softmax: L = −mean log( e^{s⁺/τ} / (e^{s⁺/τ} + Σⱼ e^{s⁻ⱼ/τ}) ), cross-entropy of
  the positive against all the sampled negatives at temperature τ. Many negatives per positive
  carry far more gradient per step than BPR's one, which matters when epochs are expensive.

``pos`` has shape (B,) and ``neg`` (B, n_neg); an optional ``weight`` (B,) scales each
positive's term of the batch mean (distillation's teacher positives weigh less than the
user's own).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor, weight: torch.Tensor | None = None):
    return _mean(-F.logsigmoid(pos.unsqueeze(1) - neg).mean(dim=1), weight)


def binary_loss(pos: torch.Tensor, neg: torch.Tensor, weight: torch.Tensor | None = None):
    return _mean(-(F.logsigmoid(pos) + F.logsigmoid(-neg).mean(dim=1)), weight)


def softmax_loss(
    pos: torch.Tensor,
    neg: torch.Tensor,
    weight: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    # log(e^a + Σ e^b) − a without concatenating the (B, n_neg) logits: two passes over them.
    pos = pos / temperature
    negatives = torch.logsumexp(neg * (1.0 / temperature), dim=1)
    return _mean(torch.logaddexp(pos, negatives) - pos, weight)


def _mean(per_positive: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """The batch mean, each positive's loss scaled by its ``weight`` (B,) when given."""
    if weight is None:
        return per_positive.mean()
    return (per_positive * weight).sum() / per_positive.numel()


LOSSES = {"bpr": bpr_loss, "binary": binary_loss, "softmax": softmax_loss}


def l2_penalty(*embeddings: torch.Tensor) -> torch.Tensor:
    """½ Σ‖e‖² over the batch's layer-0 embeddings, divided by the batch size (LightGCN's)."""
    batch = embeddings[0].shape[0]
    return sum(e.pow(2).sum() for e in embeddings) / (2 * batch)
