"""Explicit Runge-Kutta ODE solvers with adaptive steps, dense output, statistics and adjoints.

``odeint(f, y0, t)`` solves ``dy/dt = f(t, y)``, ``y(t[0]) = y0`` and returns ``y`` at every
time of ``t`` (first dimension = time), as ``torchdiffeq.odeint`` does. ``odesolve`` returns the
same solution together with the per-call :class:`SolverStats` (NFE, accepted/rejected steps,
each accepted step's local-error and stiffness estimates) and a dense-output evaluator.

Methods (Butcher tableaux in :mod:`torchloom.neural_de._tableaux`): fixed-step ``euler``,
``midpoint``, ``heun``, ``rk4``; adaptive ``bosh3`` (3(2)), ``dopri5`` (Dormand-Prince 5(4)) and
``tsit5`` (Tsitouras 5(4)), with a PI step-size controller (Söderlind / Hairer) and each
method's dense output (quartic Shampine interpolant for dopri5, Tsitouras' free interpolant for
tsit5, cubic Hermite for bosh3).

Sensitivities (Kidger 2022, *On Neural Differential Equations*, §5):

- ``"autograd"`` — backpropagate through the solver's operations ("discretise-then-optimise");
  exact gradient of the computed solution; memory grows with the number of steps.
- ``"adjoint"`` — continuous adjoint ("optimise-then-discretise"): the augmented system
  ``ẏ = f``, ``ȧ = −aᵀ∂f/∂y``, ``ġ = −aᵀ∂f/∂θ`` is solved backwards from ``t[-1]`` to ``t[0]``;
  memory independent of the number of steps. The adjoint step-size control uses the seminorm of
  Kidger, Chen & Lyons (2021) by default (the parameter-gradient channels do not enter the error
  norm), which typically saves backward steps.
- ``"checkpoint"`` — the forward solve runs without a graph and records its accepted steps; they
  are replayed under ``torch.utils.checkpoint`` one step at a time, so the gradient equals the
  ``"autograd"`` one exactly with memory of one step's graph plus one state per step.

Time ``t`` is never differentiated (a ``t`` requiring grad is rejected rather than silently
ignored). The step size is a constant for autograd (its control uses detached error norms).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from torchloom.core.checks import check_finite, check_floating, check_ndim, check_positive
from torchloom.neural_de._tableaux import (
    ADAPTIVE_METHODS,
    DOPRI5_MID,
    FIXED_METHODS,
    TABLEAUX,
    ButcherTableau,
    tsit5_weights,
)

__all__ = [
    "ADAPTIVE_METHODS",
    "FIXED_METHODS",
    "ODESolution",
    "ODESolverError",
    "PIController",
    "SolverStats",
    "odeint",
    "odesolve",
]

Sensitivity = Literal["autograd", "adjoint", "checkpoint"]
SENSITIVITIES = ("autograd", "adjoint", "checkpoint")
VectorField = Callable[[Tensor, Tensor], Tensor]


class ODESolverError(RuntimeError):
    """The solve could not continue; the message names ``t``, ``dt`` and the state's norm.

    Attributes ``t``, ``dt``, ``state_norm``, ``stats`` (the :class:`SolverStats` so far).
    """

    def __init__(
        self, reason: str, t: float, dt: float, state_norm: float, stats: SolverStats
    ) -> None:
        self.t, self.dt, self.state_norm, self.stats = t, dt, state_norm, stats
        stiff = stats.last_stiffness()
        hint = ""
        if stiff is not None and math.isfinite(stiff):
            hint = (
                f"; the last stiffness estimate was |λ|≈{stiff:.3g} (h|λ|≈{abs(dt) * stiff:.3g}): "
                "a large value means a stiff problem that explicit methods resolve only with tiny "
                "steps — rescale the problem, loosen rtol/atol, or regularise the dynamics"
            )
        super().__init__(
            f"{reason} at t={t:.6g} with dt={dt:.3g}, ‖y‖={state_norm:.4g} "
            f"(after {stats.nfe} evaluations of f, {stats.n_accepted} accepted and "
            f"{stats.n_rejected} rejected steps){hint}"
        )


@dataclass
class SolverStats:
    """Per-call statistics of one solve.

    ``error_estimates[j]`` is ``E_j``, the RMS norm of the j-th accepted step's local error
    estimate scaled by ``atol + rtol·max(|y₀|, |y₁|)`` (≤ 1 for an accepted step);
    ``stiffness_estimates[j]`` is ``S_j = ‖k_s − k_{s−1}‖ / ‖g_s − g_{s−1}‖`` from the last two
    stages (Shampine's estimate of the dominant eigenvalue's modulus). Both keep their autograd
    graph under the ``"autograd"``/``"checkpoint"`` sensitivities, which is what
    :mod:`torchloom.neural_de.regularize` differentiates.
    """

    method: str = ""
    nfe: int = 0
    n_accepted: int = 0
    n_rejected: int = 0
    nfe_adjoint: int = 0
    n_steps_adjoint: int = 0
    step_times: list[float] = field(default_factory=list)
    step_sizes: list[float] = field(default_factory=list)
    error_estimates: list[Tensor] = field(default_factory=list)
    stiffness_estimates: list[Tensor] = field(default_factory=list)

    def last_stiffness(self) -> float | None:
        if not self.stiffness_estimates:
            return None
        return float(self.stiffness_estimates[-1].detach())

    def as_dict(self) -> dict[str, float]:
        """Counts as plain numbers (for logging)."""
        return {
            "nfe": self.nfe,
            "n_accepted": self.n_accepted,
            "n_rejected": self.n_rejected,
            "nfe_adjoint": self.nfe_adjoint,
            "n_steps_adjoint": self.n_steps_adjoint,
        }


@dataclass(frozen=True)
class PIController:
    """PI step-size controller ``h ← h·clip(safety·r_n^{−β₁}·r_{n−1}^{β₂}, dfactor, ifactor)``.

    ``r_n`` is the scaled error norm of the current step, ``r_{n−1}`` that of the previous
    accepted step and ``k = error_order + 1``. Defaults ``β₁ = 0.7/k``, ``β₂ = 0.4/k``
    (Söderlind's PI.4.2, as in DifferentialEquations.jl); ``β₂ = 0``, ``β₁ = 1/k`` is the classic
    integral controller (torchdiffeq's). After a rejection the step only shrinks.
    """

    safety: float = 0.9
    ifactor: float = 10.0
    dfactor: float = 0.2
    beta1: float | None = None
    beta2: float | None = None

    @classmethod
    def integral(
        cls, safety: float = 0.9, ifactor: float = 10.0, dfactor: float = 0.2
    ) -> PIController:
        """The I controller ``h ← h · safety · r^{−1/k}`` (β₂ = 0)."""
        return cls(safety, ifactor, dfactor, beta1=-1.0, beta2=0.0)

    def _betas(self, k: int) -> tuple[float, float]:
        b1 = 1.0 / k if self.beta1 == -1.0 else (0.7 / k if self.beta1 is None else self.beta1)
        b2 = 0.4 / k if self.beta2 is None else self.beta2
        return b1, b2

    def accept(self, h: float, ratio: float, prev_ratio: float, k: int) -> float:
        if ratio == 0.0:
            return h * self.ifactor
        b1, b2 = self._betas(k)
        factor = float(self.safety * ratio ** (-b1) * max(prev_ratio, 1e-4) ** b2)
        return h * min(self.ifactor, max(self.dfactor, factor))

    def reject(self, h: float, ratio: float, k: int) -> float:
        if not math.isfinite(ratio):
            return h * self.dfactor
        factor = float(self.safety * ratio ** (-1.0 / k))
        return h * min(1.0, max(self.dfactor, factor))


@dataclass(frozen=True)
class _Options:
    tab: ButcherTableau
    rtol: float
    atol: float
    controller: PIController
    max_steps: int
    dt_min: float
    first_step: float | None
    step_size: float | None


def _rms(x: Tensor) -> Tensor:
    return x.pow(2).mean().sqrt()


def _norm2(x: Tensor) -> Tensor:
    return torch.linalg.vector_norm(x)


# ---------------------------------------------------------------------------------------------
# One Runge-Kutta step
# ---------------------------------------------------------------------------------------------


@dataclass
class _Step:
    y1: Tensor
    ks: list[Tensor]
    err: Tensor | None
    stiffness: Tensor | None


class _CountedField:
    """Wraps ``f``: counts evaluations, passes ``t`` as a tensor, checks shape and finiteness."""

    def __init__(self, f: VectorField, y0: Tensor, stats: SolverStats, sign: float) -> None:
        self.f, self.stats, self.sign = f, stats, sign
        self.shape, self.dtype = y0.shape, y0.dtype
        self.checked = False

    def __call__(self, t: float, y: Tensor) -> Tensor:
        self.stats.nfe += 1
        tt = torch.tensor(self.sign * t, dtype=y.dtype, device=y.device)
        out = self.f(tt, y)
        if not self.checked:
            if not isinstance(out, Tensor):
                raise TypeError(f"f(t, y) must return a torch.Tensor, got {type(out).__name__}")
            if out.shape != self.shape:
                raise ValueError(
                    f"f(t, y) returned shape {tuple(out.shape)} but y0 has shape "
                    f"{tuple(self.shape)}; the vector field must return a tensor shaped like y"
                )
            if out.dtype != self.dtype:
                raise TypeError(f"f(t, y) returned dtype {out.dtype} but y0 has dtype {self.dtype}")
            self.checked = True
        return out if self.sign > 0 else -out


def _rk_step(
    f: _CountedField, tab: ButcherTableau, t0: float, h: float, y0: Tensor, f0: Tensor
) -> _Step:
    ks = [f0]
    g_prev, g_last = y0, y0
    y1 = y0
    # torch.add(..., alpha=) fuses the scale into the add: one kernel per term, not two
    for i in range(1, tab.stages):
        yi = y0
        for j, aij in enumerate(tab.a[i]):
            if aij != 0.0:
                yi = torch.add(yi, ks[j], alpha=h * aij)
        g_prev, g_last = g_last, yi
        ks.append(f(t0 + tab.c[i] * h, yi))
    if tab.fsal:
        y1 = g_last  # the last stage is evaluated at y₁ itself
    else:
        for i, bi in enumerate(tab.b):
            if bi != 0.0:
                y1 = torch.add(y1, ks[i], alpha=h * bi)
    err = None
    if tab.b_err is not None:
        err = sum(
            ((h * e) * ks[i] for i, e in enumerate(tab.b_err) if e != 0.0), torch.zeros_like(y0)
        )
    stiff = None
    if tab.stages >= 2:
        # Shampine's estimate of the dominant eigenvalue from the last two stages.
        den = _norm2(g_last - g_prev)
        stiff = _norm2(ks[-1] - ks[-2]) / den.clamp_min(torch.finfo(den.dtype).tiny)
    return _Step(y1, ks, err, stiff)


def _interpolate(
    tab: ButcherTableau,
    y0: Tensor,
    y1: Tensor,
    ks: list[Tensor],
    f1: Tensor,
    h: float,
    theta: float,
) -> Tensor:
    """Dense output at ``t₀ + θh`` for ``θ ∈ [0, 1]``."""
    if tab.interpolant == "tsit5":
        out = y0
        for i, w in enumerate(tsit5_weights(theta)):
            out = out + (h * w) * ks[i]
        return out
    f0 = ks[0]
    if tab.interpolant == "dopri5":
        y_mid = y0
        for i, w in enumerate(DOPRI5_MID):
            if w != 0.0:
                y_mid = y_mid + (h * w) * ks[i]
        # Quartic through y₀, y₁, y(½) with slopes f₀, f₁ (Shampine 1986).
        a4 = 2 * h * (f1 - f0) - 8 * (y1 + y0) + 16 * y_mid
        a3 = h * (5 * f0 - 3 * f1) + 18 * y0 + 14 * y1 - 32 * y_mid
        a2 = h * (f1 - 4 * f0) - 11 * y0 - 5 * y1 + 16 * y_mid
        return y0 + theta * (h * f0 + theta * (a2 + theta * (a3 + theta * a4)))
    # Cubic Hermite through (y₀, f₀), (y₁, f₁).
    t2, t3 = theta * theta, theta**3
    return (
        (2 * t3 - 3 * t2 + 1) * y0
        + (h * (t3 - 2 * t2 + theta)) * f0
        + (-2 * t3 + 3 * t2) * y1
        + (h * (t3 - t2)) * f1
    )


# ---------------------------------------------------------------------------------------------
# Integration loops
# ---------------------------------------------------------------------------------------------


@dataclass
class _DenseSegment:
    t0: float
    h: float
    y0: Tensor
    y1: Tensor
    ks: list[Tensor]
    f1: Tensor


def _state_norm(y: Tensor) -> float:
    return float(_norm2(y.detach()))


def _initial_step(
    f: _CountedField,
    t0: float,
    y0: Tensor,
    f0: Tensor,
    order: int,
    opts: _Options,
    span: float,
    norm: Callable[[Tensor], Tensor],
) -> float:
    """Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.4 (the starting step of DOPRI5)."""
    with torch.no_grad():
        scale = opts.atol + y0.abs() * opts.rtol
        d0 = float(norm(y0 / scale))
        d1 = float(norm(f0 / scale))
        h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
        h0 = min(h0, span)
        f1 = f(t0 + h0, y0 + h0 * f0)
        d2 = float(norm((f1 - f0) / scale)) / h0
        if max(d1, d2) <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
        return min(100 * h0, h1, span)


def _integrate_adaptive(
    f: _CountedField,
    y0: Tensor,
    ts: Sequence[float],
    opts: _Options,
    stats: SolverStats,
    norm: Callable[[Tensor], Tensor] = _rms,
    dense: list[_DenseSegment] | None = None,
    grid: list[float] | None = None,
) -> list[Tensor]:
    """Adaptive solve over increasing ``ts``; ``grid`` (if given) gets the accepted step ends."""
    tab = opts.tab
    k = tab.error_order + 1
    t, t_end = ts[0], ts[-1]
    outs = [y0]
    f0 = f(t, y0)
    if not bool(torch.isfinite(f0).all()):
        raise ODESolverError("f(t0, y0) is not finite", t, 0.0, _state_norm(y0), stats)
    span = t_end - t
    h = opts.first_step or _initial_step(f, t, y0, f0, tab.error_order, opts, span, norm)
    y = y0
    i_out = 1
    prev_ratio = 1.0
    last_ratio = float("nan")
    n_steps = 0
    while i_out < len(ts):
        if n_steps >= opts.max_steps:
            raise ODESolverError(
                f"max_steps={opts.max_steps} exceeded before reaching t={t_end:.6g}",
                t,
                h,
                _state_norm(y),
                stats,
            )
        n_steps += 1
        last = t + h >= t_end
        if last:
            h = t_end - t
        if h <= opts.dt_min or t + h == t:
            raise ODESolverError(
                f"step size underflow (dt_min={opts.dt_min:.3g}, last error ratio "
                f"{last_ratio:.3g})",
                t,
                h,
                _state_norm(y),
                stats,
            )
        step = _rk_step(f, tab, t, h, y, f0)
        tol = opts.atol + opts.rtol * torch.maximum(y.abs(), step.y1.abs())
        if step.err is None:  # pragma: no cover - adaptive tableaux always have b_err
            raise RuntimeError("adaptive solve needs an embedded error estimate")
        ratio_t = norm(step.err / tol)
        ratio = float(ratio_t.detach())
        last_ratio = ratio
        if not math.isfinite(ratio) or not bool(torch.isfinite(step.y1.detach()).all()):
            # A NaN/Inf stage is treated as a failed step: shrink and retry; if that keeps
            # failing the underflow error above reports where.
            stats.n_rejected += 1
            h = h * opts.controller.dfactor
            last_ratio = float("inf")
            continue
        if ratio > 1.0:
            stats.n_rejected += 1
            h = opts.controller.reject(h, ratio, k)
            continue
        t1 = t_end if last else t + h
        f1 = step.ks[-1] if tab.fsal else f(t1, step.y1)
        stats.n_accepted += 1
        stats.step_times.append(t)
        stats.step_sizes.append(h)
        stats.error_estimates.append(ratio_t)
        if step.stiffness is not None:
            stats.stiffness_estimates.append(step.stiffness)
        if grid is not None:
            grid.append(t1)
        if dense is not None:
            dense.append(_DenseSegment(t, h, y, step.y1, step.ks, f1))
        while i_out < len(ts) and (ts[i_out] <= t1 or (last and i_out == len(ts) - 1)):
            if ts[i_out] >= t1 or i_out == len(ts) - 1:
                outs.append(step.y1)
            else:
                outs.append(_interpolate(tab, y, step.y1, step.ks, f1, h, (ts[i_out] - t) / h))
            i_out += 1
        t, y, f0 = t1, step.y1, f1
        h = opts.controller.accept(h, ratio, prev_ratio, k)
        prev_ratio = ratio
    return outs


def _fixed_grid(ts: Sequence[float], step_size: float | None) -> tuple[list[float], set[int]]:
    """Step ends covering ``ts``: each interval split into equal steps no longer than step_size."""
    grid = [ts[0]]
    out_idx = {0}
    for a, b in itertools.pairwise(ts):
        n = 1 if step_size is None else max(1, math.ceil((b - a) / step_size - 1e-9))
        for i in range(1, n + 1):
            grid.append(b if i == n else a + (b - a) * i / n)
        out_idx.add(len(grid) - 1)
    return grid, out_idx


def _integrate_on_grid(
    f: _CountedField,
    y0: Tensor,
    ts: Sequence[float],
    grid: Sequence[float],
    opts: _Options,
    stats: SolverStats,
    checkpoint: bool = False,
) -> list[Tensor]:
    """Step through ``grid`` (which contains every time of ``ts``), interpolating where needed."""
    tab = opts.tab
    outs = [y0]
    y = y0
    # FSAL methods carry f(t₁, y₁) into the next step; the others evaluate f(t₀, y₀) at the
    # start of each step, so no evaluation is wasted after the last one.
    f0 = f(grid[0], y0) if tab.fsal else y0
    i_out = 1
    for t, t1 in itertools.pairwise(grid):
        h = t1 - t
        wanted = []
        while i_out < len(ts) and ts[i_out] <= t1:
            wanted.append(ts[i_out])
            i_out += 1

        def step_fn(
            y_: Tensor,
            f0_: Tensor,
            t: float = t,
            h: float = h,
            t1: float = t1,
            wanted: list[float] = wanted,
        ) -> tuple[Tensor, ...]:
            st = _rk_step(f, tab, t, h, y_, f0_ if tab.fsal else f(t, y_))
            f1 = st.ks[-1] if tab.fsal else st.y1
            res = [st.y1, f1]
            for s in wanted:
                if s >= t1:
                    res.append(st.y1)
                    continue
                if not tab.fsal:
                    f1 = f(t1, st.y1)
                res.append(_interpolate(tab, y_, st.y1, st.ks, f1, h, (s - t) / h))
            if st.err is not None:
                tol = opts.atol + opts.rtol * torch.maximum(y_.abs(), st.y1.abs())
                res.append(_rms(st.err / tol))
            if st.stiffness is not None:
                res.append(st.stiffness)
            return tuple(res)

        if checkpoint and torch.is_grad_enabled():
            res = torch.utils.checkpoint.checkpoint(step_fn, y, f0, use_reentrant=False)
        else:
            res = step_fn(y, f0)
        y, f0 = res[0], res[1]
        outs.extend(res[2 : 2 + len(wanted)])
        rest = list(res[2 + len(wanted) :])
        stats.n_accepted += 1
        stats.step_times.append(t)
        stats.step_sizes.append(h)
        if tab.b_err is not None:
            stats.error_estimates.append(rest.pop(0))
        if rest:
            stats.stiffness_estimates.append(rest.pop(0))
        if not bool(torch.isfinite(y.detach()).all()):
            raise ODESolverError("the state became non-finite", t1, h, _state_norm(y), stats)
    return outs


# ---------------------------------------------------------------------------------------------
# Continuous adjoint
# ---------------------------------------------------------------------------------------------


class _Adjoint(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        y0: Tensor,
        f: _CountedField,
        ts: list[float],
        opts: _Options,
        adj_opts: _Options,
        seminorm: bool,
        stats: SolverStats,
        *params: Tensor,
    ) -> Tensor:
        with torch.no_grad():
            ys = torch.stack(_solve_plain(f, y0, ts, opts, stats))
        ctx.f, ctx.ts, ctx.adj_opts, ctx.seminorm, ctx.stats = f, ts, adj_opts, seminorm, stats
        ctx.save_for_backward(ys, *params)
        return ys

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:
        grad_ys = grads[0]
        ys, *params = ctx.saved_tensors
        f: _CountedField = ctx.f
        ts: list[float] = ctx.ts
        stats: SolverStats = ctx.stats
        shape = ys.shape[1:]
        n = ys[0].numel()
        p_sizes = [p.numel() for p in params]

        def aug(t: Tensor, z: Tensor) -> Tensor:
            y = z[:n].view(shape)
            a = z[n : 2 * n].view(shape)
            with torch.enable_grad():
                y = y.detach().requires_grad_(True)
                fy = f.f(t * f.sign, y) * f.sign
                vjps = torch.autograd.grad(
                    fy, (y, *params), -a, allow_unused=True, retain_graph=False
                )
            parts = [
                fy.reshape(-1),
                vjps[0].reshape(-1) if vjps[0] is not None else torch.zeros_like(a).reshape(-1),
            ]
            for p, g in zip(params, vjps[1:]):
                parts.append(g.reshape(-1) if g is not None else torch.zeros_like(p).reshape(-1))
            return torch.cat(parts).detach()

        norm = (lambda x: _rms(x[: 2 * n])) if ctx.seminorm else _rms
        a = grad_ys[-1].reshape(-1)
        g = torch.zeros(sum(p_sizes), dtype=ys.dtype, device=ys.device)
        back_stats = SolverStats(method=stats.method)
        for i in range(len(ts) - 1, 0, -1):
            z = torch.cat([ys[i].reshape(-1), a, g])
            # Backwards in time: s = −t turns the interval into an increasing one.
            field = _CountedField(aug, z, back_stats, sign=-1.0)
            zs = _solve_plain(field, z, [-ts[i], -ts[i - 1]], ctx.adj_opts, back_stats, norm)
            z1 = zs[-1]
            a = z1[n : 2 * n] + grad_ys[i - 1].reshape(-1)
            g = z1[2 * n :]
        stats.nfe_adjoint += back_stats.nfe
        stats.n_steps_adjoint += back_stats.n_accepted + back_stats.n_rejected
        grad_params: list[Tensor] = []
        offset = 0
        for p, size in zip(params, p_sizes):
            grad_params.append(g[offset : offset + size].view_as(p))
            offset += size
        return (a.view(shape), None, None, None, None, None, None, *grad_params)


def _solve_plain(
    f: _CountedField,
    y0: Tensor,
    ts: Sequence[float],
    opts: _Options,
    stats: SolverStats,
    norm: Callable[[Tensor], Tensor] = _rms,
    dense: list[_DenseSegment] | None = None,
) -> list[Tensor]:
    if opts.tab.adaptive:
        return _integrate_adaptive(f, y0, ts, opts, stats, norm=norm, dense=dense)
    grid, _ = _fixed_grid(ts, opts.step_size)
    return _integrate_on_grid(f, y0, ts, grid, opts, stats)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


class ODESolution:
    """What :func:`odesolve` returns: ``ys`` ``(T, *S)``, ``stats`` and dense output.

    ``evaluate(s)`` interpolates the solution at times ``s`` inside ``[t[0], t[-1]]`` with the
    method's own dense output (adaptive methods, ``dense=True``).
    """

    def __init__(
        self,
        ys: Tensor,
        stats: SolverStats,
        segments: list[_DenseSegment] | None,
        tab: ButcherTableau,
        sign: float,
    ) -> None:
        self.ys, self.stats, self._segments, self._tab, self._sign = ys, stats, segments, tab, sign

    def evaluate(self, s: Tensor | Sequence[float]) -> Tensor:
        """``y(s)`` for each time in ``s`` (1-D); shape ``(len(s), *S)``."""
        if self._segments is None:
            raise ValueError(
                "dense output needs odesolve(..., dense=True) with an adaptive method "
                f"({', '.join(ADAPTIVE_METHODS)})"
            )
        times = s.tolist() if isinstance(s, Tensor) else list(s)
        starts = [seg.t0 for seg in self._segments]
        lo, hi = starts[0], self._segments[-1].t0 + self._segments[-1].h
        out = []

        for raw in times:
            x = self._sign * float(raw)
            if not lo - 1e-12 * max(1.0, abs(lo)) <= x <= hi + 1e-12 * max(1.0, abs(hi)):
                raise ValueError(f"evaluate: time {raw} lies outside the solved interval")
            j = max(0, min(len(starts) - 1, bisect.bisect_right(starts, x) - 1))
            seg = self._segments[j]
            theta = min(1.0, max(0.0, (x - seg.t0) / seg.h))
            out.append(_interpolate(self._tab, seg.y0, seg.y1, seg.ks, seg.f1, seg.h, theta))
        return torch.stack(out)


def _validate(
    f: object,
    y0: object,
    t: object,
    method: str,
    rtol: float,
    atol: float,
    sensitivity: str,
    step_size: float | None,
    max_steps: int,
) -> tuple[Tensor, Tensor, list[float], float]:
    if not callable(f):
        raise TypeError(f"f must be callable as f(t, y), got {type(f).__name__}")
    y0 = check_floating(y0, "y0")
    check_finite(y0, "y0")
    t = check_floating(t, "t")
    check_ndim(t, "t", 1, "(T,)")
    if t.numel() < 2:
        raise ValueError(f"t must hold at least 2 times, got shape {tuple(t.shape)}")
    if t.requires_grad:
        raise ValueError(
            "t requires grad, but odeint does not differentiate w.r.t. t; pass t.detach()"
        )
    check_finite(t, "t")
    ts = t.detach().cpu().double().tolist()
    diffs = [b - a for a, b in itertools.pairwise(ts)]
    sign = 1.0 if diffs[0] > 0 else -1.0
    for i, d in enumerate(diffs):
        if not d * sign > 0:
            raise ValueError(
                "t must be strictly increasing or strictly decreasing, got "
                f"t[{i}]={ts[i]!r}, t[{i + 1}]={ts[i + 1]!r}"
            )
    if method not in TABLEAUX:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(TABLEAUX)}")
    check_positive(rtol, "rtol")
    check_positive(atol, "atol")
    if sensitivity not in SENSITIVITIES:
        raise ValueError(f"sensitivity must be one of {SENSITIVITIES}, got {sensitivity!r}")
    if step_size is not None:
        check_positive(step_size, "step_size")
        if TABLEAUX[method].adaptive:
            raise ValueError(
                f"step_size applies to fixed-step methods ({', '.join(FIXED_METHODS)}); "
                f"{method!r} chooses its own steps (use first_step)"
            )
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
    return y0, t, ts, sign


def odesolve(
    f: VectorField,
    y0: Tensor,
    t: Tensor,
    *,
    method: str = "dopri5",
    rtol: float = 1e-7,
    atol: float = 1e-9,
    sensitivity: Sensitivity = "autograd",
    adjoint_params: Iterable[Tensor] | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    adjoint_seminorm: bool = True,
    step_size: float | None = None,
    first_step: float | None = None,
    max_steps: int = 100_000,
    dt_min: float = 0.0,
    controller: PIController | None = None,
    dense: bool = False,
    stats: SolverStats | None = None,
) -> ODESolution:
    """Solve ``dy/dt = f(t, y)``, ``y(t[0]) = y0``; return the solution with its statistics.

    Args:
        f: vector field ``f(t, y) -> dy/dt`` with ``t`` a 0-dim tensor and output shaped like y.
        y0: initial state, any shape ``(*S)`` (e.g. ``(B, D)``; one step size for the batch).
        t: ``(T,)`` strictly increasing or decreasing output times; ``t[0]`` is the start.
        method: one of ``euler, midpoint, heun, rk4`` (fixed: steps on ``t``, each interval
            split into steps of at most ``step_size``) or ``bosh3, dopri5, tsit5`` (adaptive).
        rtol, atol: tolerances of the scaled RMS error norm (adaptive methods).
        sensitivity: ``"autograd"``, ``"adjoint"`` or ``"checkpoint"`` (see module docstring).
        adjoint_params: tensors the adjoint differentiates (default: ``f.parameters()`` when
            ``f`` is an ``nn.Module``); tensors ``f`` closes over get no adjoint gradient
            otherwise.
        adjoint_rtol, adjoint_atol: backward tolerances (default: the forward ones).
        adjoint_seminorm: leave the parameter-gradient channels out of the backward error norm.
        max_steps: attempted steps allowed before :class:`ODESolverError`.
        dt_min: smallest step allowed before :class:`ODESolverError` (0: float resolution).
        controller: the :class:`PIController` (default PI coefficients).
        dense: keep each step's interpolant for :meth:`ODESolution.evaluate`.
        stats: a :class:`SolverStats` to fill (a fresh one otherwise); the adjoint's backward
            pass adds its counts to it when it runs.

    Returns:
        :class:`ODESolution` with ``ys`` of shape ``(T, *S)``.
    """
    y0, t, ts, sign = _validate(f, y0, t, method, rtol, atol, sensitivity, step_size, max_steps)
    check_positive(dt_min, "dt_min", strict=False)
    tab = TABLEAUX[method]
    opts = _Options(
        tab,
        float(rtol),
        float(atol),
        controller or PIController(),
        max_steps,
        float(dt_min),
        None if first_step is None else check_positive(first_step, "first_step"),
        step_size,
    )
    if stats is None:
        stats = SolverStats()
    elif not isinstance(stats, SolverStats):
        raise TypeError(f"stats must be a SolverStats, got {type(stats).__name__}")
    stats.method = method
    field = _CountedField(f, y0, stats, sign)
    sts = [sign * s for s in ts]  # integrate in s = sign·t, always increasing
    segments: list[_DenseSegment] | None = [] if dense and tab.adaptive else None

    if sensitivity == "adjoint" and torch.is_grad_enabled():
        if adjoint_params is None:
            params: tuple[Tensor, ...] = tuple(f.parameters()) if isinstance(f, nn.Module) else ()
        else:
            params = tuple(adjoint_params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"adjoint_params[{i}] must be a tensor, got {type(p).__name__}")
        params = tuple(p for p in params if p.requires_grad)
        adj_opts = _Options(
            tab,
            float(adjoint_rtol if adjoint_rtol is not None else rtol),
            float(adjoint_atol if adjoint_atol is not None else atol),
            opts.controller,
            max_steps,
            float(dt_min),
            None,
            step_size,
        )
        if segments is not None:
            raise ValueError("dense=True is not available with sensitivity='adjoint'")
        ys = _Adjoint.apply(y0, field, sts, opts, adj_opts, adjoint_seminorm, stats, *params)
    elif sensitivity == "checkpoint" and torch.is_grad_enabled():
        grid_stats = SolverStats(method=method)
        grid_field = _CountedField(f, y0, grid_stats, sign)
        if tab.adaptive:
            grid = [sts[0]]
            with torch.no_grad():
                _integrate_adaptive(grid_field, y0, sts, opts, grid_stats, grid=grid)
        else:
            grid, _ = _fixed_grid(sts, step_size)
        outs = _integrate_on_grid(field, y0, sts, grid, opts, stats, checkpoint=True)
        stats.nfe += grid_stats.nfe
        stats.n_rejected = grid_stats.n_rejected
        ys = torch.stack(outs)
    else:
        ys = torch.stack(_solve_plain(field, y0, sts, opts, stats, dense=segments))
    return ODESolution(ys, stats, segments, tab, sign)


def odeint(
    f: VectorField,
    y0: Tensor,
    t: Tensor,
    *,
    method: str = "dopri5",
    rtol: float = 1e-7,
    atol: float = 1e-9,
    sensitivity: Sensitivity = "autograd",
    adjoint_params: Iterable[Tensor] | None = None,
    step_size: float | None = None,
    max_steps: int = 100_000,
    dt_min: float = 0.0,
    stats: SolverStats | None = None,
    **options: object,
) -> Tensor:
    """``y`` at every time of ``t``, shape ``(T, *S)``: :func:`odesolve` returning only ``ys``.

    Pass ``stats=SolverStats()`` to receive the call's statistics in that object. Further
    keyword ``options`` go to :func:`odesolve` (``controller``, ``first_step``, ``adjoint_rtol``,
    ``adjoint_atol``, ``adjoint_seminorm``).
    """
    allowed = {"controller", "first_step", "adjoint_rtol", "adjoint_atol", "adjoint_seminorm"}
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(
            f"odeint got unexpected options {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    sol = odesolve(
        f,
        y0,
        t,
        method=method,
        rtol=rtol,
        atol=atol,
        sensitivity=sensitivity,
        adjoint_params=adjoint_params,
        step_size=step_size,
        max_steps=max_steps,
        dt_min=dt_min,
        stats=stats,
        **options,  # type: ignore[arg-type]
    )
    return sol.ys
