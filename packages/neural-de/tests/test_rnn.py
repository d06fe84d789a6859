"""ODE-RNN and GRU-Δt baselines: definitions checked against hand computations."""

from __future__ import annotations

import pytest
import torch

from torchloom.neural_de import odeint
from torchloom.neural_de.rnn import ODERNN, GRUDelta, time_since_observed


def _series(b: int = 3, n: int = 6, c: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, n, c, generator=g, dtype=torch.float64)
    x[0, 2, 1] = float("nan")
    x[1, 3, :] = float("nan")  # a time with nothing observed
    t = torch.tensor([0.0, 0.1, 0.35, 0.4, 0.8, 1.0], dtype=torch.float64)[:n]
    return x, t


def test_time_since_observed_matches_loop() -> None:
    x, t = _series()
    d = time_since_observed(x, t)
    mask = ~torch.isnan(x)
    for b in range(x.shape[0]):
        for c in range(x.shape[2]):
            last = t[0]
            for i in range(x.shape[1]):
                if i > 0:
                    assert d[b, i, c] == pytest.approx(float(t[i] - last))
                if mask[b, i, c]:
                    last = t[i]


def test_odernn_matches_reference_loop() -> None:
    torch.manual_seed(0)
    x, t = _series()
    m = ODERNN(2, 5, 3, width=8).double()
    hs = m.hidden_states(x, t)
    assert hs.shape == (3, 6, 5)
    # Rubanova et al. Alg. 1 written out sample by sample.
    for b in range(x.shape[0]):
        h = torch.zeros(1, 5, dtype=torch.float64)
        for i in range(x.shape[1]):
            if i > 0:
                h = odeint(
                    m.func, h, t[i - 1 : i + 1], method="rk4", step_size=float(t[i] - t[i - 1])
                )[-1]
            obs = ~torch.isnan(x[b, i])
            if obs.any():
                inp = torch.cat([torch.nan_to_num(x[b, i]), obs.double()])[None]
                h = m.cell(inp, h)
            torch.testing.assert_close(hs[b, i], h[0])
    assert m(x, t).shape == (3, 3)


def test_odernn_uses_the_ode_between_observations() -> None:
    torch.manual_seed(0)
    x, t = _series()
    m = ODERNN(2, 5, 1, width=8).double()
    out = m(x, t)
    t2 = t.clone()
    t2[1:] = t[1:] + 0.5  # same observations, longer first gap: the ODE must change the output
    assert not torch.allclose(out, m(x, t2))
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.func.parameters())


def test_grudelta_features_and_shapes() -> None:
    x, t = _series()
    m = GRUDelta(2, 4, 2).double()
    f = m.features(x, t)
    assert f.shape == (3, 6, 6)
    assert f[0, 2, 1] == x[0, 1, 1]  # carried forward
    assert torch.equal(f[1, 3, :2], x[1, 2])
    assert f[1, 3, 2:4].sum() == 0 and f[1, 4, 4] == pytest.approx(0.45)
    assert m(x, t).shape == (3, 2)


def test_bad_input() -> None:
    x, t = _series()
    with pytest.raises(ValueError, match="channels"):
        ODERNN(3, 4, 1).double()(x, t)
    with pytest.raises(ValueError, match="times"):
        GRUDelta(2, 4, 1).double()(x, t[:4])
    with pytest.raises(ValueError, match="increasing"):
        GRUDelta(2, 4, 1).double()(x, t.flip(0))
