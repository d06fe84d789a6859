"""FlamePINN-1D: a 1D freely-propagating premixed flame, simplified model (case 1 of the paper).

Steady 1D premixed flame in the flame frame, one-step irreversible chemistry, constant
``λ, c_p``, ideal gas, low Mach number. Mass and momentum give closed forms in terms of ``T``
and the laminar flame speed ``s_L`` (the inlet velocity, an eigenvalue of the problem):

.. code-block:: text

    c   = s_L + R_g T_in / s_L
    u   = ½ [c − √(c² − 4 R_g T)]     (subsonic root of ρu = ρ_in s_L, p + ρu² const)
    ρ   = ρ_in s_L / u
    Y_F = Y_F,in + c_p (T_in − T) / q_F                 (unit Lewis number)
    ω   = A exp(−E_a / (R T)) (ρ Y_F)^n

and the energy equation ``T_x − λ T_xx / (ρ_in s_L c_p) − ω q_F / (ρ_in s_L c_p) = 0`` on
``x ∈ [0, L]`` with ``T(0) = T_in`` and ``T_x(0) = (T_x)_in`` (the flame is anchored by the
inlet gradient, as in the paper's setup; with ``L = 1.5 mm`` and ``(T_x)_in = 10⁵ K/m``).

Normalisation used by the PINN (and why): ``x̂ = x / L ∈ [0, 1]`` and ``θ = T / T_max``, so the
network sees an O(1) input range and the residual, multiplied by ``L / T_max``, reads
``θ_x̂ − (λ / (ρ_in s_L c_p L)) θ_x̂x̂ − q_F ω L / (ρ_in s_L c_p T_max)``; every term is O(1–10)
across the thin (≈0.1 mm) flame layer instead of O(10⁷) K/m in SI units, which keeps Adam's
step sizes meaningful. The hard constraint ``T = T_in + sigmoid(N(x̂)) (T_max − T_in)`` keeps
``T`` within ``(T_in, T_max)``, so ``Y_F ≥ 0`` and ``ω`` stay finite throughout training.

The classical reference (:func:`reference_flame`) shoots from the inlet with
``scipy.integrate.solve_ivp`` and bisects on ``s_L``: too slow a flame flashes back (``T_x``
turns negative), too fast a flame overshoots ``T_max``. :func:`reference_flame` with
``method="bvp"`` solves the same problem with ``scipy.integrate.solve_bvp`` and ``s_L`` as an
unknown parameter (a third boundary condition ``T_x(L) = 0``), an independent check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from torchloom.core.checks import check_floating, check_int, check_positive
from torchloom.pinn.residual import MLP, gradient, soft_boundary_loss

__all__ = [
    "FlameConfig",
    "FlamePINN",
    "FlameSolution",
    "flame_closures",
    "reference_flame",
]


@dataclass(frozen=True)
class FlameConfig:
    """Physical setup of the simplified freely-propagating flame (SI units).

    Attributes:
        phi: equivalence ratio (CH4/O2-like fuel: ``Y_F,in = φ / (φ + 4)``).
        T_in: inlet temperature (K).
        p_in: inlet pressure (Pa).
        grad_T_in: inlet temperature gradient anchoring the flame (K/m).
        length: domain length ``L`` (m).
        W: molar mass (kg/mol).
        lam: thermal conductivity ``λ`` (W/(m K)).
        cp: heat capacity (J/(kg K)).
        qF: fuel heating value (J/kg).
        R: universal gas constant (J/(mol K)).
        A: pre-exponential factor.
        Ea: activation energy (J/mol).
        order: reaction order ``n``.
    """

    phi: float = 0.4
    T_in: float = 298.0
    p_in: float = 101325.0
    grad_T_in: float = 1.0e5
    length: float = 1.5e-3
    W: float = 28.97e-3
    lam: float = 2.6e-2
    cp: float = 1000.0
    qF: float = 5.0e7
    R: float = 8.3145
    A: float = 1.4e8
    Ea: float = 1.214172e5
    order: float = 1.6

    def __post_init__(self) -> None:
        for name in ("phi", "W", "lam", "cp", "qF", "R", "A", "Ea", "order", "grad_T_in"):
            check_positive(getattr(self, name), name)
        if not self.T_in > 0:
            raise ValueError(f"T_in must be a positive absolute temperature (K), got {self.T_in}")
        if not self.p_in > 0:
            raise ValueError(f"p_in must be a positive pressure (Pa), got {self.p_in}")
        if not self.length > 0:
            raise ValueError(f"length must be > 0 (a domain of zero width), got {self.length}")

    @property
    def Rg(self) -> float:
        """Specific gas constant ``R / W``."""
        return self.R / self.W

    @property
    def YF_in(self) -> float:
        """Inlet fuel mass fraction ``φ / (φ + 4)``."""
        return self.phi / (self.phi + 4.0)

    @property
    def rho_in(self) -> float:
        """Inlet density ``p_in / (R_g T_in)``."""
        return self.p_in / (self.Rg * self.T_in)

    @property
    def T_max(self) -> float:
        """Adiabatic flame temperature ``T_in + q_F Y_F,in / c_p``."""
        return self.T_in + self.qF * self.YF_in / self.cp


def flame_closures(
    T: torch.Tensor,
    s_L: torch.Tensor | float,
    cfg: FlameConfig,
    *,
    A: torch.Tensor | float | None = None,
) -> dict[str, torch.Tensor]:
    """Velocity, density, fuel mass fraction and reaction rate as functions of ``T``.

    Args:
        T: temperature (K), any shape.
        s_L: laminar flame speed (m/s), scalar.
        cfg: the physical setup.
        A: pre-exponential factor overriding ``cfg.A`` (a trainable scalar in inverse problems).

    Returns:
        ``{"u", "rho", "YF", "omega"}``, each shaped like ``T``.
    """
    check_floating(T, "T")
    if bool((T.detach() <= 0).any()):
        raise ValueError(f"T must be a positive absolute temperature, got min {float(T.min())} K")
    A_ = cfg.A if A is None else A
    c = s_L + cfg.Rg * cfg.T_in / s_L
    u = 0.5 * (c - torch.sqrt(c**2 - 4.0 * cfg.Rg * T))
    rho = cfg.rho_in * s_L / u
    YF = cfg.YF_in + cfg.cp * (cfg.T_in - T) / cfg.qF
    omega = A_ * torch.exp(-cfg.Ea / (cfg.R * T)) * (YF * rho).clamp_min(0.0) ** cfg.order
    return {"u": u, "rho": rho, "YF": YF, "omega": omega}


@dataclass
class FlameSolution:
    """Fields of a flame solution on a grid.

    Attributes:
        s_L: laminar flame speed (m/s).
        x: grid (m), shape ``(M,)``.
        T, u, rho, YF, omega: fields on the grid, shape ``(M,)``.
    """

    s_L: float
    x: np.ndarray
    T: np.ndarray
    u: np.ndarray
    rho: np.ndarray
    YF: np.ndarray
    omega: np.ndarray


def _fields(cfg: FlameConfig, s_L: float, x: np.ndarray, T: np.ndarray) -> FlameSolution:
    Tt = torch.from_numpy(np.asarray(T, dtype=np.float64))
    f = {k: v.numpy() for k, v in flame_closures(Tt, float(s_L), cfg).items()}
    return FlameSolution(float(s_L), x, np.asarray(T), f["u"], f["rho"], f["YF"], f["omega"])


def _rhs_np(cfg: FlameConfig, s: float) -> Callable[[float, np.ndarray], np.ndarray]:
    Rg, T_in, rho_in = cfg.Rg, cfg.T_in, cfg.rho_in

    def rhs(x: float, y: np.ndarray) -> np.ndarray:
        T, G = y[0], y[1]
        c = s + Rg * T_in / s
        u = 0.5 * (c - np.sqrt(np.maximum(c * c - 4.0 * Rg * T, 0.0)))
        rho = rho_in * s / u
        YF = np.maximum(cfg.YF_in + cfg.cp * (T_in - T) / cfg.qF, 0.0)
        w = cfg.A * np.exp(-cfg.Ea / (cfg.R * T)) * (YF * rho) ** cfg.order
        return np.array([G, (rho_in * s * cfg.cp * G - w * cfg.qF) / cfg.lam])

    return rhs


def _shoot(cfg: FlameConfig, s: float, dense: bool = False) -> tuple[int, Any]:
    from scipy.integrate import solve_ivp

    def flashback(x: float, y: np.ndarray) -> float:
        return float(y[1])

    def blowout(x: float, y: np.ndarray) -> float:
        return float(y[0] - cfg.T_max)

    flashback.terminal, flashback.direction = True, -1  # type: ignore[attr-defined]
    blowout.terminal, blowout.direction = True, 1  # type: ignore[attr-defined]
    sol = solve_ivp(
        _rhs_np(cfg, s),
        (0.0, cfg.length),
        [cfg.T_in, cfg.grad_T_in],
        method="LSODA",
        events=[flashback, blowout],
        rtol=1e-10,
        atol=1e-8,
        dense_output=dense,
    )
    if sol.t_events[0].size:
        return -1, sol
    return 1, sol  # overshoot, or still rising at x = L: the flame is pushed downstream


def reference_flame(
    cfg: FlameConfig,
    method: Literal["shooting", "bvp"] = "shooting",
    *,
    n_grid: int = 2001,
    bracket: tuple[float, float] = (0.1, 3.0),
    rel_tol: float = 1e-12,
) -> FlameSolution:
    """Classical solution of the flame eigenvalue problem (flame speed and fields).

    Args:
        cfg: the physical setup.
        method: ``"shooting"`` (inlet shooting with ``solve_ivp`` + bisection on ``s_L``) or
            ``"bvp"`` (``solve_bvp`` with ``s_L`` an unknown parameter and ``T_x(L) = 0``).
        n_grid: number of output grid points on ``[0, L]``.
        bracket: initial bracket for ``s_L`` (m/s), shooting only.
        rel_tol: relative bracket width at which bisection stops.

    Returns:
        A :class:`FlameSolution`.
    """
    x = np.linspace(0.0, cfg.length, n_grid)
    if method == "shooting":
        lo, hi = bracket
        if _shoot(cfg, lo)[0] != -1 or _shoot(cfg, hi)[0] != 1:
            raise ValueError(f"bracket {bracket} does not contain the flame speed")
        while hi - lo > rel_tol * hi:
            mid = 0.5 * (lo + hi)
            if _shoot(cfg, mid)[0] < 0:
                lo = mid
            else:
                hi = mid
        _, sol = _shoot(cfg, lo, dense=True)  # follows the separatrix until T_x = 0 at ≈ T_max
        x_end = float(sol.t[-1])
        T = np.where(x <= x_end, sol.sol(np.minimum(x, x_end))[0], sol.y[0, -1])
        return _fields(cfg, lo, x, T)
    if method == "bvp":
        from scipy.integrate import solve_bvp

        def fun(xs: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
            return _rhs_np(cfg, float(p[0]))(0.0, y)

        def bc(ya: np.ndarray, yb: np.ndarray, p: np.ndarray) -> np.ndarray:
            return np.array([ya[0] - cfg.T_in, ya[1] - cfg.grad_T_in, yb[1]])

        # generic initial guess: a tanh front at L/3, width L/20, and s_L = 0.3 m/s
        xg = np.linspace(0.0, cfg.length, 400)
        w = cfg.length / 20
        prof = 0.5 * (1 + np.tanh((xg - cfg.length / 3) / w))
        dT = cfg.T_max - cfg.T_in
        y0 = np.stack(
            [cfg.T_in + dT * prof, dT * 0.5 / w / np.cosh((xg - cfg.length / 3) / w) ** 2]
        )
        res = solve_bvp(fun, bc, xg, y0, p=[0.3], tol=1e-6, max_nodes=200000)
        if not res.success:
            raise RuntimeError(f"solve_bvp did not converge: {res.message}")
        return _fields(cfg, float(res.p[0]), x, res.sol(x)[0])
    raise ValueError(f"method must be 'shooting' or 'bvp', got {method!r}")


class FlamePINN(nn.Module):
    """FlamePINN-1D for the simplified freely-propagating flame.

    ``T(x) = T_in + sigmoid(N(x / L)) (T_max − T_in)``; the flame speed ``s_L = s₀ exp(σ)``
    is a trainable eigenvalue; in inverse problems ``λ`` and/or ``A`` are trainable too
    (``λ = λ₀ exp(ℓ)``, ``A = A₀ exp(a)``, with ``λ₀, A₀`` the initial guesses).

    Args:
        cfg: the physical setup (its ``lam``/``A`` are the true values for forward problems).
        s_L_init: initial flame speed guess (m/s).
        learn: which of ``"lam"``, ``"A"`` are trainable (inverse problem); ``s_L`` always is.
        lam_init: initial ``λ`` guess when learned (default ``cfg.lam``).
        A_init: initial ``A`` guess when learned (default ``cfg.A``).
        width: hidden width of ``N``.
        depth: hidden layers of ``N``.
        input_scale: the network sees ``input_scale · (2 x / L − 1)``; values > 1 let a
            ``tanh`` network resolve the thin flame layer with its initial weights.

    Shapes:
        x: ``(N, 1)`` in metres → ``T``: ``(N, 1)`` in K.
    """

    def __init__(
        self,
        cfg: FlameConfig,
        *,
        s_L_init: float = 0.3,
        learn: tuple[str, ...] = (),
        lam_init: float | None = None,
        A_init: float | None = None,
        width: int = 32,
        depth: int = 3,
        input_scale: float = 5.0,
    ) -> None:
        super().__init__()
        check_positive(s_L_init, "s_L_init")
        bad = set(learn) - {"lam", "A"}
        if bad:
            raise ValueError(f"learn may contain 'lam' and 'A', got {sorted(bad)}")
        self.cfg = cfg
        self.input_scale = check_positive(input_scale, "input_scale")
        self.net = MLP(1, 1, width=width, depth=depth)
        self.s0 = s_L_init
        self.log_s = nn.Parameter(torch.zeros(()))
        self.lam0 = check_positive(lam_init, "lam_init") if lam_init is not None else cfg.lam
        self.A0 = check_positive(A_init, "A_init") if A_init is not None else cfg.A
        self.log_lam = nn.Parameter(torch.zeros(()), requires_grad="lam" in learn)
        self.log_A = nn.Parameter(torch.zeros(()), requires_grad="A" in learn)

    @property
    def s_L(self) -> torch.Tensor:
        """Current flame speed (m/s), scalar."""
        return self.s0 * torch.exp(self.log_s)

    @property
    def lam(self) -> torch.Tensor:
        """Current thermal conductivity (W/(m K)), scalar."""
        return self.lam0 * torch.exp(self.log_lam)

    @property
    def A(self) -> torch.Tensor:
        """Current pre-exponential factor, scalar."""
        return self.A0 * torch.exp(self.log_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Temperature at ``x``.

        Args:
            x: positions in metres, ``(N, 1)``.

        Returns:
            ``T`` in K, ``(N, 1)``.
        """
        check_floating(x, "x")
        if x.dim() != 2 or x.shape[1] != 1:
            raise ValueError(f"x must have shape (N, 1), got {tuple(x.shape)}")
        cfg = self.cfg
        out: torch.Tensor = cfg.T_in + torch.sigmoid(
            self.net(self.input_scale * (2.0 * x / cfg.length - 1.0))
        ) * (cfg.T_max - cfg.T_in)
        return out

    def warmup(
        self,
        steps: int = 1000,
        lr: float = 1e-3,
        front: tuple[float, float] = (0.3, 0.5),
        n_points: int = 100,
    ) -> float:
        """Z-shape warm-up of the network before the physics-informed training (as in the paper).

        Fits ``T`` by Adam to a piecewise-linear "Z" profile: ``T_in`` up to ``front[0] · L``,
        a linear rise to ``T_max`` at ``front[1] · L``, ``T_max`` beyond. Without it the
        random initial network places the flame where the weakly constrained preheat zone
        happens to put it: ``s_L`` still comes out near the reference, but the flame sits
        downstream (the inlet conditions fix the position only through the exponentially
        small preheat-zone residual). Only the network is trained here, not ``s_L``/``λ``/``A``.

        Args:
            steps: Adam steps.
            lr: learning rate.
            front: start and end of the ramp as fractions of ``L``.
            n_points: fitting points on ``[0, L]``.

        Returns:
            The final mean squared misfit of ``T / T_max``.
        """
        check_int(steps, "steps", minimum=0)
        lo, hi = front
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"front must satisfy 0 <= front[0] < front[1] <= 1, got {front}")
        cfg = self.cfg
        p = next(self.net.parameters())
        xh = torch.linspace(0.0, 1.0, n_points, dtype=p.dtype, device=p.device).reshape(-1, 1)
        prof = ((xh - lo) / (hi - lo)).clamp(0.0, 1.0)
        target = (cfg.T_in + prof * (cfg.T_max - cfg.T_in)) / cfg.T_max
        opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        loss = torch.zeros(())
        for _ in range(steps):
            loss = ((self(xh * cfg.length) / cfg.T_max - target) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(loss.detach())

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised energy residual (see the module docstring) at ``x``.

        Args:
            x: positions in metres, ``(N, 1)`` (a leaf; gradients are taken with respect to it).

        Returns:
            ``(N, 1)``; zero for an exact solution.
        """
        cfg = self.cfg
        xh = (x / cfg.length).detach().requires_grad_(True)
        theta = self(xh * cfg.length) / cfg.T_max
        th_x = gradient(theta, xh)
        th_xx = gradient(th_x, xh)
        s = self.s_L
        omega = flame_closures(theta * cfg.T_max, s, cfg, A=self.A)["omega"]
        k = self.lam / (cfg.rho_in * s * cfg.cp * cfg.length)
        src = cfg.qF * omega * cfg.length / (cfg.rho_in * s * cfg.cp * cfg.T_max)
        r: torch.Tensor = th_x - k * th_xx - src
        return r

    def losses(
        self,
        x_col: torch.Tensor,
        x_obs: torch.Tensor | None = None,
        T_obs: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Loss terms: PDE residual, the two inlet conditions, and (optionally) data.

        Args:
            x_col: collocation points (m), ``(N, 1)``.
            x_obs: observation points (m), ``(M, 1)``.
            T_obs: observed temperatures (K), ``(M, 1)``.

        Returns:
            ``{"pde", "bc_T", "bc_gradT"[, "data"]}``, scalars: the residual as in the module
            docstring, ``((T(0) − T_in) / T_max)²``, ``(T_x(0) / (T_x)_in − 1)²`` and the mean
            squared misfit of ``T / T_max`` at the observations.
        """
        cfg = self.cfg
        terms = {"pde": (self.residual(x_col) ** 2).mean()}
        x0 = torch.zeros(1, 1, dtype=x_col.dtype, device=x_col.device, requires_grad=True)
        T0 = self(x0)
        terms["bc_T"] = ((T0 - cfg.T_in) / cfg.T_max).pow(2).mean()
        terms["bc_gradT"] = (gradient(T0, x0) / cfg.grad_T_in - 1.0).pow(2).mean()
        if x_obs is not None and T_obs is not None:
            terms["data"] = soft_boundary_loss(self(x_obs) / cfg.T_max, T_obs / cfg.T_max)
        elif (x_obs is None) != (T_obs is None):
            raise ValueError("x_obs and T_obs must be given together")
        return terms

    def fields(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """All fields at ``x`` (no gradient tracking).

        Args:
            x: positions (m), ``(N, 1)``.

        Returns:
            ``{"T", "u", "rho", "YF", "omega"}``, each ``(N, 1)``.
        """
        with torch.no_grad():
            T = self(x)
            out = flame_closures(T, self.s_L, self.cfg, A=self.A)
        out["T"] = T
        return out
