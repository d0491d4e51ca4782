"""NGCF's layer against its formula on a tiny graph, and where its gradients go."""

import torch
import torch.nn.functional as F

from recs_pipeline.graph.bipartite import normalized_adjacency
from recs_pipeline.models import build_model

USERS = torch.tensor([0, 0, 1, 2, 2, 3])
ITEMS = torch.tensor([0, 1, 1, 0, 2, 2])


def test_one_layer_matches_the_message_formula_per_node():
    torch.manual_seed(0)
    model = build_model("ngcf", 4, 3, dim=5, layers=2, message_dropout=0.0).eval()
    adjacency = normalized_adjacency(USERS, ITEMS, 4, 3)
    e = model.embedding.weight.detach()
    got = model.layer(0, adjacency, e).detach()
    w1, b1, w2 = model.w1[0].weight.detach(), model.w1[0].bias.detach(), model.w2[0].weight.detach()
    degree = torch.bincount(torch.cat([USERS, ITEMS + 4]), minlength=7).float()
    neighbours = {n: [] for n in range(7)}
    for u, i in zip(USERS.tolist(), ITEMS.tolist(), strict=True):
        neighbours[u].append(i + 4)
        neighbours[i + 4].append(u)
    for node in range(7):
        message = e[node] @ w1.T + b1  # self-connection W₁e_node (+ bias)
        for other in neighbours[node]:
            norm = 1.0 / torch.sqrt(degree[node] * degree[other])
            message = message + norm * (e[other] @ w1.T + (e[other] * e[node]) @ w2.T)
        torch.testing.assert_close(got[node], F.leaky_relu(message, 0.2), rtol=1e-5, atol=1e-6)


def test_output_concatenates_normalised_layers_and_gradients_reach_every_parameter():
    torch.manual_seed(1)
    model = build_model("ngcf", 4, 3, dim=5, layers=2, message_dropout=0.0)
    adjacency = normalized_adjacency(USERS, ITEMS, 4, 3)
    user_emb, item_emb = model.embed(adjacency)
    assert user_emb.shape == (4, 15) and item_emb.shape == (3, 15)
    joint = torch.cat([user_emb, item_emb]).detach()
    torch.testing.assert_close(joint[:, :5], model.embedding.weight.detach())
    for block in (slice(5, 10), slice(10, 15)):
        torch.testing.assert_close(joint[:, block].norm(dim=1), torch.ones(7))
    (user_emb[0] @ item_emb[1]).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_message_dropout_only_in_training():
    torch.manual_seed(2)
    model = build_model("ngcf", 4, 3, dim=8, layers=1, message_dropout=0.5)
    adjacency = normalized_adjacency(USERS, ITEMS, 4, 3)
    model.eval()
    first = model.embed(adjacency)[0].detach()
    assert torch.equal(first, model.embed(adjacency)[0].detach())
    model.train()
    assert not torch.equal(first, model.embed(adjacency)[0].detach())
