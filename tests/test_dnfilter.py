"""The degree-normalised filter against its formula computed densely with numpy."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recs_pipeline.config import SettingError
from recs_pipeline.models import fit_training_free
from recs_pipeline.models.dnfilter import DegreeNormalisedFilter, top_right_singular_vectors
from recs_pipeline.training import TrainConfig
from recs_pipeline.training.teacher import teacher_edges
from tests.test_gfcf import dense_gfcf, random_graph
from tests.test_train import two_communities


def dense_dnfilter(
    r,
    beta: float,
    weight: float,
    k: int,
    gamma: float | None = None,
    sharpen: float = 0.0,
    user_exponent: float = 0.5,
):
    """The module docstring's formula: sharpening as P − cP² on the top-k eigenvectors of P,
    P = R̃ᵀR̃ / λ_1 with R̃ = D_U^{-a} R D_I^{-½}."""
    gamma = beta if gamma is None else gamma
    d_u, d_i = r.sum(1), r.sum(0)
    r_norm = r / (d_u**user_exponent)[:, None] / np.sqrt(d_i)[None, :]
    p = r_norm.T @ r_norm
    p /= np.linalg.eigvalsh(p).max()
    eigenvalues, vectors = np.linalg.eigh(p)
    top = np.argsort(eigenvalues)[::-1][:k]
    v, lam = vectors[:, top], eigenvalues[top]
    projector = v @ v.T
    # restricted to V̄'s span, P² is V̄ Λ² V̄ᵀ = P̄ P P̄ (P̄ = V̄V̄ᵀ, which commutes with P)
    filt = p + weight * projector - sharpen * projector @ p @ p @ projector
    np.testing.assert_allclose(projector @ p @ p @ projector, v @ np.diag(lam**2) @ v.T, atol=1e-9)
    return (r @ np.diag(d_i**-beta)) @ filt @ np.diag(d_i**gamma)


@pytest.mark.parametrize(
    "beta,gamma,weight,k,sharpen,user_exponent",
    [
        (0.4, None, 0.2, 5, 0.0, 0.5),
        (0.0, None, 0.5, 3, 0.0, 0.5),
        (0.5, None, 0.0, 4, 0.0, 0.5),
        (0.3, 0.1, 0.3, 6, 0.0, 0.5),
        (0.2, 0.5, 0.1, 6, 0.9, 0.5),
        (0.3, None, 0.0, 4, 0.5, 0.5),
        (0.2, 0.3, 0.2, 6, 0.0, 0.3),
        (0.2, 0.3, 0.1, 5, 0.5, 0.0),
    ],
)
def test_scores_match_the_dense_formula(beta, gamma, weight, k, sharpen, user_exponent):
    r, users, items = random_graph()
    model = DegreeNormalisedFilter(
        beta=beta, gamma=gamma, weight=weight, k=k, sharpen=sharpen, user_exponent=user_exponent
    )
    got = model.fit(users, items, *r.shape).scores(torch.arange(r.shape[0])).double().numpy()
    want = dense_dnfilter(r, beta, weight, k, gamma, sharpen, user_exponent)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_sharpening_lowers_the_top_eigenvectors_gain():
    """c λ² takes most from the top, popularity-like vectors (λ_1 = 1 for a connected graph)."""
    r, users, items = random_graph(seed=4)
    model = DegreeNormalisedFilter(weight=0.1, sharpen=0.9, k=6).fit(users, items, *r.shape)
    gain = model.spectral_response()
    np.testing.assert_allclose(model.eigenvalues[0], 1.0, rtol=1e-4)
    np.testing.assert_allclose(gain[0], 0.1 - 0.9, rtol=1e-3)
    assert torch.all(gain[1:] >= gain[:-1])  # eigenvalues descend, so the gain ascends


def test_beta_zero_without_ideal_term_is_gfcf_linear_filter():
    r, users, items = random_graph(seed=2)
    params = {"beta": 0.0, "gamma": 0.0, "weight": 0.0, "sharpen": 0.0, "user_exponent": 0.5}
    got = fit_training_free("dnfilter", users, items, *r.shape, **params)
    np.testing.assert_allclose(
        got.scores(torch.arange(r.shape[0])).double().numpy(),
        dense_gfcf(r, 0.0, 1),
        rtol=1e-4,
        atol=1e-5,
    )


@pytest.mark.parametrize("user_exponent", [0.5, 0.3])
def test_retune_equals_a_fresh_fit_and_restore_equals_fit(user_exponent):
    r, users, items = random_graph(seed=3)
    fresh = DegreeNormalisedFilter(
        beta=0.3, gamma=0.2, weight=0.4, k=3, sharpen=0.7, user_exponent=user_exponent
    )
    fresh.fit(users, items, *r.shape)
    retuned = DegreeNormalisedFilter(
        beta=0.5, weight=0.1, k=6, sharpen=0.0, user_exponent=user_exponent
    )
    retuned.fit(users, items, *r.shape).retune(beta=0.3, gamma=0.2, weight=0.4, k=3, sharpen=0.7)
    restored = DegreeNormalisedFilter(**fresh.params()).restore(
        users, items, *r.shape, fresh.state()
    )
    others = [retuned, restored]
    if user_exponent == 0.5:  # a checkpoint from before the sharpening term: the basis only
        others.append(
            DegreeNormalisedFilter(**fresh.params()).restore(
                users, items, *r.shape, {"basis": fresh.state()["basis"]}
            )
        )
    batch = torch.tensor([0, 3, 7])
    for other in others:
        np.testing.assert_allclose(other.scores(batch), fresh.scores(batch), rtol=1e-5, atol=1e-6)


def test_randomised_subspace_iteration_finds_the_top_singular_subspace():
    rng = np.random.default_rng(0)
    # a 300 × 200 sparse matrix with a clear spectral gap after 10 values
    low = (
        rng.standard_normal((300, 10))
        @ np.diag(np.linspace(10, 5, 10))
        @ rng.standard_normal((10, 200))
    )
    dense = (low / 10 + 0.05 * rng.standard_normal((300, 200))).astype(np.float32)
    s, v = top_right_singular_vectors(sp.csr_matrix(dense), 10, oversample=10, iterations=3)
    _, s_ref, vt_ref = np.linalg.svd(dense.astype(np.float64))
    np.testing.assert_allclose(s, s_ref[:10], rtol=1e-3)
    cosines = np.linalg.svd(vt_ref[:10] @ v, compute_uv=False)
    assert cosines.min() > 0.999


def test_a_rank_deficient_matrix_falls_back_to_householder_qr():
    rng = np.random.default_rng(1)
    dense = (rng.standard_normal((200, 5)) @ rng.standard_normal((5, 150))).astype(np.float32)
    s, v = top_right_singular_vectors(sp.csr_matrix(dense), 20, oversample=10, iterations=2)
    _, s_ref, _ = np.linalg.svd(dense.astype(np.float64))
    np.testing.assert_allclose(s[:5], s_ref[:5], rtol=1e-3)
    assert np.isfinite(v).all()


def test_dnfilter_is_a_distillation_teacher():
    """The filter's top unseen items per user become the student's extra positives."""
    users, items, _ = two_communities()
    assert TrainConfig(distill="dnfilter").distill == "dnfilter"
    t_users, t_items, _ = teacher_edges("dnfilter", users, items, 40, 40, k=3)
    scores = fit_training_free("dnfilter", users, items, 40, 40).scores(torch.arange(40))
    for u in (0, 25):
        row = scores[u].clone()
        row[items[users == u]] = -torch.inf
        assert set(t_items[t_users == u].tolist()) == set(row.topk(3).indices.tolist())
    assert torch.equal(t_users < 20, t_items < 20)  # never outside the user's community


def test_model_params_reach_the_filter_as_model_and_as_teacher():
    """The model owns its settings: TrainConfig carries them by the model's parameter names,
    model_params for a training-free model, distill_params for a teacher."""
    users, items, _ = two_communities()
    params = {"user_exponent": 0.3, "k": 4, "sharpen": 0.5}
    assert TrainConfig(model="dnfilter", model_params=params).model_params == params
    assert TrainConfig(model="dnfilter").model_params is None  # the model's defaults
    config = TrainConfig(distill="dnfilter", distill_params=params)
    assert config.distill_params == params
    got = teacher_edges("dnfilter", users, items, 40, 40, 3, config.distill_params)
    scores = fit_training_free("dnfilter", users, items, 40, 40, **params).scores(torch.arange(40))
    for u in (0, 25):
        row = scores[u].clone()
        row[items[users == u]] = -torch.inf
        assert set(got[1][got[0] == u].tolist()) == set(row.topk(3).indices.tolist())


def test_model_params_score_as_the_filter_built_with_them():
    """TrainConfig(model="dnfilter", model_params=...) fits the very filter its parameters
    name: the scores are those of the constructor called with them."""
    users, items, _ = two_communities()
    config = TrainConfig(model="dnfilter", model_params={"sharpen": 0.3, "k": 4})
    fitted = fit_training_free("dnfilter", users, items, 40, 40, **config.model_params)
    direct = DegreeNormalisedFilter(sharpen=0.3, k=4).fit(users, items, 40, 40)
    assert torch.equal(fitted.scores(torch.arange(40)), direct.scores(torch.arange(40)))


def test_model_params_are_checked_against_the_models_own_declaration():
    # An integer for a number is that number; the keys come back in one order whatever the
    # caller's (so a config's fingerprint does not depend on it).
    config = TrainConfig(model="dnfilter", model_params={"sharpen": 1, "beta": 0.1})
    assert config.model_params == {"beta": 0.1, "sharpen": 1.0}
    assert isinstance(config.model_params["sharpen"], float)
    assert list(config.model_params) == ["beta", "sharpen"]
    assert TrainConfig(model="gfcf", model_params={"alpha": 0.5, "k": 4}).model_params == {
        "alpha": 0.5,
        "k": 4,
    }
    # An unknown name: refused, naming the model and the parameters it has.
    with pytest.raises(SettingError, match=r"dnfilter has no parameter 'sharpness'") as error:
        TrainConfig(model="dnfilter", model_params={"sharpness": 0.3})
    for name in ("user_exponent", "beta", "gamma", "weight", "k", "sharpen"):
        assert name in str(error.value)
    assert "model_params" in error.value.fields
    with pytest.raises(SettingError, match=r"gfcf has no parameter 'sharpen'.*alpha, k"):
        TrainConfig(model="gfcf", model_params={"sharpen": 0.3})
    with pytest.raises(SettingError, match=r"popularity has no parameter 'k'"):
        TrainConfig(model="popularity", model_params={"k": 4})
    # A value outside the declared type or range: refused, saying what is allowed.
    for bad, allowed in [
        ({"k": 1.5}, "an integer >= 1"),
        ({"k": 0}, "an integer >= 1"),
        ({"sharpen": -0.5}, "a number >= 0"),
        ({"user_exponent": "half"}, "a number >= 0"),
        ({"beta": True}, "a number"),
    ]:
        name, value = next(iter(bad.items()))
        with pytest.raises(SettingError, match=rf"dnfilter's {name} must be {allowed}") as error:
            TrainConfig(model="dnfilter", model_params=bad)
        assert repr(value) in str(error.value)


@pytest.mark.parametrize(
    "values,fields",
    [
        ({"model": "lightgcn", "model_params": {"k": 4}}, ("model_params", "model")),
        ({"model": "lightgcn", "distill_params": {"k": 4}}, ("distill_params", "distill")),
        (
            {"model": "lightgcn", "distill": "gfcf", "distill_params": {"sharpen": 1.0}},
            ("distill_params", "distill"),
        ),
    ],
)
def test_params_without_a_model_that_takes_them_are_refused(values, fields):
    with pytest.raises(SettingError) as error:
        TrainConfig(**values)
    assert error.value.fields == fields
