"""Relaxations: sampling frequencies, straight-through and ProxylessNAS gradients, L0 gates."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from torchloom.core.relax import (
    binary_gate,
    binary_gate_two_path,
    gumbel_softmax,
    hard_concrete,
    hard_concrete_l0,
)

LOGITS = torch.tensor([1.0, 0.0, -0.5, 2.0, 0.3], dtype=torch.float64)
N_SAMPLES = 20_000


def _gen(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _chisquare_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs.double().cpu().numpy() * float(counts.sum())
    return float(stats.chisquare(counts.double().cpu().numpy(), expected).pvalue)


def _assert_one_hot(y: torch.Tensor) -> None:
    assert bool(((y == 0) | (y == 1)).all())
    assert bool((y.sum(-1) == 1).all())


# ----------------------------------------------------------------------------- gumbel_softmax


@pytest.mark.parametrize("tau", [0.3, 1.0, 5.0])
def test_gumbel_hard_frequencies_match_softmax(tau: float) -> None:
    logits = LOGITS.expand(N_SAMPLES, -1)
    y = gumbel_softmax(logits, tau=tau, hard=True, generator=_gen(1))
    _assert_one_hot(y)
    assert _chisquare_p(y.sum(0), LOGITS.softmax(-1)) > 0.01


def test_chisquare_detects_wrong_distribution() -> None:
    # The frequency tests can fail: samples from other logits are rejected.
    y = gumbel_softmax(LOGITS.expand(N_SAMPLES, -1), hard=True, generator=_gen(1))
    assert _chisquare_p(y.sum(0), (0.8 * LOGITS).softmax(-1)) < 1e-6


def test_gumbel_soft_is_a_distribution_along_dim(device: torch.device) -> None:
    logits = torch.randn(3, 6, 4, device=device, dtype=torch.float32)
    y = gumbel_softmax(logits, tau=0.7, dim=1, generator=_gen(0, device))
    assert y.shape == logits.shape and y.dtype == logits.dtype and y.device == logits.device
    torch.testing.assert_close(y.sum(1), torch.ones(3, 4, device=device))
    assert bool((y > 0).all())


def test_gumbel_hard_is_exactly_one_hot_along_dim() -> None:
    logits = torch.randn(7, 5, 3)
    y = gumbel_softmax(logits, hard=True, dim=1, generator=_gen(3))
    _assert_one_hot(y.transpose(1, 2))
    soft = gumbel_softmax(logits, hard=False, dim=1, generator=_gen(3))
    assert torch.equal(y.argmax(1), soft.argmax(1))


def test_gumbel_straight_through_gradient_equals_soft_gradient() -> None:
    logits = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 6, dtype=torch.float64)
    hard = gumbel_softmax(logits, tau=0.5, hard=True, generator=_gen(5))
    (g_hard,) = torch.autograd.grad((hard * w).sum(), logits)
    soft = gumbel_softmax(logits, tau=0.5, hard=False, generator=_gen(5))
    (g_soft,) = torch.autograd.grad((soft * w).sum(), logits)
    assert g_hard.abs().max() > 0
    torch.testing.assert_close(g_hard, g_soft, rtol=0, atol=1e-12)


def test_gumbel_soft_gradcheck() -> None:
    logits = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x: gumbel_softmax(x, tau=0.8, generator=_gen(2)), (logits,)
    )


def test_gumbel_generator_reproducible_and_global_rng_used() -> None:
    logits = torch.randn(10, 5)
    a = gumbel_softmax(logits, generator=_gen(11))
    b = gumbel_softmax(logits, generator=_gen(11))
    assert torch.equal(a, b)
    torch.manual_seed(4)
    c = gumbel_softmax(logits)
    torch.manual_seed(4)
    d = gumbel_softmax(logits)
    assert torch.equal(c, d) and not torch.equal(a, c)


@pytest.mark.parametrize("tau", [0.0, -1.0, math.inf, math.nan])
def test_gumbel_bad_tau(tau: float) -> None:
    with pytest.raises(ValueError, match="tau"):
        gumbel_softmax(torch.randn(2, 3), tau=tau)


def test_gumbel_bad_inputs() -> None:
    with pytest.raises(TypeError, match="logits"):
        gumbel_softmax(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="logits"):
        gumbel_softmax([1.0, 2.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dim"):
        gumbel_softmax(torch.randn(2, 3), dim=2)
    with pytest.raises(ValueError, match="logits"):
        gumbel_softmax(torch.tensor(1.0))


# ----------------------------------------------------------------------------- binary_gate


def test_binary_gate_frequencies_match_softmax() -> None:
    g = binary_gate(LOGITS.expand(N_SAMPLES, -1), generator=_gen(7))
    _assert_one_hot(g)
    assert _chisquare_p(g.sum(0), LOGITS.softmax(-1)) > 0.01


def test_binary_gate_gradient_is_proxylessnas_estimator(device: torch.device) -> None:
    logits = torch.randn(3, 5, dtype=torch.float64, device=device, requires_grad=True)
    v = torch.randn(3, 5, dtype=torch.float64, device=device)  # plays ∂L/∂g
    g = binary_gate(logits, generator=_gen(0, device))
    assert g.dtype == logits.dtype and g.device == logits.device
    (grad,) = torch.autograd.grad(g, logits, v)
    p = logits.detach().softmax(-1)
    expected = torch.empty_like(p)
    for b in range(3):  # the formula, written out term by term
        for i in range(5):
            expected[b, i] = sum(
                v[b, j] * p[b, j] * ((1.0 if i == j else 0.0) - p[b, i]) for j in range(5)
            )
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-14)
    # Equivalently the softmax vector-Jacobian product.
    (ref,) = torch.autograd.grad(logits.softmax(-1), logits, v)
    torch.testing.assert_close(grad, ref)


def test_binary_gate_through_mixed_output() -> None:
    # out = Σ g_i o_i: ∂L/∂g_j = <∂L/∂out, o_j>, the estimator follows from autograd.
    logits = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    outs = torch.randn(4, 3, dtype=torch.float64)
    g = binary_gate(logits, generator=_gen(9))
    out = (g[:, None] * outs).sum(0)
    assert torch.equal(out, outs[int(g.argmax())])
    loss = out.square().sum()
    (grad,) = torch.autograd.grad(loss, logits)
    dg = outs @ (2 * out.detach())
    p = torch.full((4,), 0.25, dtype=torch.float64)
    torch.testing.assert_close(grad, p * (dg - (dg * p).sum()))


def test_binary_gate_two_path_frequencies_and_gradient() -> None:
    p = LOGITS.softmax(-1)
    n = p.numel()
    # P(active = i) = Σ_j P(pair {i, j}) · p_i / (p_i + p_j), the pair drawn without replacement.
    expected = torch.zeros(n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            if i != j:
                pair = p[i] * p[j] / (1 - p[i]) + p[j] * p[i] / (1 - p[j])
                expected[i] += pair * p[i] / (p[i] + p[j])
    torch.testing.assert_close(expected.sum(), torch.tensor(1.0, dtype=torch.float64))
    g, pair = binary_gate_two_path(LOGITS.expand(N_SAMPLES, -1), generator=_gen(8))
    _assert_one_hot(g)
    assert bool((pair[:, 0] != pair[:, 1]).all())
    assert bool((g.gather(-1, pair).sum(-1) == 1).all())  # the active path is a candidate
    assert _chisquare_p(g.sum(0), expected) > 0.01

    logits = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 5, dtype=torch.float64)
    g, pair = binary_gate_two_path(logits, generator=_gen(1))
    assert not pair.requires_grad
    (grad,) = torch.autograd.grad(g, logits, v)
    for b in range(2):
        a, c = pair[b].tolist()
        q = logits.detach()[b, [a, c]].softmax(-1)
        vv = v[b, [a, c]]
        want = torch.zeros(5, dtype=torch.float64)
        want[[a, c]] = q * (vv - (vv * q).sum())
        torch.testing.assert_close(grad[b], want)


def test_binary_gate_bad_inputs() -> None:
    with pytest.raises(TypeError, match="logits"):
        binary_gate(torch.ones(3, dtype=torch.int32))
    with pytest.raises(ValueError, match="logits"):
        binary_gate(torch.empty(2, 0))
    with pytest.raises(ValueError, match="N >= 2"):
        binary_gate_two_path(torch.zeros(3, 1))


# ----------------------------------------------------------------------------- hard concrete


def test_hard_concrete_range_and_exact_endpoints(device: torch.device) -> None:
    log_alpha = torch.linspace(-3, 3, 7, device=device).repeat(5000)
    z = hard_concrete(log_alpha, generator=_gen(0, device))
    assert z.shape == log_alpha.shape and z.dtype == log_alpha.dtype and z.device == device
    assert bool(((z >= 0) & (z <= 1)).all())
    assert bool((z == 0).any()) and bool((z == 1).any())
    assert bool(((z > 0) & (z < 1)).any())


def test_hard_concrete_distribution_matches_closed_form() -> None:
    beta, gamma, zeta = 2 / 3, -0.1, 1.1
    n = 200_000
    for la in (-1.5, 0.0, 2.0):
        log_alpha = torch.full((n,), la, dtype=torch.float64)
        z = hard_concrete(log_alpha, beta, gamma, zeta, generator=_gen(3))

        def cdf_s(a: float, la: float = la) -> float:
            # P(s < a) for s = sigmoid((L + log_alpha) / beta), L standard logistic
            return 1 / (1 + math.exp(-(beta * math.log(a / (1 - a)) - la)))

        checks = {
            "P(z=0)": (float((z == 0).double().mean()), cdf_s(-gamma / (zeta - gamma))),
            "P(z=1)": (float((z == 1).double().mean()), 1 - cdf_s((1 - gamma) / (zeta - gamma))),
            "P(z<.5)": (float((z < 0.5).double().mean()), cdf_s((0.5 - gamma) / (zeta - gamma))),
        }
        for name, (mc, exact) in checks.items():
            sd = math.sqrt(exact * (1 - exact) / n)
            assert abs(mc - exact) < 5 * sd, (name, la, mc, exact)


def test_hard_concrete_l0_matches_monte_carlo() -> None:
    n = 100_000
    log_alpha = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0], dtype=torch.float64)
    for beta, gamma, zeta in ((2 / 3, -0.1, 1.1), (0.5, -0.2, 1.3)):
        z = hard_concrete(log_alpha.expand(n, -1), beta, gamma, zeta, generator=_gen(4))
        mc = (z != 0).double().mean(0)
        exact = hard_concrete_l0(log_alpha, beta, gamma, zeta, reduction="none")
        sd = (exact * (1 - exact) / n).sqrt()
        assert bool(((mc - exact).abs() < 5 * sd).all()), (mc, exact)
        torch.testing.assert_close(hard_concrete_l0(log_alpha, beta, gamma, zeta), exact.sum())
        torch.testing.assert_close(
            hard_concrete_l0(log_alpha, beta, gamma, zeta, reduction="mean"), exact.mean()
        )


def test_hard_concrete_eval_is_deterministic_gate() -> None:
    log_alpha = torch.tensor([-5.0, -0.5, 0.0, 0.5, 5.0])
    z = hard_concrete(log_alpha, training=False)
    expected = (torch.sigmoid(log_alpha) * 1.2 - 0.1).clamp(0, 1)
    torch.testing.assert_close(z, expected)
    assert z[0] == 0 and z[-1] == 1
    assert torch.equal(z, hard_concrete(log_alpha, training=False))


def test_hard_concrete_gradients() -> None:
    log_alpha = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda la: hard_concrete(la, generator=_gen(12)), (log_alpha,))
    assert torch.autograd.gradcheck(lambda la: hard_concrete_l0(la, 0.5, -0.2, 1.3), (log_alpha,))


def test_hard_concrete_bad_inputs() -> None:
    la = torch.zeros(3)
    with pytest.raises(TypeError, match="log_alpha"):
        hard_concrete(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="beta"):
        hard_concrete(la, beta=0.0)
    with pytest.raises(ValueError, match="gamma"):
        hard_concrete(la, gamma=0.1)
    with pytest.raises(ValueError, match="zeta"):
        hard_concrete_l0(la, zeta=1.0)
    with pytest.raises(ValueError, match="reduction"):
        hard_concrete_l0(la, reduction="max")  # type: ignore[arg-type]
