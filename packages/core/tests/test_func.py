"""torch.func helpers against torch.autograd.functional; Hutchinson unbiasedness."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, strategies as st

from torchloom.core.func import divergence, hvp, jacobian, jvp, trace_estimate, vjp
from torchloom.core.testing.strategies import tensors

F64 = torch.float64
AF = torch.autograd.functional


def _random_fn(
    in_shape: tuple[int, ...], out_shape: tuple[int, ...], seed: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A random smooth per-sample map ``(B, *in_shape) -> (B, *out_shape)``."""
    g = torch.Generator().manual_seed(seed)
    d_in, d_out = math.prod(in_shape), math.prod(out_shape)
    W1 = torch.randn(d_in, 5, generator=g, dtype=F64)
    W2 = torch.randn(5, d_out, generator=g, dtype=F64)
    W3 = torch.randn(d_in, d_out, generator=g, dtype=F64) * 0.3

    def f(x: torch.Tensor) -> torch.Tensor:
        xf = x.reshape(x.shape[0], d_in)
        y = torch.tanh(xf @ W1) @ W2 + torch.sin(xf) ** 2 @ W3
        return y.reshape(x.shape[0], *out_shape)

    return f


small_shape = st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple)
batch = st.integers(1, 3)
seeds = st.integers(0, 2**16)


@given(batch, small_shape, small_shape, seeds, st.data())
def test_jvp_vjp_match_autograd_functional(
    b: int, in_shape: tuple[int, ...], out_shape: tuple[int, ...], seed: int, data: st.DataObject
) -> None:
    f = _random_fn(in_shape, out_shape, seed)
    x = data.draw(tensors((b, *in_shape), min_value=-2, max_value=2))
    t = data.draw(tensors((b, *in_shape), min_value=-2, max_value=2))
    c = data.draw(tensors((b, *out_shape), min_value=-2, max_value=2))
    out, jv = jvp(f, x, t)
    ref_out, ref_jv = AF.jvp(f, x, t)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(jv, ref_jv)
    out, vj = vjp(f, x, c)
    _, ref_vj = AF.vjp(f, x, c)
    torch.testing.assert_close(vj, ref_vj)
    assert vj.shape == x.shape


