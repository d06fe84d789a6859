"""Implicit differentiation of fixed points and roots (deep-equilibrium style).

:func:`fixed_point` solves ``z = f(z, *params)`` and :func:`root_solve` solves ``g(z, *params) = 0``
without recording the iterations, then attaches the implicit-function-theorem gradient:

- fixed point: ``∂L/∂θ = wᵀ ∂f/∂θ`` with ``(I − J_fᵀ) w = ∂L/∂z*``, solved by the same iteration
  as the forward on vector-Jacobian products ``w ↦ J_fᵀ w + ∂L/∂z*``;
- root: ``∂L/∂θ = wᵀ ∂g/∂θ`` with ``J_gᵀ w = −∂L/∂z*``.

The backward memory is one evaluation of ``f`` (or ``g``), whatever the number of forward
iterations. Gradients reach tensors in ``params`` and tensors that ``f`` closes over (an
``nn.Module``'s weights); ``z0`` only seeds the solve and gets no gradient. ``f`` must be
deterministic: the backward re-evaluates it at the solution. Double backward is not supported.

Batching: ``z`` has shape ``(B, ...)`` and every batch element is an independent problem (its
own residual, history and step); pass ``batched=False`` when ``z`` is one problem. A solve has
converged when every element's residual is at most ``tol``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, overload

import torch
from torch.autograd.function import once_differentiable

from torchloom.core.checks import check_floating, check_positive
from torchloom.core.warnings import TorchloomWarning

__all__ = [
    "ConvergenceError",
    "SolverInfo",
    "fixed_point",
    "root_solve",
]

FixedPointSolver = Literal["anderson", "broyden", "picard"]
RootSolver = Literal["broyden", "newton"]
OnFail = Literal["raise", "warn"]

_FIXED_POINT_OPTIONS: dict[str, dict[str, float]] = {
    "anderson": {"memory": 5, "lam": 1e-4, "damping": 1.0},
    "broyden": {"memory": 32},
    "picard": {},
}
_ROOT_OPTIONS: dict[str, dict[str, float]] = {
    "broyden": {"memory": 32, "max_halvings": 8},
    "newton": {"max_halvings": 8},
}


class ConvergenceError(RuntimeError):
    """A solve stopped at ``max_iter`` with a residual above ``tol``.

    ``residual`` is the largest per-element residual reached, ``iterations`` the iterations run.
    """

    def __init__(self, message: str, residual: float, iterations: int) -> None:
        super().__init__(message)
        self.residual = residual
        self.iterations = iterations


class SolverInfo(TypedDict):
    """Forward-solve statistics returned with ``return_info=True``.

    ``residuals`` has shape ``(B,)`` (``(1,)`` when ``batched=False``); ``residual`` is its max.
    """

    iterations: int
    residual: float
    residuals: torch.Tensor
    converged: bool


# --------------------------------------------------------------------------- solver core
# Every solver works on flattened iterates x of shape (B, D), one row per independent problem,
# keeps the best iterate of each row, and stops when every row's residual is <= tol.

Map = Callable[[torch.Tensor], torch.Tensor]
Residual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class _Result:
    x: torch.Tensor
    residuals: torch.Tensor
    iterations: int
    converged: bool


class _Best:
    def __init__(self, x: torch.Tensor, tol: float) -> None:
        self.tol = tol
        self.x = x.clone()
        self.res = torch.full((x.shape[0],), math.inf, dtype=x.dtype, device=x.device)

    def update(self, x: torch.Tensor, res: torch.Tensor) -> bool:
        """Record ``x`` where it improves on the best; return True when every row is <= tol."""
        res = torch.nan_to_num(res, nan=math.inf)
        better = res < self.res
        self.x = torch.where(better[:, None], x, self.x)
        self.res = torch.where(better, res, self.res)
        return bool((self.res <= self.tol).all())

    def result(self, iterations: int) -> _Result:
        converged = bool((self.res <= self.tol).all())
        return _Result(self.x, self.res, iterations, converged)


def _rownorm(x: torch.Tensor) -> torch.Tensor:
    n: torch.Tensor = torch.linalg.vector_norm(x, dim=-1)
    return n


def _picard(F: Map, x: torch.Tensor, tol: float, max_iter: int, residual: Residual) -> _Result:
    best = _Best(x, tol)
    for k in range(1, max_iter + 1):
        fx = F(x)
        if best.update(x, residual(x, fx)):
            return best.result(k)
        x = fx
    return best.result(max_iter)


def _anderson(
    F: Map,
    x0: torch.Tensor,
    tol: float,
    max_iter: int,
    residual: Residual,
    memory: int,
    lam: float,
    damping: float,
) -> _Result:
    """Anderson acceleration (Walker & Ni 2011), per row: mix the last ``memory`` iterates."""
    B, D = x0.shape
    m = memory
    X = x0.new_zeros(B, m, D)
    FX = x0.new_zeros(B, m, D)
    best = _Best(x0, tol)
    X[:, 0] = x0
    FX[:, 0] = F(x0)
    if best.update(X[:, 0], residual(X[:, 0], FX[:, 0])) or max_iter == 1:
        return best.result(1)
    X[:, 1 % m] = FX[:, 0]
    FX[:, 1 % m] = F(X[:, 1 % m])
    if best.update(X[:, 1 % m], residual(X[:, 1 % m], FX[:, 1 % m])):
        return best.result(2)
    tiny = torch.finfo(x0.dtype).tiny
    for k in range(2, max_iter):
        n = min(k, m)
        G = FX[:, :n] - X[:, :n]  # (B, n, D) residual history
        GG = G @ G.transpose(1, 2)
        # Normalising by the largest diagonal entry makes ``lam`` a relative regulariser, so it
        # neither swamps tiny residuals near convergence nor vanishes on large ones.
        scale = GG.diagonal(dim1=1, dim2=2).amax(-1).clamp_min(tiny)
        eye = torch.eye(n, dtype=x0.dtype, device=x0.device)
        H = x0.new_zeros(B, n + 1, n + 1)
        H[:, 0, 1:] = 1.0
        H[:, 1:, 0] = 1.0
        H[:, 1:, 1:] = GG / scale[:, None, None] + lam * eye
        rhs = x0.new_zeros(B, n + 1)
        rhs[:, 0] = 1.0
        # min ||Σ α_i G_i|| subject to Σ α_i = 1, as the bordered (KKT) system
        alpha = torch.linalg.solve(H, rhs)[:, 1:, None]  # (B, n, 1)
        x = damping * (alpha * FX[:, :n]).sum(1) + (1 - damping) * (alpha * X[:, :n]).sum(1)
        fx = F(x)
        X[:, k % m] = x
        FX[:, k % m] = fx
        if best.update(x, residual(x, fx)):
            return best.result(k + 1)
    return best.result(max_iter)


def _backtrack(
    G: Map, x: torch.Tensor, gx: torch.Tensor, p: torch.Tensor, max_halvings: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row step ``x + s p``, halving ``s`` until ``‖G‖`` decreases (Armijo, c = 1e-4)."""
    n0 = _rownorm(gx)
    s = torch.ones_like(n0)
    x_new = x + p
    g_new = G(x_new)
    for _ in range(max_halvings):
        ok = _rownorm(g_new) <= (1 - 1e-4 * s) * n0  # False for NaN
        if bool(ok.all()):
            break
        s = torch.where(ok, s, s / 2)
        x_try = x + s[:, None] * p
        g_try = G(x_try)
        x_new = torch.where(ok[:, None], x_new, x_try)
        g_new = torch.where(ok[:, None], g_new, g_try)
    return x_new, g_new


