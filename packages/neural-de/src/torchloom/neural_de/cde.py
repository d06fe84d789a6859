"""Neural controlled differential equations for irregular time series (Kidger et al. 2020).

Observations ``x`` ``(B, N, C)`` at times ``t`` ``(N,)`` (NaN = missing) are turned into a
continuous control path ``X(t)`` by :func:`linear_path`, :func:`natural_cubic_path` or
:func:`hermite_cubic_path` (cubic Hermite with backward differences: causal, C¹). The CDE

    z(t₀) = ζ(X(t₀)),     dz(t) = f_θ(z(t)) dX(t)  ⇔  ż = f_θ(z) · dX/dt,

is solved with :func:`~torchloom.neural_de.odeint`; a linear readout of ``z(t_N)`` (or of every
``z(t_i)``) gives the prediction. :func:`observation_channels` adds the time channel and the
cumulative observation count per channel, the recommended way to hand the model the
irregularity itself (Kidger 2022, §3.5).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from torchloom.core.checks import check_floating, check_ndim
from torchloom.neural_de.ode import odeint

__all__ = [
    "CubicPath",
    "NeuralCDE",
    "hermite_cubic_path",
    "linear_path",
    "natural_cubic_path",
    "observation_channels",
]


def _check_series(x: object, t: object) -> tuple[Tensor, Tensor]:
    x = check_floating(x, "x")
    check_ndim(x, "x", 3, "(B, N, C)")
    t = check_floating(t, "t")
    check_ndim(t, "t", 1, "(N,)")
    if t.shape[0] != x.shape[1]:
        raise ValueError(
            f"t has {t.shape[0]} times but x has {x.shape[1]} observations (x shape "
            f"{tuple(x.shape)}, t shape {tuple(t.shape)})"
        )
    if t.shape[0] < 2:
        raise ValueError(f"need at least 2 observation times, got {t.shape[0]}")
    if not bool((t[1:] > t[:-1]).all()):
        raise ValueError("t must be strictly increasing")
    return x, t.to(x.dtype)


def _fill_missing(x: Tensor, t: Tensor) -> Tensor:
    """Replace NaNs by linear interpolation in time between the neighbouring observations of the
    same channel (constant extrapolation before the first / after the last one)."""
    mask = ~torch.isnan(x)
    if bool(mask.all()):
        return x
    if not bool(mask.any(1).all()):
        raise ValueError("x has a (batch, channel) with no observed value at all")
    n = x.shape[1]
    idx = torch.arange(n, device=x.device).view(1, n, 1).expand_as(x)
    prev = torch.where(mask, idx, torch.full_like(idx, -1)).cummax(1).values
    nxt = torch.where(mask, idx, torch.full_like(idx, n)).flip(1).cummin(1).values.flip(1)
    prev_c, nxt_c = prev.clamp(0, n - 1), nxt.clamp(0, n - 1)
    filled = torch.nan_to_num(x)
    xp, xn = filled.gather(1, prev_c), filled.gather(1, nxt_c)
    tt = t.view(1, n, 1).expand_as(x)
    tp, tn = tt.gather(1, prev_c), tt.gather(1, nxt_c)
    w = ((tt - tp) / (tn - tp).clamp_min(torch.finfo(x.dtype).tiny)).clamp(0, 1)
    interp = xp + w * (xn - xp)
    interp = torch.where(prev < 0, xn, interp)
    interp = torch.where(nxt >= n, xp, interp)
    return torch.where(mask, x, interp)


class CubicPath:
    """Piecewise cubic ``X(t) = aᵢ + bᵢs + cᵢs² + dᵢs³``, ``s = t − tᵢ`` on ``[tᵢ, tᵢ₊₁]``.

    Coefficients ``a, b, c, d`` are ``(B, N−1, C)``; linear interpolation is the case
    ``c = d = 0``. Outside ``[t₀, t_N]`` the end pieces are extended.
    """

    def __init__(self, t: Tensor, a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> None:
        self.t, self.a, self.b, self.c, self.d = t, a, b, c, d

    @property
    def channels(self) -> int:
        return self.a.shape[-1]

    def _locate(self, t: Tensor | float) -> tuple[Tensor, Tensor]:
        tt = torch.as_tensor(t, dtype=self.a.dtype, device=self.a.device)
        index = torch.bucketize(tt.detach(), self.t.detach()).sub(1).clamp(0, self.a.shape[1] - 1)
        return tt - self.t[index], index

    def evaluate(self, t: Tensor | float) -> Tensor:
        """``X(t)``: ``(B, C)`` for a scalar ``t``."""
        s, i = self._locate(t)
        return self.a[:, i] + s * (self.b[:, i] + s * (self.c[:, i] + s * self.d[:, i]))

    def derivative(self, t: Tensor | float) -> Tensor:
        """``dX/dt``: ``(B, C)`` for a scalar ``t``."""
        s, i = self._locate(t)
        return self.b[:, i] + s * (2 * self.c[:, i] + 3 * s * self.d[:, i])


def linear_path(x: Tensor, t: Tensor) -> CubicPath:
    """Piecewise-linear interpolation of ``x`` ``(B, N, C)`` at ``t`` ``(N,)`` (NaNs filled)."""
    x, t = _check_series(x, t)
    x = _fill_missing(x, t)
    h = (t[1:] - t[:-1]).view(1, -1, 1)
    slope = (x[:, 1:] - x[:, :-1]) / h
    zero = torch.zeros_like(slope)
    return CubicPath(t, x[:, :-1], slope, zero, zero)


def hermite_cubic_path(x: Tensor, t: Tensor) -> CubicPath:
    """Cubic Hermite interpolation with backward differences (Morrill et al. 2021).

    On ``[tᵢ, tᵢ₊₁]`` the slope at the left end is the previous interval's difference quotient,
    at the right end the current one's, so ``X`` on an interval depends only on observations up
    to its right end (usable online) and is C¹.
    """
    x, t = _check_series(x, t)
    x = _fill_missing(x, t)
    h = (t[1:] - t[:-1]).view(1, -1, 1)
    slope = (x[:, 1:] - x[:, :-1]) / h
    m0 = torch.cat([slope[:, :1], slope[:, :-1]], 1)
    m1 = slope
    a = x[:, :-1]
    dx = x[:, 1:] - x[:, :-1]
    c = (3 * dx / h - 2 * m0 - m1) / h
    d = (m0 + m1 - 2 * dx / h) / h**2
    return CubicPath(t, a, m0, c, d)


def natural_cubic_path(x: Tensor, t: Tensor) -> CubicPath:
    """Natural cubic spline (``X'' = 0`` at both ends) through every observation.

    Second derivatives ``Mᵢ`` solve ``hᵢ₋₁Mᵢ₋₁ + 2(hᵢ₋₁ + hᵢ)Mᵢ + hᵢMᵢ₊₁ =
    6((xᵢ₊₁ − xᵢ)/hᵢ − (xᵢ − xᵢ₋₁)/hᵢ₋₁)``. Not causal: the path at time ``t`` depends on later
    observations (fine for offline classification, as in Kidger et al. 2020).
    """
    x, t = _check_series(x, t)
    x = _fill_missing(x, t)
    n = t.shape[0]
    h = t[1:] - t[:-1]
    slope = (x[:, 1:] - x[:, :-1]) / h.view(1, -1, 1)
    m = torch.zeros_like(x)
    if n > 2:
        k = n - 2
        system = torch.zeros(k, k, dtype=x.dtype, device=x.device)
        rng = torch.arange(k, device=x.device)
        system[rng, rng] = 2 * (h[:-1] + h[1:])
        system[rng[1:], rng[:-1]] = h[1:-1]
        system[rng[:-1], rng[1:]] = h[1:-1]
        rhs = 6 * (slope[:, 1:] - slope[:, :-1])  # (B, k, C)
        m[:, 1:-1] = torch.linalg.solve(system, rhs)
    hh = h.view(1, -1, 1)
    a = x[:, :-1]
    b = slope - hh * (2 * m[:, :-1] + m[:, 1:]) / 6
    c = m[:, :-1] / 2
    d = (m[:, 1:] - m[:, :-1]) / (6 * hh)
    return CubicPath(t, a, b, c, d)


def observation_channels(x: Tensor, t: Tensor) -> Tensor:
    """``(B, N, C) -> (B, N, 1 + 2C)``: ``[t, x, cumulative observation count per channel]``.

    Missing values stay NaN in the ``x`` block (the path constructors fill them); the count
    channels tell the model where the data were observed.
    """
    x, t = _check_series(x, t)
    counts = (~torch.isnan(x)).to(x.dtype).cumsum(1)
    time = t.view(1, -1, 1).expand(x.shape[0], -1, 1)
    return torch.cat([time, x, counts], -1)


class _CDEField(nn.Module):
    def __init__(self, hidden: int, channels: int, width: int) -> None:
        super().__init__()
        self.hidden, self.channels = hidden, channels
        self.net = nn.Sequential(
            nn.Linear(hidden, width), nn.Softplus(), nn.Linear(width, hidden * channels), nn.Tanh()
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(z.shape[0], self.hidden, self.channels)


class NeuralCDE(nn.Module):
    """``z(t₀) = ζ(X(t₀))``, ``ż = f_θ(z)·dX/dt``, output ``ℓ(z(t_N))`` (Kidger et al. 2020).

    ``f_θ(z)`` is an MLP to ``(hidden, channels)`` with a final tanh (keeps the field bounded).

    Shapes: ``path`` has ``C = input_channels``; output ``(B, output_channels)``, or
    ``(B, N, output_channels)`` with ``return_sequence=True``.
    """

    def __init__(
        self, input_channels: int, hidden_channels: int, output_channels: int, width: int = 64
    ) -> None:
        super().__init__()
        self.input_channels = input_channels
        self.initial = nn.Linear(input_channels, hidden_channels)
        self.field = _CDEField(hidden_channels, input_channels, width)
        self.readout = nn.Linear(hidden_channels, output_channels)

    def vector_field(self, path: CubicPath) -> nn.Module:
        """The ODE ``ż = f_θ(z)·dX/dt`` driven by ``path``, as ``g(t, z)`` for ``odeint``."""
        return _Driven(self.field, path)

    def forward(
        self,
        path: CubicPath,
        *,
        method: str = "rk4",
        step_size: float | None = None,
        rtol: float = 1e-4,
        atol: float = 1e-6,
        sensitivity: Literal["autograd", "adjoint", "checkpoint"] = "autograd",
        return_sequence: bool = False,
    ) -> Tensor:
        if not isinstance(path, CubicPath):
            raise TypeError(f"path must be a CubicPath, got {type(path).__name__}")
        if path.channels != self.input_channels:
            raise ValueError(
                f"path has {path.channels} channels but the model expects {self.input_channels}"
            )
        z0 = self.initial(path.evaluate(path.t[0]))
        # Fixed steps land on every knot, where the control's derivative may jump.
        fixed = method in ("euler", "midpoint", "heun", "rk4")
        times = path.t if return_sequence or fixed else path.t[[0, -1]]
        kw: dict[str, object] = {"method": method, "sensitivity": sensitivity}
        if step_size is not None:
            kw["step_size"] = step_size
        if method in ("bosh3", "dopri5", "tsit5"):
            kw.update(rtol=rtol, atol=atol)
        zs = odeint(self.vector_field(path), z0, times, **kw)  # type: ignore[arg-type]
        if return_sequence:
            return self.readout(zs).transpose(0, 1)
        return self.readout(zs[-1])


class _Driven(nn.Module):
    def __init__(self, field: nn.Module, path: CubicPath) -> None:
        super().__init__()
        self.field = field
        self.path = path

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return (self.field(z) @ self.path.derivative(t).unsqueeze(-1)).squeeze(-1)
