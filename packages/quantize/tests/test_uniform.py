"""Bucketed uniform / non-uniform quantisation: invariants, unbiasedness, bounds, size."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from torchloom.core.testing.strategies import tensors
from torchloom.quantize.uniform import (
    UniformQuantizer,
    fake_quantize_model,
    fake_uniform_quantize,
    freeze_quantization,
    model_size_bits,
    nonuniform_quantize,
    quantized_size_bits,
    scale_buckets,
    uniform_quantize,
    unscale_buckets,
)

SMALL = settings(max_examples=30, deadline=None)
vectors = tensors(shape=(23,), dtype=torch.float64, min_value=-5.0, max_value=5.0)


def _buckets(x: torch.Tensor, d: int) -> list[torch.Tensor]:
    flat = x.reshape(-1)
    return [flat[i : i + d] for i in range(0, flat.numel(), d)]


@SMALL
@given(x=vectors, d=st.integers(1, 30))
def test_scaling_is_invertible(x: torch.Tensor, d: int) -> None:
    v, lo, span = scale_buckets(x, d)
    assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0
    torch.testing.assert_close(unscale_buckets(v, lo, span, d), x, rtol=0, atol=1e-12)
    for b, lo_b, span_b in zip(_buckets(x, d), lo, span):
        assert float(lo_b) == float(b.min())
        assert float(span_b) == pytest.approx(float(b.max() - b.min()))


@SMALL
@given(x=vectors, bits=st.integers(1, 5), d=st.integers(1, 30))
def test_idempotent_and_level_count(x: torch.Tensor, bits: int, d: int) -> None:
    q = uniform_quantize(x, bits, d)
    torch.testing.assert_close(uniform_quantize(q, bits, d), q, rtol=0, atol=1e-12)
    for b in _buckets(q, d):
        assert b.unique().numel() <= 2**bits


@SMALL
@given(x=vectors, bits=st.integers(1, 6), d=st.integers(1, 30), stochastic=st.booleans())
def test_error_bound(x: torch.Tensor, bits: int, d: int, stochastic: bool) -> None:
    q = uniform_quantize(x, bits, d, stochastic=stochastic)
    steps = 2**bits - 1
    for xb, qb in zip(_buckets(x, d), _buckets(q, d)):
        span = float(xb.max() - xb.min())
        bound = span / steps if stochastic else span / (2 * steps)
        assert float((qb - xb).abs().max()) <= bound + 1e-12
        # the bucket extremes are levels and are kept exactly (up to rounding of α q + β)
        assert float(qb.min()) == pytest.approx(float(xb.min()), abs=1e-12)


def test_stochastic_rounding_is_unbiased(device: str) -> None:
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(40, device=device, dtype=torch.float64)
    n = 20_000
    rep = x.repeat(n)  # every bucket is a copy of x: the same (α, β) in each
    q = uniform_quantize(rep, 2, 40, stochastic=True, generator=g).reshape(n, 40)
    step = float(x.max() - x.min()) / 3
    mean = q.mean(0)
    # per-entry variance of a two-point rounding is at most step²/4
    se = step / 2 / math.sqrt(n)
    assert float((mean - x).abs().max()) < 5 * se
    # deterministic rounding of the same data is biased by far more than that
    qd = uniform_quantize(x, 2, 40)
    assert float((qd - x).abs().max()) > 20 * se


def test_stochastic_rounding_reproducible_with_generator() -> None:
    x = torch.randn(100)
    a = uniform_quantize(x, 3, 16, stochastic=True, generator=torch.Generator().manual_seed(3))
    b = uniform_quantize(x, 3, 16, stochastic=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_partial_last_bucket_and_constant_bucket() -> None:
    x = torch.tensor([0.0, 1.0, 2.0, 3.0, 5.0, 5.0, 5.0])
    q = uniform_quantize(x, 1, 4)
    assert torch.equal(q, torch.tensor([0.0, 0.0, 3.0, 3.0, 5.0, 5.0, 5.0]))
    with pytest.raises(ValueError, match="bucket_size=4 does not divide"):
        uniform_quantize(x, 1, 4, remainder="error")


@SMALL
@given(x=vectors, bits=st.integers(1, 4), d=st.integers(2, 30))
def test_uniform_points_reproduce_uniform_quantisation(x: torch.Tensor, bits: int, d: int) -> None:
    pts = torch.linspace(0, 1, 2**bits, dtype=torch.float64)
    v, _, _ = scale_buckets(x, d)
    y = v * (2**bits - 1)
    # exact ties between two levels may be broken either way; compare everywhere else
    keep = ((y - y.floor()) - 0.5).abs() > 1e-9
    q_pts, q_uni = nonuniform_quantize(x, pts, d), uniform_quantize(x, bits, d)
    torch.testing.assert_close(q_pts[keep], q_uni[keep])


def test_nonuniform_nearest_point_against_brute_force(device: str) -> None:
    x = torch.randn(6, 10, device=device)
    pts = torch.tensor([0.9, 0.05, 0.3, 0.5], device=device)  # unsorted on purpose
    q = nonuniform_quantize(x, pts, 12)
    v, lo, span = scale_buckets(x, 12)
    j = (v.reshape(-1, 1) - pts.reshape(1, -1)).abs().argmin(1)
    idx = torch.arange(60, device=device) // 12
    ref = pts[j] * span[idx] + lo[idx]
    torch.testing.assert_close(q.reshape(-1), ref)


def test_nonuniform_gradient_wrt_points_is_scale_times_count() -> None:
    x = torch.randn(50, dtype=torch.float64)
    pts = torch.tensor([0.0, 0.2, 0.7, 1.0], dtype=torch.float64, requires_grad=True)
    g = torch.randn(50, dtype=torch.float64)
    q = nonuniform_quantize(x, pts, 10)
    (gp,) = torch.autograd.grad((q * g).sum(), pts)
    v, _, span = scale_buckets(x, 10)
    j = (v.reshape(-1, 1) - pts.detach().reshape(1, -1)).abs().argmin(1)
    ref = torch.zeros(4, dtype=torch.float64)
    ref.index_add_(0, j, g * span[torch.arange(50) // 10])
    torch.testing.assert_close(gp, ref)


def test_nonuniform_stochastic_unbiased_inside_hull() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(30, dtype=torch.float64)
    x[0], x[1] = 0.0, 1.0  # fix the bucket's range to [0, 1]
    pts = torch.tensor([0.0, 0.1, 0.6, 1.0], dtype=torch.float64)
    n = 20_000
    q = nonuniform_quantize(x.repeat(n), pts, 30, stochastic=True, generator=g).reshape(n, 30)
    se = 0.25 / math.sqrt(n)  # the widest gap is 0.5
    assert float((q.mean(0) - x).abs().max()) < 5 * se


def test_fake_quant_straight_through_gradient() -> None:
    x = torch.randn(20, requires_grad=True)
    y = fake_uniform_quantize(x, 2, 5)
    assert torch.equal(y.detach(), uniform_quantize(x.detach(), 2, 5))
    g = torch.randn(20)
    (gx,) = torch.autograd.grad(y, x, g)
    assert torch.equal(gx, g)


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


def test_fake_quantize_model_freeze_and_state_dict(device: str) -> None:
    model = fake_quantize_model(_mlp().to(device), 3, 64)
    x = torch.randn(8, 16, device=device)
    model.eval()
    out_q = model(x)
    shadow = model[0].parametrizations.weight.original
    assert not torch.equal(shadow, model[0].weight)  # full-precision shadow kept
    other = fake_quantize_model(_mlp().to(device), 3, 64).eval()
    other.load_state_dict(model.state_dict())
    assert torch.equal(other(x), out_q)
    freeze_quantization(model)
    assert torch.equal(model(x), out_q)
    assert "0.weight" in model.state_dict()
    for b in _buckets(model[0].weight.detach(), 64):
        assert b.unique().numel() <= 8


def test_model_size_bits_hand_count() -> None:
    model = _mlp()
    assert model_size_bits(model) == 32 * (16 * 32 + 32 + 32 * 4 + 4)
    fake_quantize_model(model, 4, 100, exclude=("2",))
    w0 = 16 * 32 * 4 + math.ceil(512 / 100) * 64
    assert model_size_bits(model) == w0 + 32 * (32 + 32 * 4 + 4)
    assert quantized_size_bits(512, 4, 100) == 512 * 4 + 6 * 64
    assert UniformQuantizer(4, 100).storage_bits(512) == 512 * 4 + 6 * 64


def test_bad_input() -> None:
    x = torch.randn(10)
    with pytest.raises(ValueError, match="bits"):
        uniform_quantize(x, 0)
    with pytest.raises(ValueError, match="bits"):
        UniformQuantizer(0)
    with pytest.raises(ValueError, match="bucket_size"):
        uniform_quantize(x, 2, 0)
    with pytest.raises(ValueError, match="remainder"):
        uniform_quantize(x, 2, 3, remainder="pad")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not divide"):
        scale_buckets(x, 3, remainder="error")
    with pytest.raises(TypeError, match="x"):
        uniform_quantize(torch.arange(4), 2)
    with pytest.raises(ValueError, match="NaN"):
        uniform_quantize(torch.tensor([1.0, float("nan")]), 2)
    with pytest.raises(ValueError, match="points"):
        nonuniform_quantize(x, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="lo and span"):
        unscale_buckets(x, torch.zeros(2), torch.zeros(2), 3)
    with pytest.raises(ValueError, match="exclude"):
        fake_quantize_model(_mlp(), 2, exclude=("9",))


# --- peer-level (Brevitas-style) property tests -------------------------------------------


@SMALL
@given(
    x=vectors,
    bits=st.integers(1, 5),
    d=st.integers(1, 30),
    a=st.floats(0.25, 4.0),
    b=st.floats(-3.0, 3.0),
)
def test_affine_equivariance(x: torch.Tensor, bits: int, d: int, a: float, b: float) -> None:
    # per-bucket min/max scaling makes Q(a·x + b) = a·Q(x) + b for a > 0 (away from exact ties)
    v, _, _ = scale_buckets(x, d)
    y = v * (2**bits - 1)
    keep = ((y - y.floor()) - 0.5).abs() > 1e-6
    lhs, rhs = uniform_quantize(a * x + b, bits, d), a * uniform_quantize(x, bits, d) + b
    torch.testing.assert_close(lhs[keep], rhs[keep], rtol=0, atol=1e-9)


@SMALL
@given(x=vectors, bits=st.integers(1, 5), d=st.integers(1, 30))
def test_monotone_within_buckets_and_on_the_level_grid(x: torch.Tensor, bits: int, d: int) -> None:
    q = uniform_quantize(x, bits, d)
    steps = 2**bits - 1
    for xb, qb in zip(_buckets(x, d), _buckets(q, d)):
        order = xb.argsort()
        assert bool((qb[order].diff() >= -1e-12).all())  # x ≤ x' ⇒ Q(x) ≤ Q(x')
        span = float(xb.max() - xb.min())
        assert float(qb.min()) >= float(xb.min()) - 1e-12
        assert float(qb.max()) <= float(xb.max()) + 1e-12
        if span > 0:
            k = (qb - xb.min()) / span * steps  # integer level indices
            torch.testing.assert_close(k, k.round(), rtol=0, atol=1e-9)


@settings(max_examples=20, deadline=None)
@given(x=vectors, bits=st.integers(1, 4), d=st.integers(2, 30), seed=st.integers(0, 2**16))
def test_stochastic_rounding_picks_a_neighbouring_level(
    x: torch.Tensor, bits: int, d: int, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    q = uniform_quantize(x, bits, d, stochastic=True, generator=g)
    v, lo, span = scale_buckets(x, d)
    steps = 2**bits - 1
    y = v * steps
    down = unscale_buckets(y.floor().clamp(0, steps) / steps, lo, span, d)
    up = unscale_buckets(y.ceil().clamp(0, steps) / steps, lo, span, d)
    near = ((q - down).abs() < 1e-9) | ((q - up).abs() < 1e-9)
    assert bool(near.all())


@settings(max_examples=10, deadline=None)
@given(bits=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_stochastic_rounding_unbiased_for_random_data(bits: int, seed: int) -> None:
    # z-test of E[Q(x)] = x per entry over n draws: |mean − x| < 5 standard errors
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(16, generator=g, dtype=torch.float64) * 4 - 2
    n = 8000
    q = uniform_quantize(x.repeat(n), bits, 16, stochastic=True, generator=g).reshape(n, 16)
    step = float(x.max() - x.min()) / (2**bits - 1)
    se = step / 2 / math.sqrt(n)
    assert float((q.mean(0) - x).abs().max()) < 5 * se


@SMALL
@given(x=vectors, bits=st.integers(1, 5), d=st.integers(1, 30), stochastic=st.booleans())
def test_quantizer_module_straight_through_gradient(
    x: torch.Tensor, bits: int, d: int, stochastic: bool
) -> None:
    qz = UniformQuantizer(bits, d, stochastic=stochastic)
    w = x.clone().requires_grad_(True)
    g = torch.randn_like(x)
    (gw,) = torch.autograd.grad(qz.train()(w), w, g)
    assert torch.equal(gw, g)  # ∂L/∂w = ∂L/∂Q(w): the shadow-weight update
    out = qz.eval()(x)
    torch.testing.assert_close(out, uniform_quantize(x, bits, d), rtol=0, atol=0)