def _broyden(
    G: Map,
    x0: torch.Tensor,
    tol: float,
    max_iter: int,
    residual: Residual,
    h0: torch.Tensor,
    memory: int,
    max_halvings: int = 0,
) -> _Result:
    """Broyden's good method for ``G(x) = 0`` per row, inverse Jacobian ``h0 I + U Vᵀ``.

    ``h0`` ``(B,)`` is the initial inverse-Jacobian scale (−1 for ``G = f − x``). The low-rank
    memory is circular, as in deep-equilibrium solvers.
    """
    B, D = x0.shape
    m = memory
    U = x0.new_zeros(B, D, m)
    VT = x0.new_zeros(B, m, D)

    def matvec(y: torch.Tensor) -> torch.Tensor:  # H y
        return h0[:, None] * y + (U @ (VT @ y[:, :, None]))[:, :, 0]

    def rmatvec(y: torch.Tensor) -> torch.Tensor:  # yᵀ H
        return h0[:, None] * y + ((y[:, None, :] @ U) @ VT)[:, 0]

    best = _Best(x0, tol)
    x = x0
    gx = G(x)
    if best.update(x, residual(x, gx)):
        return best.result(1)
    eps = torch.finfo(x0.dtype).eps
    for k in range(1, max_iter):
        p = -matvec(gx)
        if max_halvings > 0:
            x_new, g_new = _backtrack(G, x, gx, p, max_halvings)
        else:
            x_new = x + p
            g_new = G(x_new)
        if best.update(x_new, residual(x_new, g_new)):
            return best.result(k + 1)
        dx = x_new - x
        dg = g_new - gx
        vT = rmatvec(dx)
        denom = (vT * dg).sum(-1)
        # skip the update of rows where it is undefined (converged rows, or dx ⟂ H dg)
        ok = denom.abs() > eps * _rownorm(vT) * _rownorm(dg)
        u = (dx - matvec(dg)) / torch.where(ok, denom, torch.ones_like(denom))[:, None]
        j = (k - 1) % m
        U[:, :, j] = torch.where(ok[:, None], u, torch.zeros_like(u))
        VT[:, j] = torch.where(ok[:, None], vT, torch.zeros_like(vT))
        x, gx = x_new, g_new
    return best.result(max_iter)


