"""LSSL: recurrent == convolutional, Krylov doubling == naive powers, gradients, errors."""

import pytest
import torch
from hypothesis import given, strategies as st

from torchloom.ssm import LSSL, LSSLModel, fft_conv, krylov, krylov_kernel


def _naive_krylov(da: torch.Tensor, db: torch.Tensor, length: int) -> torch.Tensor:
    out, x = [], db
    for _ in range(length):
        out.append(x)
        x = torch.einsum("...ij,...j->...i", da, x)
    return torch.stack(out, -2)


@given(n=st.integers(1, 6), length=st.integers(1, 40), seed=st.integers(0, 1000))
def test_krylov_doubling_equals_powers(n: int, length: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    da = torch.randn(3, n, n, generator=g, dtype=torch.float64) / (n + 1)
    db = torch.randn(3, n, generator=g, dtype=torch.float64)
    torch.testing.assert_close(krylov(da, db, length), _naive_krylov(da, db, length))


@given(
    n=st.integers(1, 6),
    length=st.integers(1, 70),
    channels=st.integers(1, 3),
    seed=st.integers(0, 1000),
)
def test_blocked_kernel_equals_c_times_powers(
    n: int, length: int, channels: int, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    da = torch.randn(2, n, n, generator=g, dtype=torch.float64) / (n + 1)
    db = torch.randn(2, n, generator=g, dtype=torch.float64)
    c = torch.randn(channels, 2, n, generator=g, dtype=torch.float64)
    want = torch.einsum("mhn,hln->mhl", c, _naive_krylov(da, db, length))
    torch.testing.assert_close(krylov_kernel(da, db, c, length), want)


def test_kernel_flushes_subnormals_without_changing_values() -> None:
    # a strongly decaying Ā: late powers would be subnormal in float32 (slow CPU arithmetic)
    da = torch.full((1, 1, 1), 0.5)
    db = torch.ones(1, 1)
    k = krylov_kernel(da, db, torch.ones(1, 1, 1), 300)
    tiny = torch.finfo(torch.float32).tiny
    assert not bool(((k != 0) & (k.abs() < tiny)).any())
    want = 0.5 ** torch.arange(300, dtype=torch.float64)
    torch.testing.assert_close(k[0, 0].double(), want, rtol=1e-6, atol=1e-18)


def test_fft_conv_equals_direct() -> None:
    u = torch.randn(2, 3, 17, dtype=torch.float64)
    k = torch.randn(3, 17, dtype=torch.float64)
    want = torch.stack(
        [(k[..., : t + 1].flip(-1) * u[..., : t + 1]).sum(-1) for t in range(17)], -1
    )
    torch.testing.assert_close(fft_conv(u, k), want)


@given(
    n=st.integers(1, 12),
    length=st.integers(1, 48),
    channels=st.integers(1, 3),
    d_model=st.integers(1, 4),
    dt=st.floats(1e-3, 0.5),
    glu=st.booleans(),
)
def test_recurrent_equals_convolutional(
    n: int, length: int, channels: int, d_model: int, dt: float, glu: bool
) -> None:
    layer = LSSL(
        d_model, n, channels, dt, dt * 2, activation="glu" if glu else "gelu", dtype=torch.float64
    )
    u = torch.randn(2, length, d_model, dtype=torch.float64)
    y_conv = layer(u)
    y_rec, state = layer.forward_recurrent(u)
    torch.testing.assert_close(y_conv, y_rec, atol=1e-9, rtol=1e-7)
    assert state.shape == (2, d_model, n)


def test_recurrent_state_continues_sequence(device: torch.device) -> None:
    # streaming in two halves with the carried state equals one pass
    layer = LSSL(3, 8, 2, dtype=torch.float64).to(device)
    u = torch.randn(2, 20, 3, dtype=torch.float64, device=device)
    full = layer(u)
    y1, s = layer.forward_recurrent(u[:, :11])
    y2, _ = layer.forward_recurrent(u[:, 11:], s)
    torch.testing.assert_close(torch.cat([y1, y2], 1), full)


def test_model_modes_agree_and_float32(device: torch.device) -> None:
    model = LSSLModel(1, 4, d_model=8, n_layers=2, state_dim=16, pool="last").to(device)
    x = torch.randn(3, 30, 1, device=device)
    torch.testing.assert_close(model(x), model(x, mode="recurrent"), atol=1e-4, rtol=1e-4)
    assert model(x).shape == (3, 4)


def test_gradients_reach_a_b_and_dt() -> None:
    layer = LSSL(2, 4, 1, train_A=True, train_dt=True, dtype=torch.float64)
    u = torch.randn(2, 9, 2, dtype=torch.float64)
    layer(u).pow(2).sum().backward()
    for p in (layer.A, layer.B, layer.log_dt, layer.C, layer.D):
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()) and p.grad.abs().sum() > 0
    fixed = LSSL(2, 4, 1, train_A=False, train_dt=False)
    names = {n for n, _ in fixed.named_parameters()}
    assert "A" not in names and "log_dt" not in names
    assert {"A", "B", "log_dt"} <= set(fixed.state_dict())


def test_gradcheck_conv_path() -> None:
    layer = LSSL(2, 3, 1, train_A=True, dtype=torch.float64)
    u = torch.randn(1, 5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: layer(x), (u,))


def test_state_dict_round_trip() -> None:
    a = LSSLModel(1, 3, d_model=4, n_layers=1, state_dim=5)
    b = LSSLModel(1, 3, d_model=4, n_layers=1, state_dim=5)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 7, 1)
    torch.testing.assert_close(a(x), b(x))


def test_kernel_is_impulse_response() -> None:
    layer = LSSL(2, 6, 1, dtype=torch.float64)
    da, db = layer.discrete()
    k = layer.kernel(10)
    x = db
    for t in range(10):
        torch.testing.assert_close(k[0, :, t], torch.einsum("hn,hn->h", layer.C[0], x))
        x = torch.einsum("hij,hj->hi", da, x)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="state_dim"):
        LSSL(4, 0)
    with pytest.raises(ValueError, match="dt_min"):
        LSSL(4, 4, dt_min=-1.0)
    with pytest.raises(ValueError, match="dt_min"):
        LSSL(4, 4, dt_min=0.5, dt_max=0.1)
    layer = LSSL(4, 4, l_max=10)
    with pytest.raises(ValueError, match="features"):
        layer(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="dimensions"):
        layer(torch.randn(5, 4))
    with pytest.raises(ValueError, match="l_max"):
        layer(torch.randn(1, 11, 4))
    with pytest.raises(ValueError, match="state"):
        layer.step(torch.randn(2, 4), torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="mode"):
        LSSLModel(1, 2, d_model=4, n_layers=1)(torch.randn(1, 3, 1), mode="scan")  # type: ignore[arg-type]


@pytest.mark.parametrize("measure", ["legs", "legt", "lagt"])
def test_model_passes_the_hippo_measure_to_every_layer(measure: str) -> None:
    from torchloom.ssm import hippo

    model = LSSLModel(2, 3, d_model=4, n_layers=2, state_dim=5, measure=measure)
    a, b = hippo(measure, 5, dtype=torch.float32)
    for layer in model.layers:
        torch.testing.assert_close(layer.A, a)
        torch.testing.assert_close(layer.B, b)
