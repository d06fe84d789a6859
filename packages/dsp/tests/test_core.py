"""torchloom.dsp.core: scaling, safe log, dB conversions, resampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from torchloom.core.testing import assert_gradcheck
from torchloom.core.testing.strategies import tensors
from torchloom.dsp.core import (
    amplitude_to_db,
    db_to_amplitude,
    db_to_power,
    exp_sigmoid,
    power_to_db,
    resample,
    safe_log,
    upsample_with_windows,
)


@given(tensors((3, 4), min_value=-30.0, max_value=30.0))
def test_exp_sigmoid_bounds_and_slope(x: torch.Tensor) -> None:
    y = exp_sigmoid(x)
    assert bool((y >= 1e-7).all()) and bool((y <= 2.0 + 1e-7).all())
    # Far below 0, sigmoid(x) ~ e^x so y ~ 2 e^{x ln 10}: a factor 10 per unit step of x.
    lo = torch.tensor([-20.0, -19.0], dtype=torch.float64)
    ratio = (exp_sigmoid(lo, threshold=0.0)[1] / exp_sigmoid(lo, threshold=0.0)[0]).item()
    assert ratio == pytest.approx(10.0, rel=1e-6)


def test_exp_sigmoid_formula(device: torch.device) -> None:
    x = torch.linspace(-5, 5, 11, device=device, dtype=torch.float64)
    ref = 2.0 * torch.sigmoid(x) ** math.log(10.0) + 1e-7
    torch.testing.assert_close(exp_sigmoid(x), ref)
    assert exp_sigmoid(torch.zeros(1, device=device)).device == x.device


def test_safe_log_floor_and_grad() -> None:
    x = torch.tensor([0.0, 1e-9, 1.0], dtype=torch.float64, requires_grad=True)
    y = safe_log(x, eps=1e-5)
    assert torch.isfinite(y).all()
    assert y[0].item() == pytest.approx(math.log(1e-5))
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad[2].item() == pytest.approx(1.0)


@given(tensors((5,), min_value=-70.0, max_value=10.0))
def test_db_round_trip(db: torch.Tensor) -> None:
    torch.testing.assert_close(amplitude_to_db(db_to_amplitude(db)), db)
    torch.testing.assert_close(power_to_db(db_to_power(db)), db)


def test_db_floor() -> None:
    z = torch.zeros(3)
    assert torch.equal(amplitude_to_db(z, range_db=60.0), torch.full((3,), -60.0))
    # 20 log10 of amplitude == 10 log10 of power.
    a = torch.tensor([0.5, 2.0], dtype=torch.float64)
    torch.testing.assert_close(amplitude_to_db(a), 20 * torch.log10(a))


def test_linear_resample_matches_numpy_interp(device: torch.device) -> None:
    x = torch.randn(2, 7, 3, dtype=torch.float64, device=device)
    n = 28
    out = resample(x, n, method="linear", add_endpoint=True).cpu().numpy()
    pos = np.arange(n) * 7 / n
    for b in range(2):
        for c in range(3):
            ref = np.interp(pos, np.arange(7), x[b, :, c].cpu().numpy())
            np.testing.assert_allclose(out[b, :, c], ref, atol=1e-12)
    # Without the endpoint both ends are aligned.
    out2 = resample(x, n, method="linear", add_endpoint=False)
    torch.testing.assert_close(out2[:, 0], x[:, 0])
    torch.testing.assert_close(out2[:, -1], x[:, -1])


def test_linear_downsample_is_decimation_for_integer_factor() -> None:
    x = torch.randn(2, 64, dtype=torch.float64)
    torch.testing.assert_close(resample(x, 16), x[:, ::4])


@given(st.integers(2, 9), st.integers(1, 6))
def test_window_upsampling_constant_and_endpoints(n_frames: int, hop: int) -> None:
    # A constant envelope stays constant (Hann windows at 50 % overlap sum to one), and each
    # frame's value is hit exactly at its own sample position.
    c = torch.full((1, n_frames), 0.7, dtype=torch.float64)
    out = upsample_with_windows(c, n_frames * hop)
    torch.testing.assert_close(out, torch.full_like(out, 0.7))
    x = torch.randn(1, n_frames, dtype=torch.float64)
    out = upsample_with_windows(x, n_frames * hop)
    torch.testing.assert_close(out[0, ::hop], x[0])


def test_window_upsampling_is_raised_cosine_crossfade() -> None:
    x = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    out = upsample_with_windows(x, 8, add_endpoint=False)
    n = np.arange(8)
    np.testing.assert_allclose(out[0].numpy(), 0.5 - 0.5 * np.cos(np.pi * n / 8), atol=1e-12)


def test_resample_gradcheck() -> None:
    x = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    assert_gradcheck(lambda t: resample(t, 12, method="window"), [x])
    assert_gradcheck(lambda t: resample(t, 10, method="linear"), [x])


def test_resample_bad_input() -> None:
    x = torch.randn(1, 4)
    with pytest.raises(ValueError, match="multiple"):
        resample(x, 10, method="window")
    with pytest.raises(ValueError, match="method"):
        resample(x, 8, method="cubic")
    with pytest.raises(ValueError, match="x must have 2 or 3"):
        resample(torch.randn(4), 8)
    with pytest.raises(TypeError, match="x must be a floating"):
        resample(torch.ones(1, 4, dtype=torch.long), 8)
    with pytest.raises(ValueError, match="n_samples"):
        resample(x, 0)