def _jacobian(G: Map, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``G(x)`` ``(B, D)`` and the per-row Jacobians ``(B, D, D)``, one vjp per output."""
    B, D = x.shape
    with torch.enable_grad():
        xx = x.detach().requires_grad_(True)
        gx = G(xx)
    if not gx.requires_grad:  # G does not depend on x
        return gx.detach(), x.new_zeros(B, D, D)
    eye = torch.eye(D, dtype=x.dtype, device=x.device)
    rows = [
        torch.autograd.grad(
            gx, xx, eye[i].expand(B, D), retain_graph=i < D - 1, materialize_grads=True
        )[0]
        for i in range(D)
    ]
    return gx.detach(), torch.stack(rows, 1)


def _linear_solve(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve ``A x = b`` per row; least squares for rows whose ``A`` is singular."""
    x: torch.Tensor
    x, info = torch.linalg.solve_ex(A, b)
    bad = info != 0
    if bool(bad.any()):
        ls = (torch.linalg.pinv(A) @ b[:, :, None])[:, :, 0]
        x = torch.where(bad[:, None], ls, x)
    return x


def _newton(
    G: Map, x: torch.Tensor, tol: float, max_iter: int, residual: Residual, max_halvings: int
) -> _Result:
    best = _Best(x, tol)
    for k in range(1, max_iter + 1):
        gx, J = _jacobian(G, x)
        if best.update(x, residual(x, gx)):
            return best.result(k)
        p = _linear_solve(J, -gx)
        x, _ = _backtrack(G, x, gx, p, max_halvings)
    return best.result(max_iter)


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class _Config:
    solver: str
    tol: float
    max_iter: int
    backward_tol: float
    backward_max_iter: int
    on_fail: str
    options: dict[str, float]
    batched: bool
    name: str


def _check_config(
    name: str,
    fn: object,
    fn_name: str,
    z0: object,
    solver: str,
    defaults: dict[str, dict[str, float]],
    tol: float,
    max_iter: int,
    backward_tol: float | None,
    backward_max_iter: int | None,
    on_fail: str,
    solver_options: Mapping[str, float] | None,
    batched: bool,
) -> _Config:
    if not callable(fn):
        raise TypeError(f"{fn_name} must be callable, got {type(fn).__name__}")
    z = check_floating(z0, "z0")
    if batched and z.dim() == 0:
        raise ValueError(
            "z0 must have a batch dimension (B, ...) when batched=True, got a 0-d tensor; "
            "pass batched=False for a single problem"
        )
    if solver not in defaults:
        raise ValueError(f"solver must be one of {tuple(defaults)}, got {solver!r}")
    tol = check_positive(tol, "tol")
    backward_tol = tol if backward_tol is None else check_positive(backward_tol, "backward_tol")
    for arg, count in (("max_iter", max_iter), ("backward_max_iter", backward_max_iter)):
        if count is None:
            continue
        if isinstance(count, bool) or not isinstance(count, int):
            raise TypeError(f"{arg} must be an int, got {type(count).__name__}")
        if count < 1:
            raise ValueError(f"{arg} must be >= 1, got {count}")
    if on_fail not in ("raise", "warn"):
        raise ValueError(f"on_fail must be 'raise' or 'warn', got {on_fail!r}")
    options = dict(defaults[solver])
    for key, value in (solver_options or {}).items():
        if key not in options:
            raise ValueError(
                f"solver_options for {solver!r} accepts {sorted(options)}, got key {key!r}"
            )
        options[key] = value
    for key in ("memory", "max_halvings"):
        if key in options:
            v = options[key]
            low = 1 if key == "memory" else 0
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"solver_options[{key!r}] must be an int >= {low}, got {v!r}")
    if "lam" in options:
        check_positive(options["lam"], "solver_options['lam']", strict=False)
    if "damping" in options:
        check_positive(options["damping"], "solver_options['damping']")
    return _Config(
        solver=solver,
        tol=tol,
        max_iter=max_iter,
        backward_tol=backward_tol,
        backward_max_iter=max_iter if backward_max_iter is None else backward_max_iter,
        on_fail=on_fail,
        options=options,
        batched=batched,
        name=name,
    )


