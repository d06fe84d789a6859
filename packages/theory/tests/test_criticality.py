"""Kernel recursions, susceptibilities, criticality and finite-width corrections."""

from __future__ import annotations

import math

import pytest
import torch

from torchloom.theory import (
    critical_initialization,
    four_point_vertex,
    input_kernel,
    kernel_recursion,
    monte_carlo_moments,
    nngp_kernel,
    sample_preactivations,
    susceptibilities,
)

F64 = torch.float64


@pytest.mark.parametrize("activation", ["relu", "gelu", "swish"])
def test_chi_equal_one_at_criticality(activation: str) -> None:
    crit = critical_initialization(activation)
    chi_par, chi_perp = susceptibilities(crit.k_star, activation=activation, c_w=crit.c_w)
    assert abs(float(chi_par) - 1) < 1e-6
    assert abs(float(chi_perp) - 1) < 1e-6
    # K* is a fixed point of the single-input recursion.
    k = kernel_recursion(
        torch.tensor([[crit.k_star]], dtype=F64),
        5,
        activation=activation,
        c_w=crit.c_w,
        c_b=crit.c_b,
        nodes=200,
    )
    # Quadrature error, not amplified: chi_par = 1 makes K* marginally stable.
    torch.testing.assert_close(
        k[:, 0, 0], torch.full((5,), crit.k_star, dtype=F64), rtol=1e-4, atol=0
    )


def test_known_critical_points() -> None:
    relu = critical_initialization("relu")
    assert (relu.c_b, relu.c_w, relu.universality) == (0.0, 2.0, "scale_invariant")
    tanh = critical_initialization("tanh")
    assert (tanh.c_b, tanh.c_w, tanh.universality) == (0.0, 1.0, "k_star_zero")
    erf = critical_initialization("erf")
    assert erf.c_w == pytest.approx(math.pi / 4)  # 1 / erf'(0)^2
    gelu = critical_initialization("gelu")
    assert gelu.universality == "nontrivial_fixed_point"
    with pytest.raises(ValueError, match="no critical"):
        critical_initialization("sigmoid")


def test_relu_susceptibilities_closed_form() -> None:
    k = torch.tensor([0.3, 1.0, 7.0], dtype=F64)
    for c_w in (1.5, 2.0, 2.5):
        chi_par, chi_perp = susceptibilities(k, activation="relu", c_w=c_w)
        torch.testing.assert_close(chi_par, torch.full_like(k, c_w / 2))
        torch.testing.assert_close(chi_perp, torch.full_like(k, c_w / 2))
    # Off criticality the ReLU kernel grows or decays geometrically with ratio chi = C_W / 2.
    kk = kernel_recursion(torch.tensor([[1.0]], dtype=F64), 6, activation="relu", c_w=2.4)
    torch.testing.assert_close(kk[:, 0, 0], 1.2 ** torch.arange(6, dtype=F64))


def test_tanh_kernel_power_law_and_chi_to_one() -> None:
    k = kernel_recursion(torch.tensor([[1.0]], dtype=F64), 300, activation="tanh", c_w=1.0)
    kl = k[:, 0, 0]
    # K^{(l)} = K - 2 K^2 + O(K^3) per layer  =>  l K^{(l)} -> 1/2.
    assert abs(300 * float(kl[-1]) - 0.5) < 0.02
    chi_par, chi_perp = susceptibilities(kl[-1], activation="tanh", c_w=1.0)
    assert abs(float(chi_par) - 1) < 0.02 and abs(float(chi_perp) - 1) < 0.02


def test_kernel_recursion_matches_nngp() -> None:
    # Book and NTK parameterisations share the NNGP: K^{(L+1)} == nngp_kernel(depth=L).
    x = torch.randn(5, 4, dtype=F64)
    k1 = input_kernel(x, c_w=1.3, c_b=0.2)
    ks = kernel_recursion(k1, 4, activation="erf", c_w=1.3, c_b=0.2)
    torch.testing.assert_close(
        ks[-1], nngp_kernel(x, depth=3, activation="erf", sigma_w2=1.3, sigma_b2=0.2)
    )


def test_four_point_vertex_linear_exact() -> None:
    # Deep linear net: E z^4 - 3 K^2 = 3 K^2 ((1 + 2/n)^{l-1} - 1) exactly; its 1/n term is
    # 6 (l - 1) K^2 / n, which the vertex recursion must reproduce.
    n, k1 = 50, 1.7
    fp = four_point_vertex(k1, 6, n, activation="identity", c_w=1.0)
    lead = torch.tensor([6 * l * k1**2 / n for l in range(6)], dtype=F64)
    torch.testing.assert_close(fp.connected_four_point, lead)
    exact = torch.tensor([3 * k1**2 * ((1 + 2 / n) ** l - 1) for l in range(6)], dtype=F64)
    bound = torch.tensor([6 * k1**2 * (l / n) ** 2 for l in range(6)], dtype=F64) + 1e-12
    assert ((fp.connected_four_point - exact).abs() <= bound).all()


def test_relu_vertex_grows_like_5_l_over_n() -> None:
    fp = four_point_vertex(1.0, 5, 100, activation="relu", c_w=2.0)
    torch.testing.assert_close(fp.v / fp.k**2, 5 * torch.arange(5, dtype=F64))


@pytest.mark.parametrize(("activation", "c_w"), [("relu", 2.0), ("tanh", 1.0)])
def test_monte_carlo_finite_width_matches_leading_order(activation: str, c_w: float) -> None:
    width, depth = 48, 4
    x = torch.ones(1, 6, dtype=torch.float32)
    zs = sample_preactivations(
        x,
        width,
        depth,
        2500,
        activation=activation,
        c_w=c_w,
        generator=torch.Generator().manual_seed(1),
    )
    fp = four_point_vertex(c_w, depth, width, activation=activation, c_w=c_w)
    for layer, z in enumerate(zs):
        mc = monte_carlo_moments(z[:, 0, :])
        k = float(fp.k[layer])
        pred = float(fp.connected_four_point[layer])
        assert abs(mc.k - k) <= 4 * mc.k_se + 0.01 * k
        # Sampling error plus the O((l/n)^2) terms the leading order leaves out.
        slack = 3 * k * k * (layer / width) ** 2 * 8
        assert abs(mc.connected_four_point - pred) <= 4 * mc.connected_four_point_se + slack


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="k must be > 0"):
        susceptibilities(0.0)
    with pytest.raises(ValueError, match="k1"):
        kernel_recursion(torch.ones(2, 3, dtype=F64), 3)
    with pytest.raises(ValueError, match="depth"):
        kernel_recursion(torch.ones(2, 2, dtype=F64), 0)
    with pytest.raises(ValueError, match="z needs"):
        monte_carlo_moments(torch.ones(1, 4))
