"""FlamePINN-1D: classical reference solvers, closures, hard constraint, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchloom.pinn.flame import FlameConfig, FlamePINN, flame_closures, reference_flame


@pytest.fixture(scope="module")
def bvp040() -> object:
    return reference_flame(FlameConfig(phi=0.40), "bvp")


@pytest.mark.parametrize(("phi", "s_L"), [(0.40, 0.268), (0.50, 0.395)])
def test_reference_reproduces_known_flame_speeds(phi: float, s_L: float) -> None:
    sol = reference_flame(FlameConfig(phi=phi), "bvp")
    assert abs(sol.s_L - s_L) / s_L < 0.01


def test_shooting_and_bvp_agree(bvp040: object) -> None:
    shot = reference_flame(FlameConfig(phi=0.40), "shooting", rel_tol=1e-9, n_grid=500)
    assert abs(shot.s_L - bvp040.s_L) / bvp040.s_L < 1e-5  # type: ignore[attr-defined]


def test_reference_fields_satisfy_energy_equation(bvp040: object) -> None:
    cfg = FlameConfig(phi=0.40)
    sol = bvp040
    x, T = sol.x, sol.T  # type: ignore[attr-defined]
    Tx = np.gradient(T, x)
    Txx = np.gradient(Tx, x)
    k = cfg.rho_in * sol.s_L * cfg.cp  # type: ignore[attr-defined]
    r = Tx - cfg.lam * Txx / k - cfg.qF * sol.omega / k  # type: ignore[attr-defined]
    inner = slice(5, -5)
    assert np.abs(r[inner]).max() < 1e-2 * np.abs(Tx).max()
    assert T[0] == pytest.approx(cfg.T_in) and Tx[0] == pytest.approx(cfg.grad_T_in, rel=0.05)
    assert T.max() <= cfg.T_max + 1e-6


def test_closures_conserve_mass_and_momentum() -> None:
    cfg = FlameConfig(phi=0.5)
    T = torch.linspace(cfg.T_in, cfg.T_max, 50, dtype=torch.float64)
    s = 0.39
    f = flame_closures(T, s, cfg)
    flux = f["rho"] * f["u"]
    torch.testing.assert_close(flux, torch.full_like(flux, cfg.rho_in * s))
    p = f["rho"] * cfg.Rg * T
    mom = p + f["rho"] * f["u"] ** 2
    torch.testing.assert_close(mom, torch.full_like(mom, cfg.p_in + cfg.rho_in * s**2))
    assert float(f["u"][0]) == pytest.approx(s) and float(f["YF"][-1]) == pytest.approx(
        0.0, abs=1e-12
    )


def test_hard_constraint_bounds_temperature() -> None:
    cfg = FlameConfig()
    torch.manual_seed(0)
    m = FlamePINN(cfg).double()
    with torch.no_grad():
        for p in m.net.parameters():
            p.mul_(30.0)  # saturate the sigmoid on purpose
    T = m(torch.linspace(0, cfg.length, 200, dtype=torch.float64).reshape(-1, 1))
    assert bool((T >= cfg.T_in).all() and (T <= cfg.T_max).all())


def test_residual_matches_finite_differences_of_the_network() -> None:
    cfg = FlameConfig()
    torch.manual_seed(0)
    m = FlamePINN(cfg, s_L_init=0.27).double()
    x = torch.linspace(0.2e-3, 1.2e-3, 7, dtype=torch.float64).reshape(-1, 1)
    r = m.residual(x).detach()
    h = 1e-7
    with torch.no_grad():
        T, Tp, Tm = m(x), m(x + h), m(x - h)
        Tx, Txx = (Tp - Tm) / (2 * h), (Tp - 2 * T + Tm) / h**2
        s = float(m.s_L)
        k = cfg.rho_in * s * cfg.cp
        om = flame_closures(T, s, cfg)["omega"]
        r_fd = (Tx - cfg.lam * Txx / k - cfg.qF * om / k) * cfg.length / cfg.T_max
    torch.testing.assert_close(r, r_fd, rtol=1e-3, atol=1e-4)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="T_in"):
        FlameConfig(T_in=-10.0)
    with pytest.raises(ValueError, match="zero width"):
        FlameConfig(length=0.0)
    with pytest.raises(ValueError, match="p_in"):
        FlameConfig(p_in=-1.0)
    with pytest.raises(ValueError, match="positive absolute"):
        flame_closures(torch.tensor([-3.0, 300.0]), 0.3, FlameConfig())
    with pytest.raises(ValueError, match="learn"):
        FlamePINN(FlameConfig(), learn=("Ea",))
    with pytest.raises(ValueError, match="shape"):
        FlamePINN(FlameConfig())(torch.zeros(3))
    with pytest.raises(ValueError, match="method"):
        reference_flame(FlameConfig(), "euler")  # type: ignore[arg-type]


def test_warmup_fits_the_z_profile_and_leaves_parameters_alone() -> None:
    torch.manual_seed(0)
    cfg = FlameConfig(phi=0.50)
    m = FlamePINN(cfg, learn=("lam",)).double()
    before = (float(m.s_L), float(m.lam))
    x = torch.tensor([[0.1], [0.4], [0.6], [0.9]], dtype=torch.float64) * cfg.length
    T0 = m(x).detach()
    misfit = m.warmup(steps=200, lr=1e-2)
    T = m(x).detach().ravel()
    assert misfit < 1e-3
    assert (float(m.s_L), float(m.lam)) == before  # only the network moves
    assert float(T[0]) < cfg.T_in + 0.1 * (cfg.T_max - cfg.T_in)  # cold before the front
    assert float(T[2]) > cfg.T_max - 0.1 * (cfg.T_max - cfg.T_in)  # burnt after it
    assert not torch.allclose(T0.ravel(), T)
    with pytest.raises(ValueError, match="front"):
        m.warmup(steps=1, front=(0.6, 0.5))