def _check_out(out: object, fn_name: str, shape: torch.Size) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or out.shape != shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"{fn_name}(z, *params) must return a tensor of z's shape {tuple(shape)}, got {got}"
        )
    return out


def _flat_map(
    fn: Callable[..., torch.Tensor], fn_name: str, shape: torch.Size, params: tuple[Any, ...]
) -> Map:
    """``fn(·, *params)`` on flattened rows ``(B, D) -> (B, D)``, checking the output shape."""

    def F(x: torch.Tensor) -> torch.Tensor:
        return _check_out(fn(x.reshape(shape), *params), fn_name, shape).reshape(x.shape)

    return F


def _report(cfg: _Config, res: _Result, what: str, tol: float) -> None:
    if res.converged:
        return
    worst = float(res.residuals.max())
    msg = (
        f"{cfg.name} {what} did not converge: residual {worst:.3e} > tol {tol:.1e} after "
        f"{res.iterations} iterations (solver={cfg.solver!r})"
    )
    if cfg.on_fail == "raise":
        raise ConvergenceError(msg, worst, res.iterations)
    warnings.warn(msg, TorchloomWarning, stacklevel=4)


def _detach_params(params: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(p.detach() if isinstance(p, torch.Tensor) else p for p in params)


def _eps(x: torch.Tensor) -> float:
    return float(torch.finfo(x.dtype).eps)


def _fixed_point_residual(x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
    return _rownorm(fx - x) / (_rownorm(fx) + _eps(x))


def _solve_fixed_point(
    F: Map, x0: torch.Tensor, cfg: _Config, tol: float, max_iter: int
) -> _Result:
    if cfg.solver == "picard":
        return _picard(F, x0, tol, max_iter, _fixed_point_residual)
    if cfg.solver == "anderson":
        return _anderson(
            F,
            x0,
            tol,
            max_iter,
            _fixed_point_residual,
            memory=int(cfg.options["memory"]),
            lam=float(cfg.options["lam"]),
            damping=float(cfg.options["damping"]),
        )

    # Broyden on G(x) = F(x) − x, whose Jacobian is J_F − I ≈ −I: start from H = −I.
    def G(x: torch.Tensor) -> torch.Tensor:
        return F(x) - x

    def residual(x: torch.Tensor, gx: torch.Tensor) -> torch.Tensor:
        return _rownorm(gx) / (_rownorm(gx + x) + _eps(x))

    h0 = -torch.ones(x0.shape[0], dtype=x0.dtype, device=x0.device)
    return _broyden(G, x0, tol, max_iter, residual, h0, memory=int(cfg.options["memory"]))


def _rayleigh_inverse(vjp: Map, v: torch.Tensor) -> torch.Tensor:
    """Initial inverse-Jacobian scale ``1 / (vᵀ J v / vᵀ v)`` per row (1 where undefined)."""
    c = (vjp(v) * v).sum(-1) / (v * v).sum(-1)
    good = torch.isfinite(c) & (c.abs() > _eps(v))
    return torch.where(good, 1 / torch.where(good, c, torch.ones_like(c)), torch.ones_like(c))


def _vjp_flat(G: Map, x: torch.Tensor) -> tuple[torch.Tensor, Map]:
    """Evaluate ``G`` at ``x`` ``(B, D)`` once; return ``G(x)`` and ``w ↦ J_Gᵀ w``."""
    with torch.enable_grad():
        xx = x.detach().requires_grad_(True)
        out = G(xx)

    def vjp(w: torch.Tensor) -> torch.Tensor:
        if not out.requires_grad:  # G does not depend on x
            return torch.zeros_like(w)
        (g,) = torch.autograd.grad(out, xx, w, retain_graph=True, materialize_grads=True)
        return g

    return out.detach(), vjp


# --------------------------------------------------------------------------- autograd glue


class _FixedPointIFT(torch.autograd.Function):
    """Identity on ``f(z*, θ)`` whose backward replaces ``v`` by ``(I − J_fᵀ)⁻¹ v``."""

    @staticmethod
    def forward(
        z_out: torch.Tensor,
        z_star: torch.Tensor,
        f: Callable[..., torch.Tensor],
        cfg: _Config,
        *params: Any,
    ) -> torch.Tensor:
        return z_out.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        _, z_star, f, cfg, *params = inputs
        tensors = [p for p in params if isinstance(p, torch.Tensor)]
        ctx.save_for_backward(z_star, *tensors)
        ctx.f = f
        ctx.cfg = cfg
        ctx.is_tensor = [isinstance(p, torch.Tensor) for p in params]
        ctx.others = [p for p in params if not isinstance(p, torch.Tensor)]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, v: torch.Tensor) -> tuple[Any, ...]:
        z_star, params = _unpack(ctx)
        cfg: _Config = ctx.cfg
        B = z_star.shape[0]
        F = _flat_map(ctx.f, "f", z_star.shape, _detach_params(params))
        _, vjp = _vjp_flat(F, z_star.reshape(B, -1))
        vf = v.reshape(B, -1)

        def h(w: torch.Tensor) -> torch.Tensor:  # w ↦ J_fᵀ w + v, fixed point w = (I − J_fᵀ)⁻¹ v
            return vjp(w) + vf

        res = _solve_fixed_point(h, vf.clone(), cfg, cfg.backward_tol, cfg.backward_max_iter)
        _report(cfg, res, "backward (implicit gradient)", cfg.backward_tol)
        return (res.x.reshape(v.shape), None, None, None, *([None] * len(ctx.is_tensor)))


class _RootIFT(torch.autograd.Function):
    """Returns ``z*``; its backward sends ``w = −J_g⁻ᵀ v`` into ``g(z*, θ)``."""

    @staticmethod
    def forward(
        g_out: torch.Tensor,
        z_star: torch.Tensor,
        g: Callable[..., torch.Tensor],
        cfg: _Config,
        *params: Any,
    ) -> torch.Tensor:
        return z_star.clone()

    setup_context = _FixedPointIFT.setup_context

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, v: torch.Tensor) -> tuple[Any, ...]:
        z_star, params = _unpack(ctx)
        cfg: _Config = ctx.cfg
        B = z_star.shape[0]
        vf = v.reshape(B, -1)
        G = _flat_map(ctx.f, "g", z_star.shape, _detach_params(params))
        if cfg.solver == "newton":
            _, J = _jacobian(G, z_star.reshape(B, -1))
            w = _linear_solve(J.transpose(1, 2), -vf)
        else:
            _, vjp = _vjp_flat(G, z_star.reshape(B, -1))

            def r(w: torch.Tensor) -> torch.Tensor:  # J_gᵀ w + v = 0
                return vjp(w) + vf

            vnorm = _rownorm(vf)

            def residual(w: torch.Tensor, rw: torch.Tensor) -> torch.Tensor:
                return _rownorm(rw) / (vnorm + _eps(w))

            h0 = _rayleigh_inverse(vjp, vf)
            res = _broyden(
                r,
                torch.zeros_like(vf),
                cfg.backward_tol,
                cfg.backward_max_iter,
                residual,
                h0,
                memory=int(cfg.options["memory"]),
            )
            _report(cfg, res, "backward (implicit gradient)", cfg.backward_tol)
            w = res.x
        return (w.reshape(v.shape), None, None, None, *([None] * len(ctx.is_tensor)))


