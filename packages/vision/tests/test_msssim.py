"""SSIM / MS-SSIM: equality with pytorch-msssim, invariants, gradients and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, strategies as st

from torchloom.core.testing import assert_gradcheck
from torchloom.vision.msssim import (
    MS_SSIM_WEIGHTS,
    MSSSIMLoss,
    SSIMLoss,
    gaussian_window,
    ms_ssim,
    ms_ssim_min_size,
    ssim,
)


def _structured(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Smooth gradients and stripes plus a little noise, in [0, 1]."""
    grids = torch.meshgrid(
        *[torch.linspace(0, 1, s, device=device) for s in shape[2:]], indexing="ij"
    )
    base = 0.5 + 0.25 * torch.sin(12 * grids[-1]) * torch.cos(7 * grids[-2]) + 0.2 * grids[0]
    noise = 0.05 * torch.randn(shape, device=device)
    return (base.expand(shape) + noise).clamp(0, 1)


def _pair(
    shape: tuple[int, ...], device: torch.device, kind: str
) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(shape, device=device) if kind == "random" else _structured(shape, device)
    y = (x + 0.15 * torch.randn(shape, device=device)).clamp(0, 1)
    return x, y


@pytest.mark.parametrize("kind", ["random", "structured"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_2d_equals_pytorch_msssim(device: torch.device, kind: str, dtype: torch.dtype) -> None:
    pm = pytest.importorskip("pytorch_msssim")
    x, y = _pair((2, 3, 166, 171), device, kind)
    x, y = x.to(dtype), y.to(dtype)
    for dr in (1.0, 255.0):
        xs, ys = x * dr, y * dr
        ours = ssim(xs, ys, dr, reduction="none")
        peer = pm.ssim(xs, ys, data_range=dr, size_average=False)
        torch.testing.assert_close(ours, peer, atol=1e-5, rtol=0)
        ours = ms_ssim(xs, ys, dr, reduction="none")
        peer = pm.ms_ssim(xs, ys, data_range=dr, size_average=False)
        torch.testing.assert_close(ours, peer, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["random", "structured"])
def test_3d_equals_pytorch_msssim(device: torch.device, kind: str) -> None:
    pm = pytest.importorskip("pytorch_msssim")
    x, y = _pair((2, 2, 34, 35, 37), device, kind)
    torch.testing.assert_close(
        ssim(x, y, 1.0, win_size=7, sigma=1.0),
        pm.ssim(x, y, data_range=1.0, win_size=7, win_sigma=1.0),
        atol=1e-5,
        rtol=0,
    )
    torch.testing.assert_close(
        ms_ssim(x, y, 1.0, win_size=3),
        pm.ms_ssim(x, y, data_range=1.0, win_size=3),
        atol=1e-5,
        rtol=0,
    )


def test_gradient_equals_pytorch_msssim(device: torch.device) -> None:
    pm = pytest.importorskip("pytorch_msssim")
    x, y = _pair((1, 1, 161, 170), device, "structured")
    x64, y64 = x.double(), y.double()
    a = x64.clone().requires_grad_()
    b = x64.clone().requires_grad_()
    ms_ssim(a, y64, 1.0).backward()
    pm.ms_ssim(b, y64, data_range=1.0).backward()
    assert a.grad is not None and b.grad is not None
    # the peer builds its window in float32, so agreement is to ~1e-5 of the gradient's scale
    scale = float(b.grad.abs().max())
    torch.testing.assert_close(a.grad, b.grad, atol=1e-4 * scale, rtol=0)


def test_anticorrelated_images_give_finite_gradients(device: torch.device) -> None:
    # cs < 0 at coarse scales: relu clips it to 0 and d/dv v^w is infinite there; the peer
    # returns NaN gradients in this case, we return zeros.
    x = _structured((1, 1, 170, 170), device).requires_grad_()
    y = 1.0 - x.detach()
    v = ms_ssim(x, y, 1.0)
    v.backward()
    assert torch.isfinite(v)
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


@pytest.mark.parametrize("spatial", [(20, 24), (12, 13, 14)])
def test_identity_symmetry_and_bounds(device: torch.device, spatial: tuple[int, ...]) -> None:
    x = torch.rand(3, 2, *spatial, device=device, dtype=torch.float64)
    y = torch.rand(3, 2, *spatial, device=device, dtype=torch.float64)
    one = torch.ones(3, dtype=torch.float64, device=device)
    torch.testing.assert_close(ssim(x, x, 1.0, win_size=7, reduction="none"), one)
    torch.testing.assert_close(
        ms_ssim(x, x, 1.0, win_size=3, weights=(0.5, 0.5), reduction="none"), one
    )
    s_xy = ssim(x, y, 1.0, win_size=7, reduction="none")
    torch.testing.assert_close(s_xy, ssim(y, x, 1.0, win_size=7, reduction="none"))
    assert bool((s_xy < 1).all()) and bool((s_xy >= -1).all())
    m_xy = ms_ssim(x, y, 1.0, win_size=3, weights=(0.5, 0.5), reduction="none")
    torch.testing.assert_close(
        m_xy, ms_ssim(y, x, 1.0, win_size=3, weights=(0.5, 0.5), reduction="none")
    )
    assert bool((m_xy < 1).all()) and bool((m_xy >= 0).all())


@given(scale=st.floats(0.1, 500.0), seed=st.integers(0, 2**16))
def test_data_range_invariance(scale: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 1, 33, 33, generator=g, dtype=torch.float64)
    y = (x + 0.3 * torch.rand(1, 1, 33, 33, generator=g, dtype=torch.float64)).clamp(0, 1)
    base = ms_ssim(x, y, 1.0, win_size=3)
    scaled = ms_ssim(scale * x, scale * y, scale, win_size=3)
    assert math.isclose(float(base), float(scaled), rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(
        float(ssim(x, y, 1.0)), float(ssim(scale * x, scale * y, scale)), rel_tol=1e-9
    )


@given(
    seed=st.integers(0, 2**16),
    noise=st.floats(0.0, 2.0),
    flip=st.booleans(),
)
def test_finite_gradients(seed: int, noise: float, flip: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 1, 25, 26, generator=g).requires_grad_()
    target = 1 - x.detach() if flip else x.detach()
    y = (target + noise * torch.randn(x.shape, generator=g)).clamp(0, 1)
    loss = MSSSIMLoss(1.0, win_size=7, weights=(0.2, 0.3, 0.5))(x, y) + SSIMLoss(1.0)(x, y)
    loss.backward()
    assert torch.isfinite(loss)
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_follow_inputs(device: torch.device, dtype: torch.dtype) -> None:
    x = torch.rand(2, 1, 33, 33, device=device, dtype=dtype)
    y = torch.rand(2, 1, 33, 33, device=device, dtype=dtype)
    for v in (ssim(x, y, 1.0), ms_ssim(x, y, 1.0, win_size=3), ssim(x, y, 1.0, reduction="none")):
        assert v.dtype == dtype and v.device == x.device
    assert ssim(x, y, 1.0, reduction="none").shape == (2,)
    assert gaussian_window(5, 1.0, dtype=dtype).dtype == dtype


def test_gradcheck_float64() -> None:
    x = torch.rand(1, 2, 9, 10, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 2, 9, 10, dtype=torch.float64)
    assert_gradcheck(lambda a: ssim(a, y, 1.0, win_size=5), [x])
    z = torch.rand(1, 1, 6, 6, 7, dtype=torch.float64, requires_grad=True)
    w = (z.detach() + 0.1 * torch.rand(1, 1, 6, 6, 7, dtype=torch.float64)).clamp(0, 1)
    assert_gradcheck(lambda a: ms_ssim(a, w, 1.0, win_size=3, weights=(0.4, 0.6)), [z])


def test_window_is_normalised_gaussian() -> None:
    g = gaussian_window(11, 1.5, dtype=torch.float64)
    assert math.isclose(float(g.sum()), 1.0, rel_tol=1e-12)
    torch.testing.assert_close(g, g.flip(0))
    ratio = float(g[6] / g[5])
    assert math.isclose(ratio, math.exp(-1 / (2 * 1.5**2)), rel_tol=1e-12)


def test_loss_modules_match_functional_and_round_trip() -> None:
    x, y = torch.rand(2, 3, 170, 170), torch.rand(2, 3, 170, 170)
    loss = MSSSIMLoss(1.0)
    torch.testing.assert_close(loss(x, y), 1 - ms_ssim(x, y, 1.0))
    torch.testing.assert_close(SSIMLoss(1.0)(x, y), 1 - ssim(x, y, 1.0))
    clone = MSSSIMLoss(1.0)
    clone.load_state_dict(loss.state_dict())
    torch.testing.assert_close(clone(x, y), loss(x, y))


def test_too_small_images_name_the_minimum_side() -> None:
    assert ms_ssim_min_size(11, 5) == 161
    x = torch.rand(1, 1, 160, 200)
    with pytest.raises(ValueError, match=">= 161"):
        ms_ssim(x, x, 1.0)
    ms_ssim(torch.rand(1, 1, 161, 161), torch.rand(1, 1, 161, 161), 1.0)  # the minimum works
    with pytest.raises(ValueError, match=">= 11"):
        ssim(torch.rand(1, 1, 10, 40), torch.rand(1, 1, 10, 40), 1.0)
    with pytest.raises(ValueError, match=">= 33"):
        ms_ssim(torch.rand(1, 1, 40, 40, 32), torch.rand(1, 1, 40, 40, 32), 1.0, win_size=3)


def test_bad_input() -> None:
    x = torch.rand(1, 1, 20, 20)
    with pytest.raises(ValueError, match="same shape"):
        ssim(x, torch.rand(1, 1, 20, 21), 1.0)
    with pytest.raises(TypeError, match="same dtype"):
        ssim(x, x.double(), 1.0)
    with pytest.raises(TypeError, match="floating"):
        ssim((x * 255).to(torch.uint8), (x * 255).to(torch.uint8), 255.0)
    with pytest.raises(ValueError, match="data_range"):
        ssim(x, x, 0.0)
    with pytest.raises(ValueError, match="win_size"):
        ssim(x, x, 1.0, win_size=4)
    with pytest.raises(ValueError, match="4 dimensions"):
        ssim(x[0], x[0], 1.0)
    with pytest.raises(ValueError, match="reduction"):
        ssim(x, x, 1.0, reduction="sum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weights"):
        ms_ssim(x, x, 1.0, weights=())
    with pytest.raises(ValueError, match="data_range"):
        MSSSIMLoss(-1.0)


def test_default_weights_are_wang_et_al() -> None:
    assert len(MS_SSIM_WEIGHTS) == 5
    assert math.isclose(sum(MS_SSIM_WEIGHTS), 1.0, abs_tol=1e-3)