def test_jvp_vjp_tuple_primals() -> None:
    x, y = torch.randn(3, dtype=F64), torch.randn(3, dtype=F64)
    tx, ty = torch.randn(3, dtype=F64), torch.randn(3, dtype=F64)

    def f(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.sin(x) * y

    _, jv = jvp(f, (x, y), (tx, ty))
    torch.testing.assert_close(jv, AF.jvp(f, (x, y), (tx, ty))[1])
    c = torch.randn(3, dtype=F64)
    _, vj = vjp(f, (x, y), c)
    assert isinstance(vj, tuple) and len(vj) == 2
    for a, r in zip(vj, AF.vjp(f, (x, y), c)[1]):
        torch.testing.assert_close(a, r)


@given(batch, small_shape, small_shape, seeds, st.data())
def test_jacobian_matches_autograd_functional(
    b: int, in_shape: tuple[int, ...], out_shape: tuple[int, ...], seed: int, data: st.DataObject
) -> None:
    f = _random_fn(in_shape, out_shape, seed)
    x = data.draw(tensors((b, *in_shape), min_value=-2, max_value=2))
    full = AF.jacobian(f, x)  # (B, *O, B, *I)
    torch.testing.assert_close(jacobian(f, x, batched=False), full)
    per_sample = jacobian(f, x)
    assert per_sample.shape == (b, *out_shape, *in_shape)
    d_in, d_out = math.prod(in_shape), math.prod(out_shape)
    blocks = full.reshape(b, d_out, b, d_in)
    for i in range(b):
        torch.testing.assert_close(per_sample[i].reshape(d_out, d_in), blocks[i, :, i])


@given(batch, small_shape, seeds, st.data())
def test_hvp_matches_autograd_functional(
    b: int, in_shape: tuple[int, ...], seed: int, data: st.DataObject
) -> None:
    g = _random_fn(in_shape, (1,), seed)

    def f(x: torch.Tensor) -> torch.Tensor:  # per-sample scalars (B,)
        return g(x)[:, 0]

    x = data.draw(tensors((b, *in_shape), min_value=-2, max_value=2))
    v = data.draw(tensors((b, *in_shape), min_value=-2, max_value=2))
    out, hv = hvp(f, x, v)
    ref_out, ref_hv = AF.hvp(lambda y: f(y).sum(), x, v)
    torch.testing.assert_close(out, f(x))
    torch.testing.assert_close(hv, ref_hv)
    assert ref_out.shape == ()


@given(batch, small_shape, seeds, st.data())
def test_exact_trace_matches_jacobian_diagonal(
    b: int, shape: tuple[int, ...], seed: int, data: st.DataObject
) -> None:
    f = _random_fn(shape, shape, seed)
    x = data.draw(tensors((b, *shape), min_value=-2, max_value=2))
    d = math.prod(shape)
    full = AF.jacobian(f, x).reshape(b, d, b, d)
    ref = torch.stack([full[i, :, i].trace() for i in range(b)])
    torch.testing.assert_close(trace_estimate(f, x, exact=True), ref)
    out, div = divergence(f, x, exact=True)
    torch.testing.assert_close(out, f(x))
    torch.testing.assert_close(div, ref)


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(distribution: str) -> None:
    shape = (2, 3)
    f = _random_fn(shape, shape, seed=7)
    x = torch.randn(4, *shape, dtype=F64)
    d = math.prod(shape)
    J = torch.stack([j.reshape(d, d) for j in jacobian(f, x)])  # (B, d, d)
    exact = J.diagonal(dim1=1, dim2=2).sum(-1)
    S = J + J.transpose(1, 2)
    if distribution == "rademacher":  # Var εᵀJε = ½ Σ_{i≠j} (J_ij + J_ji)²
        var = 0.5 * (S.square().sum((1, 2)) - S.diagonal(dim1=1, dim2=2).square().sum(-1))
    else:  # Var = ½ ‖J + Jᵀ‖_F²
        var = 0.5 * S.square().sum((1, 2))
    n = 20_000
    gen = torch.Generator().manual_seed(3)
    est = trace_estimate(f, x, n_samples=n, distribution=distribution, generator=gen)  # type: ignore[arg-type]
    assert est.shape == (4,)
    assert bool(((est - exact).abs() < 5 * (var / n).sqrt()).all()), (est, exact)
    # ... and a single probe is not exact (the test above can fail)
    one = trace_estimate(f, x, distribution=distribution, generator=gen)  # type: ignore[arg-type]
    assert not torch.allclose(one, exact)


def test_rademacher_probe_exact_for_diagonal_jacobian() -> None:
    # εᵀ diag(a) ε = Σ a_i for ε ∈ {±1}ⁿ: Rademacher has zero variance here.
    a = torch.randn(5, dtype=F64)
    x = torch.randn(3, 5, dtype=F64)
    est = trace_estimate(lambda x: a * torch.sinh(x), x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(est, (a * torch.cosh(x)).sum(-1))


def test_trace_is_differentiable() -> None:
    torch.manual_seed(0)
    W = torch.randn(4, 4, dtype=F64, requires_grad=True)
    x = torch.randn(3, 4, dtype=F64, requires_grad=True)

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ W)

    (gW, gx) = torch.autograd.grad(trace_estimate(f, x, exact=True).sum(), (W, x))

    # reference: tr J_b = Σ_i W_ii (1 − tanh²(x_b W)_i)
    def ref(W: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return ((1 - torch.tanh(x @ W) ** 2) * W.diagonal()).sum()

    (rW, rx) = torch.autograd.grad(ref(W, x), (W, x))
    torch.testing.assert_close(gW, rW)
    torch.testing.assert_close(gx, rx)
    gen = torch.Generator().manual_seed(1)
    est = trace_estimate(f, x, n_samples=2, generator=gen)
    (g,) = torch.autograd.grad(est.sum(), W)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_generator_reproducible(device: torch.device) -> None:
    x = torch.randn(2, 3, device=device)

    def f(x: torch.Tensor) -> torch.Tensor:
        return x.flip(-1) * x

    a = trace_estimate(f, x, n_samples=3, generator=torch.Generator(device).manual_seed(5))
    b = trace_estimate(f, x, n_samples=3, generator=torch.Generator(device).manual_seed(5))
    assert torch.equal(a, b) and a.device == x.device and a.dtype == x.dtype


def test_bad_inputs() -> None:
    x = torch.randn(2, 3)
    with pytest.raises(TypeError, match="f must be callable"):
        trace_estimate(1, x)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="x must be a floating"):
        trace_estimate(torch.sin, torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="n_samples"):
        trace_estimate(torch.sin, x, n_samples=0)
    with pytest.raises(ValueError, match="distribution"):
        trace_estimate(torch.sin, x, distribution="uniform")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"f\(x\) must have x's shape \(2, 3\) .*got \(2,\)"):
        trace_estimate(lambda x: x.sum(-1), x)
    with pytest.raises(ValueError, match=r"tangents must have shape \(2, 3\), got \(3,\)"):
        jvp(torch.sin, x, torch.ones(3))
    with pytest.raises(ValueError, match=r"cotangents must have shape \(2, 3\)"):
        vjp(torch.sin, x, torch.ones(2))
    with pytest.raises(ValueError, match=r"v must have shape"):
        hvp(lambda y: y.sum(), x, torch.ones(3))
    with pytest.raises(TypeError, match="primals"):
        jvp(torch.sin, [x], [x])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch dimension"):
        jacobian(torch.sin, torch.tensor(1.0))