def _unpack(ctx: Any) -> tuple[torch.Tensor, tuple[Any, ...]]:
    z_star, *tensors = ctx.saved_tensors
    it_t, it_o = iter(tensors), iter(ctx.others)
    params = tuple(next(it_t) if is_t else next(it_o) for is_t in ctx.is_tensor)
    return z_star, params


def _as_batched(z0: torch.Tensor, batched: bool) -> tuple[torch.Tensor, int]:
    z = z0 if batched else z0.reshape(1, *z0.shape)
    return z.detach(), z.shape[0]


def _info(res: _Result) -> SolverInfo:
    return SolverInfo(
        iterations=res.iterations,
        residual=float(res.residuals.max()),
        residuals=res.residuals,
        converged=res.converged,
    )


# --------------------------------------------------------------------------- public API


@overload
def fixed_point(
    f: Callable[..., torch.Tensor],
    z0: torch.Tensor,
    *params: Any,
    solver: FixedPointSolver = ...,
    tol: float = ...,
    max_iter: int = ...,
    backward_tol: float | None = ...,
    backward_max_iter: int | None = ...,
    on_fail: OnFail = ...,
    return_info: Literal[False] = ...,
    batched: bool = ...,
    solver_options: Mapping[str, float] | None = ...,
) -> torch.Tensor: ...


