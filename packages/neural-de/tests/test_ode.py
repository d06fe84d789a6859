"""odeint/odesolve: convergence orders, agreement with SciPy and torchdiffeq, sensitivities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from torchloom.core.testing import assert_gradcheck
from torchloom.core.testing.strategies import tensors
from torchloom.neural_de import ODESolverError, PIController, SolverStats, odeint, odesolve
from torchloom.neural_de._tableaux import TABLEAUX, TSIT5, tsit5_weights
from torchloom.neural_de.ode import (
    _CountedField,
    _rk_step,
)

A = np.array([[-0.1, -2.0], [2.0, -0.1]])


def _linear_exact(y0: torch.Tensor, t: torch.Tensor, a: np.ndarray = A) -> torch.Tensor:
    return torch.stack(
        [y0 @ torch.tensor(expm(a * float(s)), dtype=y0.dtype, device=y0.device).T for s in t]
    )


def _linear_field(device: torch.device, a: np.ndarray = A):  # type: ignore[no-untyped-def]
    m = torch.tensor(a, dtype=torch.float64, device=device)
    return lambda t, y: y @ m.T


def _slope(hs: list[float], errs: list[float]) -> float:
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


# --- convergence orders -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["euler", "midpoint", "heun", "rk4"])
def test_fixed_step_convergence_order_linear(method: str, device: torch.device) -> None:
    y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64, device=device)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64, device=device)
    exact = _linear_exact(y0, t)[-1]
    hs = [0.1, 0.05, 0.025, 0.0125]
    errs = [
        float((odeint(_linear_field(device), y0, t, method=method, step_size=h)[-1] - exact).norm())
        for h in hs
    ]
    order = TABLEAUX[method].order
    assert abs(_slope(hs, errs) - order) <= 0.3, (method, errs)


def _order_conditions(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> dict[int, list[float]]:
    """Residuals of the Butcher order conditions (rooted trees up to order 5)."""
    ac = a @ c
    conds = {
        1: [b.sum() - 1],
        2: [b @ c - 1 / 2],
        3: [b @ c**2 - 1 / 3, b @ ac - 1 / 6],
        4: [b @ c**3 - 1 / 4, b @ (c * ac) - 1 / 8, b @ a @ c**2 - 1 / 12, b @ a @ ac - 1 / 24],
        5: [
            b @ c**4 - 1 / 5,
            b @ (c**2 * ac) - 1 / 10,
            b @ (c * (a @ c**2)) - 1 / 15,
            b @ (c * (a @ ac)) - 1 / 30,
            b @ ac**2 - 1 / 20,
            b @ a @ c**3 - 1 / 20,
            b @ a @ (c * ac) - 1 / 40,
            b @ a @ a @ c**2 - 1 / 60,
            b @ a @ a @ ac - 1 / 120,
        ],
    }
    return conds


def _algebraic_order(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> int:
    order = 0
    for p, res in _order_conditions(a, b, c).items():
        if max(abs(r) for r in res) > 1e-10:
            break
        order = p
    return order


@pytest.mark.parametrize("method", list(TABLEAUX))
def test_tableau_order_conditions(method: str) -> None:
    """Each tableau satisfies exactly the order conditions of its order (and its embedded one)."""
    tab = TABLEAUX[method]
    s = tab.stages
    a = np.zeros((s, s))
    for i, row in enumerate(tab.a):
        a[i, : len(row)] = row
    c, b = np.array(tab.c), np.array(tab.b)
    assert _algebraic_order(a, b, c) == tab.order
    if tab.b_err is not None:
        assert _algebraic_order(a, b - np.array(tab.b_err), c) == tab.error_order


def test_tableau_consistency() -> None:
    for tab in TABLEAUX.values():
        for row, c in zip(tab.a, tab.c):
            assert sum(row) == pytest.approx(c, abs=1e-14)
        assert sum(tab.b) == pytest.approx(1.0, abs=1e-14)
        if tab.b_err is not None:
            assert sum(tab.b_err) == pytest.approx(0.0, abs=1e-14)
        if tab.fsal:
            assert tab.a[-1] == tab.b[: len(tab.a[-1])]
    np.testing.assert_allclose(tsit5_weights(1.0), TSIT5.b, atol=1e-13)
    np.testing.assert_allclose(tsit5_weights(0.0), 0.0, atol=1e-15)


# --- adaptive solutions -------------------------------------------------------------------------


def _vdp(t: float, y: np.ndarray, mu: float = 1.5) -> np.ndarray:
    return np.array([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])


@pytest.mark.parametrize("method", ["bosh3", "dopri5", "tsit5"])
def test_adaptive_matches_scipy_dop853(method: str, device: torch.device) -> None:
    def f(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.stack([y[..., 1], 1.5 * (1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0]], -1)

    y0 = torch.tensor([[2.0, 0.0], [0.5, -1.0]], dtype=torch.float64, device=device)
    t = torch.linspace(0.0, 5.0, 11, dtype=torch.float64, device=device)
    rtol = 1e-6 if method == "bosh3" else 1e-9
    ys = odeint(f, y0, t, method=method, rtol=rtol, atol=rtol)
    for b in range(2):
        ref = solve_ivp(
            _vdp,
            (0.0, 5.0),
            y0[b].cpu().numpy(),
            method="DOP853",
            t_eval=t.cpu().numpy(),
            rtol=1e-13,
            atol=1e-13,
        ).y.T
        err = np.abs(ys[:, b].cpu().numpy() - ref).max()
        assert err < 300 * rtol, (method, err)


@pytest.mark.parametrize("method", ["bosh3", "dopri5", "tsit5"])
def test_tolerance_proportionality(method: str) -> None:
    """Tightening the tolerance 100× shrinks the global error by well over 10×."""
    y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    t = torch.linspace(0.0, 4.0, 5, dtype=torch.float64)
    exact = _linear_exact(y0, t)
    errs = [
        float(
            (
                odeint(_linear_field(torch.device("cpu")), y0, t, method=method, rtol=r, atol=r)
                - exact
            )
            .abs()
            .max()
        )
        for r in (1e-5, 1e-7)
    ]
    assert errs[1] < errs[0] / 10


@pytest.mark.parametrize("method", ["bosh3", "dopri5", "tsit5"])
def test_dense_output(method: str, device: torch.device) -> None:
    y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64, device=device)
    t = torch.tensor([0.0, 3.0], dtype=torch.float64, device=device)
    sol = odesolve(_linear_field(device), y0, t, method=method, rtol=1e-8, atol=1e-10, dense=True)
    q = torch.linspace(0.0, 3.0, 97, dtype=torch.float64, device=device)
    err = (sol.evaluate(q) - _linear_exact(y0, q)).abs().max()
    end_err = (sol.ys[-1] - _linear_exact(y0, t)[-1]).abs().max()
    # interpolation keeps the accuracy of the step ends (within a small factor)
    assert err <= 50 * end_err + 1e-9
    # the interpolant is continuous: at each accepted step's start it returns that step's y0
    starts = sol.stats.step_times
    at = sol.evaluate(starts)
    direct = odeint(
        _linear_field(device),
        y0,
        torch.tensor([*starts, 3.0], dtype=torch.float64, device=device),
        method=method,
        rtol=1e-8,
        atol=1e-10,
    )[:-1]
    assert (at - direct).abs().max() < 1e-6


@pytest.mark.parametrize("method", ["euler", "rk4", "dopri5"])
def test_decreasing_time(method: str) -> None:
    y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    t = torch.linspace(2.0, 0.0, 5, dtype=torch.float64)
    ys = odeint(
        _linear_field(torch.device("cpu")),
        y0,
        t,
        method=method,
        step_size=None if method == "dopri5" else 0.001,
    )
    exact = torch.stack([y0 @ torch.tensor(expm(A * float(s - 2.0))).T for s in t])
    assert (ys - exact).abs().max() < (1e-2 if method == "euler" else 1e-6)


@given(
    tensors(shape=(2, 2), min_value=-1.0, max_value=1.0),
    tensors(shape=(3, 2), min_value=-2.0, max_value=2.0),
)
def test_random_linear_systems_match_expm(a: torch.Tensor, y0: torch.Tensor) -> None:
    t = torch.tensor([0.0, 0.7, 1.5], dtype=torch.float64)
    ys = odeint(lambda t, y: y @ a.T, y0, t, method="tsit5", rtol=1e-9, atol=1e-9)
    exact = _linear_exact(y0, t, a.numpy())
    assert (ys - exact).abs().max() < 1e-6


def test_batched_fixed_step_equals_per_sample(device: torch.device) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    net = net.to(device=device, dtype=torch.float64)
    y0 = torch.randn(4, 3, dtype=torch.float64, device=device)
    t = torch.linspace(0, 1, 4, dtype=torch.float64, device=device)
    batched = odeint(lambda t, y: net(y), y0, t, method="rk4", step_size=0.1)
    single = torch.stack(
        [
            odeint(lambda t, y: net(y), y0[i : i + 1], t, method="rk4", step_size=0.1)[:, 0]
            for i in range(4)
        ],
        1,
    )
    torch.testing.assert_close(batched, single, rtol=1e-12, atol=1e-12)


# --- peers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["euler", "midpoint"])
def test_fixed_grid_equals_torchdiffeq(method: str) -> None:
    torchdiffeq = pytest.importorskip("torchdiffeq")
    net = torch.nn.Sequential(
        torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)
    ).double()
    y0 = torch.randn(5, 2, dtype=torch.float64)
    t = torch.linspace(0, 2, 9, dtype=torch.float64)
    ours = odeint(lambda t, y: net(y), y0, t, method=method)
    theirs = torchdiffeq.odeint(lambda t, y: net(y), y0, t, method=method)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_adaptive_agrees_with_torchdiffeq(method: str) -> None:
    torchdiffeq = pytest.importorskip("torchdiffeq")
    net = torch.nn.Sequential(
        torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)
    ).double()
    y0 = torch.randn(5, 2, dtype=torch.float64)
    t = torch.linspace(0, 2, 9, dtype=torch.float64)
    ours = odeint(lambda t, y: net(y), y0, t, method=method, rtol=1e-9, atol=1e-9)
    theirs = torchdiffeq.odeint(lambda t, y: net(y), y0, t, method=method, rtol=1e-9, atol=1e-9)
    assert (ours - theirs).abs().max() < 2e3 * 1e-9


# --- sensitivities --------------------------------------------------------------------------------


def _mlp(device: torch.device) -> torch.nn.Module:
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    return net.to(device=device, dtype=torch.float64)


class _Field(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(y) * (1 + 0.1 * torch.sin(t))


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "rk4"])
@pytest.mark.parametrize("direction", [1, -1])
def test_adjoint_and_checkpoint_match_autograd(
    method: str, direction: int, device: torch.device
) -> None:
    field = _Field(_mlp(device))
    y0 = torch.randn(3, 2, dtype=torch.float64, device=device)
    t = torch.linspace(0, 1.5, 4, dtype=torch.float64, device=device)
    if direction < 0:
        t = t.flip(0)
    weights = torch.randn(4, 3, 2, dtype=torch.float64, device=device)
    grads = {}
    for sens in ["autograd", "adjoint", "checkpoint"]:
        field.zero_grad()
        y = y0.clone().requires_grad_(True)
        kw = {"step_size": 0.05} if method == "rk4" else {"rtol": 1e-10, "atol": 1e-10}
        ys = odeint(field, y, t, method=method, sensitivity=sens, **kw)  # type: ignore[arg-type]
        (ys * weights).sum().backward()
        grads[sens] = [y.grad.clone()] + [p.grad.clone() for p in field.parameters()]  # type: ignore[union-attr]
    for a, b in zip(grads["autograd"], grads["checkpoint"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    tol = 1e-4 if method == "rk4" else 1e-6
    for a, b in zip(grads["autograd"], grads["adjoint"]):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_adjoint_seminorm_same_gradient_fewer_steps() -> None:
    field = _Field(_mlp(torch.device("cpu")))
    y0 = torch.randn(8, 2, dtype=torch.float64)
    t = torch.linspace(0, 3, 2, dtype=torch.float64)
    out = {}
    for semi in (True, False):
        field.zero_grad()
        stats = SolverStats()
        ys = odeint(
            field,
            y0,
            t,
            rtol=1e-6,
            atol=1e-6,
            sensitivity="adjoint",
            stats=stats,
            adjoint_seminorm=semi,
        )
        ys[-1].pow(2).sum().backward()
        out[semi] = (stats.nfe_adjoint, [p.grad.clone() for p in field.parameters()])  # type: ignore[union-attr]
    assert out[True][0] <= out[False][0]
    for a, b in zip(out[True][1], out[False][1]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("sens", ["autograd", "checkpoint"])
def test_gradcheck_fixed_step(sens: str) -> None:
    w = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    y0 = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 1, 3, dtype=torch.float64)

    def fn(y0: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return odeint(
            lambda t, y: torch.tanh(y @ w), y0, t, method="rk4", step_size=0.1, sensitivity=sens
        )  # type: ignore[arg-type]

    assert_gradcheck(fn, (y0, w))


@pytest.mark.slow
def test_gradcheck_adjoint() -> None:
    w = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    y0 = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 1, 3, dtype=torch.float64)

    def fn(y0: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return odeint(
            lambda t, y: torch.tanh(y @ w),
            y0,
            t,
            rtol=1e-12,
            atol=1e-12,
            sensitivity="adjoint",
            adjoint_params=(w,),
        )

    assert_gradcheck(fn, (y0, w), atol=1e-5, rtol=1e-4)


# --- statistics and estimates ---------------------------------------------------------------


def test_stats_count_every_evaluation() -> None:
    calls = [0]
    m = torch.tensor(A)

    def f(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return y @ m.T

    y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    sol = odesolve(
        f, y0, torch.linspace(0, 5, 3, dtype=torch.float64), method="dopri5", rtol=1e-4, atol=1e-4
    )
    s = sol.stats
    assert s.nfe == calls[0]
    # f(t0, y0) + the starting-step probe + six new stages per attempted step (FSAL)
    assert s.nfe == 2 + 6 * (s.n_accepted + s.n_rejected)
    assert len(s.error_estimates) == len(s.stiffness_estimates) == s.n_accepted
    assert all(float(e) <= 1.0 for e in s.error_estimates)
    assert sum(s.step_sizes) == pytest.approx(5.0)


def test_one_step_estimates_equal_hand_computation() -> None:
    lam = -3.0
    y0 = torch.tensor([1.0, -2.0], dtype=torch.float64)
    tab = TABLEAUX["dopri5"]
    h = 0.1
    stats = SolverStats()
    field = _CountedField(lambda t, y: lam * y + torch.sin(y), y0, stats, 1.0)
    step = _rk_step(field, tab, 0.0, h, y0, field(0.0, y0))
    # hand computation: stages, error, stiffness
    ks, gs = [], []
    for i in range(7):
        g = y0 + h * sum(
            (tab.a[i][j] * ks[j] for j in range(i)), torch.zeros(2, dtype=torch.float64)
        )
        gs.append(g)
        ks.append(lam * g + torch.sin(g))
    y1 = y0 + h * sum(b * k for b, k in zip(tab.b, ks))
    bhat = [b - e for b, e in zip(tab.b, tab.b_err)]  # type: ignore[arg-type]
    y1hat = y0 + h * sum(b * k for b, k in zip(bhat, ks))
    torch.testing.assert_close(step.y1, y1, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(step.err, y1 - y1hat, rtol=1e-9, atol=1e-14)
    expected_s = (ks[6] - ks[5]).norm() / (gs[6] - gs[5]).norm()
    torch.testing.assert_close(step.stiffness, expected_s, rtol=1e-12, atol=0.0)


def test_stiffness_estimate_is_eigenvalue_on_scalar_linear() -> None:
    y0 = torch.tensor([1.0], dtype=torch.float64)
    sol = odesolve(
        lambda t, y: -7.0 * y, y0, torch.tensor([0.0, 1.0], dtype=torch.float64), method="tsit5"
    )
    for s in sol.stats.stiffness_estimates:
        assert float(s) == pytest.approx(7.0, rel=1e-9)


def test_pi_and_integral_controllers_reach_tolerance() -> None:
    y0 = torch.tensor([[2.0, 0.0]], dtype=torch.float64)

    def f(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.stack([y[..., 1], 8.0 * (1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0]], -1)

    t = torch.tensor([0.0, 10.0], dtype=torch.float64)
    for ctrl in (PIController(), PIController.integral()):
        ys = odeint(f, y0, t, rtol=1e-7, atol=1e-7, controller=ctrl)
        ref = solve_ivp(
            lambda s, y: _vdp(s, y, 8.0),
            (0, 10),
            [2.0, 0.0],
            method="DOP853",
            rtol=1e-12,
            atol=1e-12,
        ).y[:, -1]
        assert np.abs(ys[-1, 0].numpy() - ref).max() < 1e-4


# --- errors ------------------------------------------------------------------------------------


def test_blow_up_raises_with_diagnostics() -> None:
    y0 = torch.tensor([1.0], dtype=torch.float64)
    with pytest.raises(ODESolverError) as info:
        odeint(lambda t, y: y * y, y0, torch.tensor([0.0, 2.0], dtype=torch.float64), dt_min=1e-9)
    msg = str(info.value)
    assert "t=" in msg and "dt=" in msg and "‖y‖=" in msg
    assert info.value.t == pytest.approx(1.0, abs=1e-2)  # y = 1/(1 − t) blows up at t = 1


def test_stiff_problem_reports_stiffness() -> None:
    y0 = torch.tensor([1.0], dtype=torch.float64)
    with pytest.raises(ODESolverError, match="max_steps=50 exceeded.*stiffness estimate") as info:
        odeint(
            lambda t, y: -1e5 * (y - torch.cos(t)),
            y0,
            torch.tensor([0.0, 1.0], dtype=torch.float64),
            max_steps=50,
        )
    assert info.value.stats.n_accepted + info.value.stats.n_rejected == 50


def test_nan_in_vector_field_is_reported() -> None:
    y0 = torch.tensor([1.0], dtype=torch.float64)

    def f(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.where(t > 0.5, torch.full_like(y, float("nan")), -y)

    with pytest.raises(ODESolverError, match="underflow") as info:
        odeint(f, y0, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert info.value.t == pytest.approx(0.5, abs=1e-3)


def test_bad_inputs() -> None:
    y0 = torch.zeros(3, 2)
    f = lambda t, y: -y  # noqa: E731
    with pytest.raises(ValueError, match=r"strictly increasing or strictly decreasing.*t\[1\]"):
        odeint(f, y0, torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"returned shape \(3, 1\) but y0 has shape \(3, 2\)"):
        odeint(lambda t, y: y[:, :1], y0, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="rtol"):
        odeint(f, y0, torch.tensor([0.0, 1.0]), rtol=0.0)
    with pytest.raises(ValueError, match="atol"):
        odeint(f, y0, torch.tensor([0.0, 1.0]), atol=-1.0)
    with pytest.raises(
        ValueError, match="valid methods: euler, midpoint, heun, rk4, bosh3, dopri5, tsit5"
    ):
        odeint(f, y0, torch.tensor([0.0, 1.0]), method="rk45")
    with pytest.raises(ValueError, match="step_size applies to fixed-step"):
        odeint(f, y0, torch.tensor([0.0, 1.0]), step_size=0.1)
    with pytest.raises(ValueError, match="does not differentiate w.r.t. t"):
        odeint(f, y0, torch.tensor([0.0, 1.0], requires_grad=True))
    with pytest.raises(ValueError, match="t must have 1 dimensions"):
        odeint(f, y0, torch.zeros(2, 2))
    with pytest.raises(TypeError, match="y0 must be a floating-point"):
        odeint(f, torch.zeros(3, dtype=torch.long), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="sensitivity"):
        odeint(f, y0, torch.tensor([0.0, 1.0]), sensitivity="backprop")  # type: ignore[arg-type]


def test_float32_and_dtype_follow_input(device: torch.device) -> None:
    y0 = torch.randn(4, 2, device=device)
    ys = odeint(lambda t, y: -y, y0, torch.linspace(0, 1, 3, device=device), rtol=1e-5, atol=1e-6)
    assert ys.dtype == torch.float32 and ys.device.type == device.type
    torch.testing.assert_close(ys[-1], y0 * math.exp(-1.0), rtol=1e-4, atol=1e-5)
