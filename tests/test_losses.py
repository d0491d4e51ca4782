"""BPR, binary cross-entropy and the L2 penalty on hand-worked examples."""

from __future__ import annotations

import math

import pytest
import torch

from recs_pipeline.training import config
from recs_pipeline.training.losses import LOSSES, binary_loss, bpr_loss, l2_penalty, softmax_loss


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


POS = [2.0, -1.0]
NEG = [[0.5, 3.0], [-2.0, -1.5]]


def test_bpr_loss_by_hand():
    # −mean over all (positive, negative) pairs of log σ(s⁺ − s⁻).
    diffs = [2.0 - 0.5, 2.0 - 3.0, -1.0 - (-2.0), -1.0 - (-1.5)]
    expected = -sum(math.log(sigmoid(d)) for d in diffs) / 4
    got = bpr_loss(torch.tensor(POS), torch.tensor(NEG))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_bpr_loss_single_pair_and_equal_scores():
    assert bpr_loss(torch.tensor([0.0]), torch.tensor([[0.0]])).item() == pytest.approx(
        math.log(2.0)
    )
    # A positive far above its negative costs almost nothing; far below costs ~ the gap.
    assert bpr_loss(torch.tensor([30.0]), torch.tensor([[0.0]])).item() == pytest.approx(
        0.0, abs=1e-9
    )
    assert bpr_loss(torch.tensor([0.0]), torch.tensor([[40.0]])).item() == pytest.approx(40.0)


def test_binary_loss_by_hand():
    # −mean_b [log σ(s⁺_b) + mean_j log(1 − σ(s⁻_bj))].
    per_row = []
    for pos, negs in zip(POS, NEG, strict=True):
        neg_term = sum(math.log(1.0 - sigmoid(n)) for n in negs) / len(negs)
        per_row.append(math.log(sigmoid(pos)) + neg_term)
    expected = -sum(per_row) / len(per_row)
    got = binary_loss(torch.tensor(POS), torch.tensor(NEG))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_binary_loss_zero_scores():
    # σ(0) = 1/2 on both sides: log 2 for the positive plus log 2 for the negatives.
    got = binary_loss(torch.zeros(3), torch.zeros(3, 4))
    assert got.item() == pytest.approx(2 * math.log(2.0))


def test_losses_registry():
    assert LOSSES == {"bpr": bpr_loss, "binary": binary_loss, "softmax": softmax_loss}
    # TrainConfig checks a loss by name without torch: the names it allows are these.
    assert sorted(config.LOSSES) == sorted(LOSSES)


def test_softmax_loss_hand_example():
    # One positive at 1, negatives at 0 and 2, temperature 0.5: logits 2, 0, 4.
    got = softmax_loss(torch.tensor([1.0]), torch.tensor([[0.0, 2.0]]), temperature=0.5)
    expected = math.log(math.exp(2) + math.exp(0) + math.exp(4)) - 2
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # With one negative and τ = 1, softmax cross-entropy equals BPR: log(1 + e^{s⁻ − s⁺}).
    pos, neg = torch.tensor([0.3, -1.2]), torch.tensor([[0.9], [0.1]])
    assert softmax_loss(pos, neg).item() == pytest.approx(bpr_loss(pos, neg).item(), rel=1e-6)


@pytest.mark.parametrize("loss", ["bpr", "binary", "softmax"])
def test_weights_scale_each_positives_term_of_the_batch_mean(loss):
    pos, neg = torch.tensor([0.3, -1.2, 0.5]), torch.tensor([[0.9, 0.0], [0.1, 0.4], [-2.0, 1.0]])
    fn = LOSSES[loss]
    each = torch.stack([fn(pos[i : i + 1], neg[i : i + 1]) for i in range(3)])
    weight = torch.tensor([1.0, 0.5, 0.25])
    assert fn(pos, neg, weight).item() == pytest.approx((each * weight).mean().item(), rel=1e-6)
    assert fn(pos, neg, torch.ones(3)).item() == pytest.approx(fn(pos, neg).item(), rel=1e-6)


def test_l2_penalty_by_hand():
    users = torch.tensor([[1.0, 2.0], [0.0, -1.0]])  # ‖·‖² = 5 + 1
    items = torch.tensor([[3.0, 0.0], [1.0, 1.0]])  # 9 + 2
    negatives = torch.tensor([[2.0, 2.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # 8 + 0 + 1 + 1
    # ½ Σ‖e‖² / batch size (the first tensor's rows): (6 + 11 + 10) / (2 * 2)
    assert l2_penalty(users, items, negatives).item() == pytest.approx(27 / 4)
    assert l2_penalty(users).item() == pytest.approx(6 / 4)