@overload
def fixed_point(
    f: Callable[..., torch.Tensor],
    z0: torch.Tensor,
    *params: Any,
    solver: FixedPointSolver = ...,
    tol: float = ...,
    max_iter: int = ...,
    backward_tol: float | None = ...,
    backward_max_iter: int | None = ...,
    on_fail: OnFail = ...,
    return_info: Literal[True],
    batched: bool = ...,
    solver_options: Mapping[str, float] | None = ...,
) -> tuple[torch.Tensor, SolverInfo]: ...


def fixed_point(
    f: Callable[..., torch.Tensor],
    z0: torch.Tensor,
    *params: Any,
    solver: FixedPointSolver = "anderson",
    tol: float = 1e-6,
    max_iter: int = 100,
    backward_tol: float | None = None,
    backward_max_iter: int | None = None,
    on_fail: OnFail = "raise",
    return_info: bool = False,
    batched: bool = True,
    solver_options: Mapping[str, float] | None = None,
) -> torch.Tensor | tuple[torch.Tensor, SolverInfo]:
    """Solve ``z = f(z, *params)`` and differentiate the solution implicitly.

    The forward iterates without a graph (``torch.no_grad``) from ``z0`` until the relative
    residual ``‖f(z) − z‖ / (‖f(z)‖ + eps)`` of every batch element is at most ``tol``; the
    result is one differentiable application ``f(z*, *params)``. Its backward solves
    ``(I − J_fᵀ) w = v`` with the same solver on vector-Jacobian products
    (``backward_tol``/``backward_max_iter`` default to ``tol``/``max_iter``).

    Solvers: ``"anderson"`` (Anderson acceleration; options ``memory=5``, ``lam=1e-4``
    relative regulariser, ``damping=1.0``), ``"broyden"`` (good Broyden on ``f(z) − z``;
    ``memory=32`` low-rank updates), ``"picard"`` (plain iteration, needs a contraction).
    ``on_fail="raise"`` raises :class:`ConvergenceError`, ``"warn"`` emits a
    ``TorchloomWarning`` and returns the best iterate; both report the residual reached.

    Shapes:
        z0: ``(B, ...)`` (any shape with ``batched=False``); ``f(z, *params)``: same shape as
        ``z``. Returns ``z*`` of that shape, and with ``return_info=True`` also a
        :class:`SolverInfo` (``residuals`` ``(B,)``).
    """
    cfg = _check_config(
        "fixed_point",
        f,
        "f",
        z0,
        solver,
        _FIXED_POINT_OPTIONS,
        tol,
        max_iter,
        backward_tol,
        backward_max_iter,
        on_fail,
        solver_options,
        batched,
    )
    z, B = _as_batched(z0, batched)
    shape = z.shape

    def fb(zb: torch.Tensor, *ps: Any) -> torch.Tensor:  # f on the batched view
        if batched:
            return f(zb, *ps)
        return _check_out(f(zb.reshape(z0.shape), *ps), "f", z0.shape).reshape(shape)

    with torch.no_grad():
        F = _flat_map(fb, "f", shape, _detach_params(params))
        res = _solve_fixed_point(F, z.reshape(B, -1), cfg, cfg.tol, cfg.max_iter)
    _report(cfg, res, "forward solve", cfg.tol)
    z_star = res.x.reshape(shape)
    # one differentiable application: the graph reaches params (and tensors f closes over)
    z_out = _check_out(fb(z_star, *params), "f", shape)
    if z_out.requires_grad:
        z_out = _FixedPointIFT.apply(z_out, z_star, fb, cfg, *params)
    out = z_out if batched else z_out.reshape(z0.shape)
    return (out, _info(res)) if return_info else out


