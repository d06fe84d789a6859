"""Butcher tableaux of the explicit Runge-Kutta methods and their dense-output rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Interpolant = Literal["none", "hermite", "dopri5", "tsit5"]


@dataclass(frozen=True)
class ButcherTableau:
    """Explicit Runge-Kutta ``y₁ = y₀ + h Σᵢ bᵢkᵢ``, ``kᵢ = f(t₀ + cᵢh, y₀ + h Σⱼ aᵢⱼkⱼ)``.

    ``b_err`` holds ``b − b̂`` (the embedded method's weights subtracted) so the local error
    estimate is ``h Σᵢ b_errᵢ kᵢ``; ``None`` for fixed-step methods. ``order`` is the order of
    the propagated solution, ``error_order`` the order of the embedded one (the controller's
    exponent is ``1 / (error_order + 1)``). ``fsal``: the last stage is ``f(t₁, y₁)``.
    """

    name: str
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int
    b_err: tuple[float, ...] | None = None
    error_order: int = 0
    fsal: bool = False
    interpolant: Interpolant = "none"

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        return self.b_err is not None


EULER = ButcherTableau("euler", c=(0.0,), a=((),), b=(1.0,), order=1)
MIDPOINT = ButcherTableau("midpoint", c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0), order=2)
HEUN = ButcherTableau("heun", c=(0.0, 1.0), a=((), (1.0,)), b=(0.5, 0.5), order=2)
RK4 = ButcherTableau(
    "rk4",
    c=(0.0, 0.5, 0.5, 1.0),
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    order=4,
)

# Bogacki & Shampine (1989): order 3 with an embedded order-2 method, FSAL.
BOSH3 = ButcherTableau(
    "bosh3",
    c=(0.0, 0.5, 0.75, 1.0),
    a=((), (0.5,), (0.0, 0.75), (2 / 9, 1 / 3, 4 / 9)),
    b=(2 / 9, 1 / 3, 4 / 9, 0.0),
    b_err=(2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8),
    order=3,
    error_order=2,
    fsal=True,
    interpolant="hermite",
)

# Dormand & Prince (1980) RK5(4)7M, the pair of Hairer's DOPRI5 and scipy's RK45.
_DP_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DP_BHAT = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
DOPRI5 = ButcherTableau(
    "dopri5",
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        _DP_B[:6],
    ),
    b=_DP_B,
    b_err=tuple(x - y for x, y in zip(_DP_B, _DP_BHAT)),
    order=5,
    error_order=4,
    fsal=True,
    interpolant="dopri5",
)
# Shampine (1986): weights giving y(t₀ + h/2) to 5th order; with y₀, y₁, f₀, f₁ they fix the
# quartic dense output of DOPRI5.
DOPRI5_MID = (
    6025192743 / 30085553152 / 2,
    0.0,
    51252292925 / 65400821598 / 2,
    -2691868925 / 45128329728 / 2,
    187940372067 / 1594534317056 / 2,
    -1776094331 / 19743644256 / 2,
    11237099 / 235043384 / 2,
)

# Tsitouras (2011) 5(4), FSAL, with its free interpolant.
_TS_B = (
    0.09646076681806523,
    0.01,
    0.4798896504144996,
    1.379008574103742,
    -3.290069515436081,
    2.324710524099774,
    0.0,
)
TSIT5 = ButcherTableau(
    "tsit5",
    c=(0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0),
    a=(
        (),
        (0.161,),
        (-0.008480655492356989, 0.335480655492357),
        (2.897153057105493, -6.359448489975075, 4.3622954328695815),
        (5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525),
        (
            5.86145544294642,
            -12.92096931784711,
            8.159367898576159,
            -0.071584973281401,
            -0.028269050394068383,
        ),
        _TS_B[:6],
    ),
    b=_TS_B,
    b_err=(
        -0.00178001105222577714,
        -0.0008164344596567469,
        0.007880878010261995,
        -0.1447110071732629,
        0.5823571654525552,
        -0.45808210592918697,
        1 / 66,
    ),
    order=5,
    error_order=4,
    fsal=True,
    interpolant="tsit5",
)


def tsit5_weights(theta: float) -> tuple[float, ...]:
    """Tsitouras' dense-output weights ``bᵢ(θ)``: ``y(t₀ + θh) = y₀ + h Σᵢ bᵢ(θ) kᵢ``."""
    t = theta
    t2 = t * t
    return (
        -1.0530884977290216
        * t
        * (t - 1.3299890189751412)
        * (t2 - 1.4364028541716351 * t + 0.7139816917074209),
        0.1017 * t2 * (t2 - 2.1966568338249754 * t + 1.2949852507374631),
        2.490627285651252793 * t2 * (t2 - 2.38535645472061657 * t + 1.57803468208092486),
        -16.54810288924490272 * (t - 1.21712927295533244) * (t - 0.61620406037800089) * t2,
        47.37952196281928122 * (t - 1.203071208372362603) * (t - 0.658047292653547382) * t2,
        -34.87065786149660974 * (t - 1.2) * (t - 0.666666666666666667) * t2,
        2.5 * (t - 1) * (t - 0.6) * t2,
    )


TABLEAUX: dict[str, ButcherTableau] = {
    tab.name: tab for tab in (EULER, MIDPOINT, HEUN, RK4, BOSH3, DOPRI5, TSIT5)
}
FIXED_METHODS = tuple(name for name, tab in TABLEAUX.items() if not tab.adaptive)
ADAPTIVE_METHODS = tuple(name for name, tab in TABLEAUX.items() if tab.adaptive)
