"""NCLaw: equivariance and rest-state guarantees by construction; the MPM simulator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy.linalg import polar

from torchloom.pinn.nclaw import (
    MPM2D,
    ElasticLaw,
    MLPPlasticity,
    MLPStress,
    MPMState,
    PlasticityLaw,
    invariants,
    lame,
    neo_hookean_stress,
    polar_rotation,
    singular_values,
    von_mises_projection,
)


def _rot(theta: float) -> torch.Tensor:
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


def _random_F(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.eye(2, dtype=torch.float64) + 0.3 * torch.randn(
        n, 2, 2, generator=g, dtype=torch.float64
    )


@settings(max_examples=25, deadline=None)
@given(theta=st.floats(-math.pi, math.pi), seed=st.integers(0, 1000))
def test_elastic_law_is_rotation_equivariant(theta: float, seed: int) -> None:
    torch.manual_seed(seed)
    law = ElasticLaw(width=16, depth=2, stress_scale=3.0).double()
    F = _random_F(8, seed)
    Q = _rot(theta)
    torch.testing.assert_close(law(Q @ F), Q @ law(F), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(invariants(Q @ F), invariants(F), rtol=1e-9, atol=1e-9)
    plastic = PlasticityLaw(width=8).double()
    torch.testing.assert_close(plastic(Q @ F), Q @ plastic(F), rtol=1e-9, atol=1e-9)


def test_baseline_is_not_equivariant() -> None:
    torch.manual_seed(0)
    base = MLPStress(width=16).double()
    F, Q = _random_F(8, 0), _rot(1.0)
    with torch.no_grad():
        assert float((base(Q @ F) - Q @ base(F)).abs().max()) > 1e-3
        assert float(base(torch.eye(2, dtype=torch.float64)).abs().max()) > 0
        plast = MLPPlasticity(width=8, alpha=1.0).double()
        assert float((plast(Q @ F) - Q @ plast(F)).abs().max()) > 1e-3
        eye = torch.eye(2, dtype=torch.float64)
        assert float((plast(eye) - eye).abs().max()) > 0


def test_rest_state_is_stress_free_exactly() -> None:
    torch.manual_seed(0)
    eye = torch.eye(2, dtype=torch.float64).expand(5, 2, 2)
    assert torch.equal(
        ElasticLaw(width=16).double()(eye), torch.zeros(5, 2, 2, dtype=torch.float64)
    )
    assert torch.equal(PlasticityLaw(width=8).double()(eye), eye)
    mu, lam = lame(100.0, 0.3)
    assert float(neo_hookean_stress(eye, mu, lam).abs().max()) < 1e-12


def test_polar_rotation_matches_scipy() -> None:
    F = _random_F(10, 3)
    F = F[torch.linalg.det(F) > 0]
    R = polar_rotation(F)
    for Fi, Ri in zip(F.numpy(), R.numpy()):
        u, _ = polar(Fi)
        np.testing.assert_allclose(Ri, u, atol=1e-10)


def test_von_mises_projection_caps_deviatoric_strain() -> None:
    F = torch.diag_embed(torch.tensor([[1.5, 0.7], [1.01, 0.99]], dtype=torch.float64))
    mu, ty = 100.0, 5.0
    out = von_mises_projection(F, mu, ty)
    eps = torch.log(torch.linalg.svdvals(out))
    dev = (eps - eps.mean(-1, keepdim=True)).norm(dim=-1)
    assert float(dev[0]) == pytest.approx(ty / (2 * mu), rel=1e-9)  # yielded: on the surface
    torch.testing.assert_close(out[1], F[1])  # elastic: untouched


def _block(n: int = 6) -> torch.Tensor:
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    X, Y = torch.meshgrid(u, u, indexing="ij")
    return torch.stack([0.4 + 0.2 * X.ravel(), 0.4 + 0.2 * Y.ravel()], 1)


def test_mpm_conserves_momentum_without_external_forces() -> None:
    sim = MPM2D(n_grid=16, dt=1e-3, gravity=(0.0, 0.0), walls=False)
    x = _block()
    g = torch.Generator().manual_seed(0)
    v = torch.randn(x.shape, generator=g, dtype=torch.float64)
    mu, lam = lame(50.0, 0.3)
    states = sim.rollout(MPMState.at_rest(x, v), 20, lambda F: neo_hookean_stress(F, mu, lam))
    p0 = sim.p_mass * states[0].v.sum(0)
    for s in states[1:]:
        torch.testing.assert_close(sim.p_mass * s.v.sum(0), p0, rtol=0, atol=1e-12)
    # the body did deform (the test is not vacuous)
    assert float((states[-1].F - torch.eye(2, dtype=torch.float64)).abs().max()) > 1e-3


def test_mpm_at_rest_stays_at_rest_with_nclaw() -> None:
    torch.manual_seed(0)
    sim = MPM2D(n_grid=16, gravity=(0.0, 0.0), walls=False)
    x = _block()
    s = sim.rollout(MPMState.at_rest(x, torch.zeros_like(x)), 5, ElasticLaw(width=8).double())[-1]
    assert float(s.v.abs().max()) == 0.0 and torch.equal(s.x, x)


def test_mpm_step_is_differentiable() -> None:
    sim = MPM2D(n_grid=16, dt=1e-3)
    x = _block(3)
    v = torch.zeros_like(x).requires_grad_(True)
    mu = torch.tensor(20.0, dtype=torch.float64, requires_grad=True)

    def f(v_: torch.Tensor, mu_: torch.Tensor) -> torch.Tensor:
        s = MPMState.at_rest(x, v_)
        s = sim.step(s, lambda F: neo_hookean_stress(F, 1.0, 1.0) * mu_)
        s = sim.step(s, lambda F: neo_hookean_stress(F, 1.0, 1.0) * mu_)
        return s.x

    torch.autograd.gradcheck(f, (v, mu))


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        polar_rotation(torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="nu"):
        lame(1.0, 0.5)
    sim = MPM2D(n_grid=8, walls=False)
    x = torch.tensor([[0.01, 0.5]], dtype=torch.float64)
    with pytest.raises(ValueError, match="left the grid"):
        sim.step(MPMState.at_rest(x, torch.zeros_like(x)), lambda F: torch.zeros_like(F))


def test_plastic_correction_scales_with_alpha() -> None:
    """``F ↦ F + α R sym(MLP)``: with the same weights the correction is linear in ``α``, and
    ``α = 1`` is the unscaled map ``R (S + sym(MLP))``."""
    torch.manual_seed(0)
    F = _random_F(16, 5)
    F = F[torch.linalg.det(F) > 0]
    big = PlasticityLaw(width=8, alpha=1.0).double()
    small = PlasticityLaw(width=8, alpha=1e-3).double()
    small.load_state_dict(big.state_dict())
    with torch.no_grad():
        torch.testing.assert_close((small(F) - F) / 1e-3, big(F) - F, rtol=1e-9, atol=1e-12)
        R = polar_rotation(F)
        S = R.transpose(-1, -2) @ F
        m = big.mlp(invariants(F))
        sym = torch.stack(
            [torch.stack([m[:, 0], m[:, 1]], -1), torch.stack([m[:, 1], m[:, 2]], -1)], -2
        )
        torch.testing.assert_close(big(F), R @ (S + sym), rtol=1e-9, atol=1e-12)
        base_big = MLPPlasticity(width=8, alpha=1.0).double()
        base_small = MLPPlasticity(width=8, alpha=1e-3).double()
        base_small.load_state_dict(base_big.state_dict())
        torch.testing.assert_close(
            (base_small(F) - F) / 1e-3, base_big(F) - F, rtol=1e-9, atol=1e-12
        )
    with pytest.raises(ValueError, match="alpha"):
        PlasticityLaw(alpha=0.0)


def test_clip_bound_keeps_particles_on_the_grid() -> None:
    sim = MPM2D(n_grid=8, walls=False, gravity=(0.0, 0.0), clip_bound=2.0)
    x = torch.tensor([[0.5, 0.5], [0.3, 0.7]], dtype=torch.float64)
    v = torch.tensor([[500.0, -500.0], [-500.0, 500.0]], dtype=torch.float64)
    s = sim.step(MPMState.at_rest(x, v), lambda F: torch.zeros_like(F))
    lo, hi = 2.0 / 8, 1.0 - 2.0 / 8
    torch.testing.assert_close(s.x, torch.tensor([[hi, lo], [lo, hi]], dtype=torch.float64))
    s = sim.step(s, lambda F: torch.zeros_like(F))  # and the next step still runs
    assert bool(((s.x >= lo) & (s.x <= hi)).all())
    # without the clamp the same step leaves the grid
    with pytest.raises(ValueError, match="left the grid"):
        free = MPM2D(n_grid=8, walls=False, gravity=(0.0, 0.0))
        free.step(free.step(MPMState.at_rest(x, v), lambda F: torch.zeros_like(F)), lambda F: F * 0)
    with pytest.raises(ValueError, match="clip_bound"):
        MPM2D(n_grid=8, clip_bound=1.0)


@pytest.mark.parametrize(("n", "lam"), [(200, 25.0), (200, 57.3), (40, 200.0), (7, 3.0)])
def test_teacher_resets_split_the_trajectory_evenly(n: int, lam: float) -> None:
    from torchloom.pinn.recipes.constitutive import _teacher_resets

    resets = _teacher_resets(n, lam)
    starts = [k for k, r in enumerate(resets) if r]
    assert len(resets) == n and starts[0] == 0
    assert len(starts) == math.ceil(n / lam)  # one reset per segment of at most λ steps
    lengths = np.diff([*starts, n])
    assert lengths.max() - lengths.min() <= 1 and lengths.max() <= math.ceil(lam)


def test_rest_free_baselines_are_at_rest_but_not_equivariant() -> None:
    """The authors' plain baselines (no biases, input ``F − I``): rest state exact, frame
    indifference not."""
    torch.manual_seed(0)
    eye = torch.eye(2, dtype=torch.float64).expand(3, 2, 2)
    stress = MLPStress(width=16, stress_scale=5.0, rest_free=True).double()
    plast = MLPPlasticity(width=8, alpha=1.0, rest_free=True).double()
    assert all(m.bias is None for m in stress.layers) and all(m.bias is None for m in plast.layers)
    assert torch.equal(stress(eye), torch.zeros_like(eye))
    assert torch.equal(plast(eye), eye)
    F, Q = _random_F(8, 1), _rot(0.7)
    with torch.no_grad():
        assert float((stress(Q @ F) - Q @ stress(F)).abs().max()) > 1e-3
        assert float((plast(Q @ F) - Q @ plast(F)).abs().max()) > 1e-3
        # input F − I: the same weights as the vec-F network evaluated at F − I
        shifted = F - torch.eye(2, dtype=torch.float64)
        x = shifted.reshape(-1, 4)
        for layer in stress.layers[:-1]:
            x = torch.nn.functional.gelu(layer(x))
        ref = stress.layers[-1](x).reshape(F.shape) * 5.0
        torch.testing.assert_close(stress(F), ref, rtol=1e-12, atol=1e-12)


def test_singular_values_match_svd_and_are_smooth_at_rest() -> None:
    F = _random_F(32, 7)
    F = F[torch.linalg.det(F) > 0]
    torch.testing.assert_close(singular_values(F), torch.linalg.svdvals(F), rtol=1e-12, atol=1e-12)
    # equal singular values (F = I, F = 2Q): finite gradients where the SVD backward is NaN
    Q = _rot(0.4)
    G = torch.stack([torch.eye(2, dtype=torch.float64), 2.0 * Q]).requires_grad_(True)
    singular_values(G).sum().backward()
    assert G.grad is not None and bool(torch.isfinite(G.grad).all())
    Fd = F[:4].clone().requires_grad_(True)  # away from σ₁ = σ₂ the closed form is smooth
    torch.autograd.gradcheck(singular_values, (Fd,))


@settings(max_examples=20, deadline=None)
@given(
    theta=st.floats(-math.pi, math.pi), phi=st.floats(-math.pi, math.pi), seed=st.integers(0, 99)
)
def test_singular_invariants_are_equivariant_and_isotropic(
    theta: float, phi: float, seed: int
) -> None:
    """The authors' invariants (``σ − 1`` first): the laws stay frame-indifferent and exact at
    rest, and ``σ`` is also unchanged by a material rotation ``F → F Q`` (``S − I`` is not)."""
    torch.manual_seed(seed)
    F = _random_F(8, seed)
    F = F[torch.linalg.det(F) > 0]
    Q, Qm = _rot(theta), _rot(phi)
    law = ElasticLaw(width=16, stress_scale=3.0, singular=True).double()
    plastic = PlasticityLaw(width=8, alpha=1.0, singular=True).double()
    torch.testing.assert_close(law(Q @ F), Q @ law(F), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(plastic(Q @ F), Q @ plastic(F), rtol=1e-9, atol=1e-9)
    inv, inv_m = invariants(F, singular=True), invariants(F @ Qm, singular=True)
    torch.testing.assert_close(inv_m[..., :2], inv[..., :2], rtol=1e-9, atol=1e-9)
    eye = torch.eye(2, dtype=torch.float64).expand(3, 2, 2)
    assert torch.equal(law(eye), torch.zeros_like(eye)) and torch.equal(plastic(eye), eye)