@overload
def root_solve(
    g: Callable[..., torch.Tensor],
    z0: torch.Tensor,
    *params: Any,
    solver: RootSolver = ...,
    tol: float = ...,
    max_iter: int = ...,
    backward_tol: float | None = ...,
    backward_max_iter: int | None = ...,
    on_fail: OnFail = ...,
    return_info: Literal[False] = ...,
    batched: bool = ...,
    solver_options: Mapping[str, float] | None = ...,
) -> torch.Tensor: ...


@overload
def root_solve(
    g: Callable[..., torch.Tensor],
    z0: torch.Tensor,
    *params: Any,
    solver: RootSolver = ...,
    tol: float = ...,
    max_iter: int = ...,
    backward_tol: float | None = ...,
    backward_max_iter: int | None = ...,
    on_fail: OnFail = ...,
    return_info: Literal[True],
    batched: bool = ...,
    solver_options: Mapping[str, float] | None = ...,
) -> tuple[torch.Tensor, SolverInfo]: ...


def root_solve(
    g: Callable[..., torch.Tensor],
    z0: torch.Tensor,
    *params: Any,
    solver: RootSolver = "broyden",
    tol: float = 1e-6,
    max_iter: int = 100,
    backward_tol: float | None = None,
    backward_max_iter: int | None = None,
    on_fail: OnFail = "raise",
    return_info: bool = False,
    batched: bool = True,
    solver_options: Mapping[str, float] | None = None,
) -> torch.Tensor | tuple[torch.Tensor, SolverInfo]:
    """Solve ``g(z, *params) = 0`` and differentiate the root implicitly.

    The forward runs without a graph until ``‖g(z)‖ <= tol`` for every batch element (an
    absolute tolerance on ``g``). The backward solves ``J_gᵀ w = −v`` with the same solver
    (relative tolerance ``‖J_gᵀ w + v‖ / ‖v‖ <= backward_tol``) and propagates ``w`` through
    one evaluation of ``g(z*, *params)``.

    Solvers: ``"broyden"`` (good Broyden, initial inverse Jacobian ``I / c`` with ``c`` the
    Rayleigh quotient ``gᵀJg / gᵀg`` from one vjp, backtracking on ``‖g‖``; options
    ``memory=32``, ``max_halvings=8``) and ``"newton"`` (dense per-element Jacobian from ``D``
    vector-Jacobian products, backtracking line search; for small ``D``; option
    ``max_halvings=8``).

    Shapes:
        z0: ``(B, ...)`` (any shape with ``batched=False``); ``g(z, *params)``: same shape.
        Returns ``z*`` of that shape (and a :class:`SolverInfo` with ``return_info=True``).
    """
    cfg = _check_config(
        "root_solve",
        g,
        "g",
        z0,
        solver,
        _ROOT_OPTIONS,
        tol,
        max_iter,
        backward_tol,
        backward_max_iter,
        on_fail,
        solver_options,
        batched,
    )
    z, B = _as_batched(z0, batched)
    shape = z.shape

    def gb(zb: torch.Tensor, *ps: Any) -> torch.Tensor:  # g on the batched view
        if batched:
            return g(zb, *ps)
        return _check_out(g(zb.reshape(z0.shape), *ps), "g", z0.shape).reshape(shape)

    def residual(x: torch.Tensor, gx: torch.Tensor) -> torch.Tensor:
        return _rownorm(gx)

    G = _flat_map(gb, "g", shape, _detach_params(params))
    x0 = z.reshape(B, -1)
    halvings = int(cfg.options["max_halvings"])
    with torch.no_grad():
        if solver == "newton":
            res = _newton(G, x0, cfg.tol, cfg.max_iter, residual, halvings)
        else:
            g0, vjp = _vjp_flat(G, x0)
            h0 = _rayleigh_inverse(vjp, g0)
            del vjp  # frees the graph of that one evaluation
            memory = int(cfg.options["memory"])
            res = _broyden(G, x0, cfg.tol, cfg.max_iter, residual, h0, memory, halvings)
    _report(cfg, res, "forward solve", cfg.tol)
    z_star = res.x.reshape(shape)
    # g(z*, θ) ≈ 0 in value; its graph carries w = −J_g⁻ᵀ v to params in the backward
    g_out = _check_out(gb(z_star, *params), "g", shape)
    out = z_star.clone()
    if g_out.requires_grad:
        out = _RootIFT.apply(g_out, z_star, gb, cfg, *params)
    out = out if batched else out.reshape(z0.shape)
    return (out, _info(res)) if return_info else out
