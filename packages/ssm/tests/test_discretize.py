"""Discretisation against scipy.signal.cont2discrete in float64."""

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st
from scipy.signal import cont2discrete

from torchloom.ssm import discretize, gbt, legs, zoh

SCIPY = {
    "forward_euler": dict(method="euler"),
    "backward_euler": dict(method="backward_diff"),
    "bilinear": dict(method="bilinear"),
    "zoh": dict(method="zoh"),
}


def _scipy(a: np.ndarray, b: np.ndarray, dt: float, **kw) -> tuple[np.ndarray, np.ndarray]:
    n, m = b.shape
    ad, bd, *_ = cont2discrete((a, b, np.eye(n), np.zeros((n, m))), dt, **kw)
    return ad, bd


@pytest.mark.parametrize("method", sorted(SCIPY))
@given(
    n=st.integers(1, 6),
    m=st.integers(1, 3),
    dt=st.floats(1e-3, 0.5),
    seed=st.integers(0, 2**16),
)
def test_matches_scipy(method: str, n: int, m: int, dt: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=torch.float64) - 2 * torch.eye(n, dtype=torch.float64)
    b = torch.randn(n, m, generator=g, dtype=torch.float64)
    ad, bd = discretize(a, b, dt, method)
    want_a, want_b = _scipy(a.numpy(), b.numpy(), dt, **SCIPY[method])
    np.testing.assert_allclose(ad.numpy(), want_a, atol=1e-10, rtol=1e-10)
    np.testing.assert_allclose(bd.numpy(), want_b, atol=1e-10, rtol=1e-10)


@given(alpha=st.floats(0.0, 1.0), dt=st.floats(1e-3, 0.3))
def test_gbt_alpha_matches_scipy(alpha: float, dt: float) -> None:
    a, b = legs(5)
    ad, bd = gbt(a, b, dt, alpha)
    want_a, want_b = _scipy(a.numpy(), b[:, None].numpy(), dt, method="gbt", alpha=alpha)
    np.testing.assert_allclose(ad.numpy(), want_a, atol=1e-10, rtol=1e-10)
    np.testing.assert_allclose(bd.numpy(), want_b[:, 0], atol=1e-10, rtol=1e-10)


def test_batched_dt_equals_loop(device: torch.device) -> None:
    a, b = legs(4, device=device)
    dts = torch.tensor([0.01, 0.1, 0.5], dtype=torch.float64, device=device)
    for method in ("bilinear", "zoh", "forward_euler"):
        ad, bd = discretize(a, b, dts, method)
        assert ad.shape == (3, 4, 4) and bd.shape == (3, 4) and ad.device.type == device.type
        for i, dt in enumerate(dts.tolist()):
            ad_i, bd_i = discretize(a, b, dt, method)
            torch.testing.assert_close(ad[i], ad_i)
            torch.testing.assert_close(bd[i], bd_i)


def test_zoh_singular_a_is_integrator() -> None:
    # A = 0: x_{k+1} = x_k + dt B u_k exactly
    a = torch.zeros(2, 2, dtype=torch.float64)
    b = torch.tensor([1.0, -2.0], dtype=torch.float64)
    ad, bd = zoh(a, b, 0.25)
    torch.testing.assert_close(ad, torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(bd, 0.25 * b)


def test_gradients_flow_to_a_and_dt() -> None:
    a, b = legs(3)
    a.requires_grad_(True)
    dt = torch.tensor([0.1, 0.2], dtype=torch.float64, requires_grad=True)
    from torch.autograd import gradcheck

    assert gradcheck(lambda a_, d_: discretize(a_, b, d_, "bilinear"), (a, dt))
    assert gradcheck(lambda a_, d_: discretize(a_, b, d_, "zoh"), (a, dt))


def test_bad_input() -> None:
    a, b = legs(3)
    with pytest.raises(ValueError, match="dt"):
        discretize(a, b, 0.0)
    with pytest.raises(ValueError, match="dt"):
        discretize(a, b, torch.tensor([0.1, -0.1], dtype=torch.float64))
    with pytest.raises(ValueError, match="A must"):
        discretize(a[:2], b, 0.1)
    with pytest.raises(ValueError, match="B must"):
        discretize(a, b[:2], 0.1)
    with pytest.raises(ValueError, match="method"):
        discretize(a, b, 0.1, "rk4")
    with pytest.raises(ValueError, match="alpha"):
        gbt(a, b, 0.1, 1.5)
