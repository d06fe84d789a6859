"""Thin, batched helpers on ``torch.func``: jvp, vjp, per-sample Jacobians, hvp, Jacobian traces.

``f`` must be written with torch operations that ``torch.func`` can transform (no in-place
updates of captured tensors, no ``.item()``). "Batched" means the leading dimension ``B`` of
``x`` indexes independent samples: ``f(x)[b]`` depends on ``x[b]`` only. The results stay
differentiable with ordinary autograd, so they can be used inside a loss (a CNF's divergence, a
Jacobian regulariser).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.func

from torchloom.core import rng
from torchloom.core.checks import check_floating

__all__ = [
    "divergence",
    "hvp",
    "jacobian",
    "jvp",
    "trace_estimate",
    "vjp",
]

Tensors = torch.Tensor | tuple[torch.Tensor, ...]


def _check_callable(f: object, name: str = "f") -> None:
    if not callable(f):
        raise TypeError(f"{name} must be callable, got {type(f).__name__}")


def _as_tuple(x: Tensors, name: str) -> tuple[torch.Tensor, ...]:
    items = (x,) if isinstance(x, torch.Tensor) else x
    if not isinstance(items, tuple) or not all(isinstance(t, torch.Tensor) for t in items):
        raise TypeError(f"{name} must be a tensor or a tuple of tensors, got {type(x).__name__}")
    return items


def _check_like(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...], name: str) -> None:
    """``b`` must match ``a`` in structure and shape (no silent broadcasting)."""
    if len(a) != len(b):
        raise ValueError(f"{name} must have {len(a)} tensors, got {len(b)}")
    for i, (s, t) in enumerate(zip(a, b)):
        if s.shape != t.shape:
            where = f"{name}[{i}]" if len(a) > 1 else name
            raise ValueError(f"{where} must have shape {tuple(s.shape)}, got {tuple(t.shape)}")


def jvp(f: Callable[..., Any], primals: Tensors, tangents: Tensors) -> tuple[Any, Any]:
    """``(f(*primals), J_f · tangents)`` by forward-mode AD.

    ``primals`` and ``tangents`` are a tensor or matching tuples of tensors; the outputs have
    the structure of ``f``'s output.
    """
    _check_callable(f)
    p = _as_tuple(primals, "primals")
    t = _as_tuple(tangents, "tangents")
    _check_like(p, t, "tangents")
    res: tuple[Any, ...] = torch.func.jvp(f, p, t)
    return res[0], res[1]


def vjp(f: Callable[..., Any], primals: Tensors, cotangents: Any) -> tuple[Any, Tensors]:
    """``(f(*primals), cotangentsᵀ J_f)`` by reverse-mode AD.

    ``cotangents`` has the structure and shapes of ``f``'s output. The second result is a tensor
    when ``primals`` is a tensor, else a tuple matching ``primals``.
    """
    _check_callable(f)
    p = _as_tuple(primals, "primals")
    res: tuple[Any, ...] = torch.func.vjp(f, *p)
    out, vjp_fn = res[0], res[1]
    if isinstance(out, torch.Tensor):
        _check_like((out,), _as_tuple(cotangents, "cotangents"), "cotangents")
    grads = vjp_fn(cotangents)
    return out, (grads[0] if isinstance(primals, torch.Tensor) else tuple(grads))


def jacobian(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batched: bool = True
) -> torch.Tensor:
    """Jacobian of ``f`` at ``x`` by reverse mode.

    ``batched=True``: per-sample Jacobians ``∂f(x)[b] / ∂x[b]`` via ``vmap(jacrev)``, each sample
    passed to ``f`` with a batch dimension of one.

    Shapes:
        batched: x ``(B, *I)``, ``f(x)`` ``(B, *O)`` -> ``(B, *O, *I)``.
        full: x ``(*I)``, ``f(x)`` ``(*O)`` -> ``(*O, *I)``.
    """
    _check_callable(f)
    check_floating(x, "x")
    if not batched:
        full: torch.Tensor = torch.func.jacrev(f)(x)
        return full
    if x.dim() == 0:
        raise ValueError(
            "x must have a batch dimension (B, ...) when batched=True, got a 0-d tensor"
        )

    def single(xi: torch.Tensor) -> torch.Tensor:
        out = f(xi.unsqueeze(0))
        if not isinstance(out, torch.Tensor) or out.dim() == 0 or out.shape[0] != 1:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"f must map (1, ...) to (1, ...) for batched=True, got {got}")
        return out.squeeze(0)

    jac: torch.Tensor = torch.func.vmap(torch.func.jacrev(single))(x)
    return jac


def hvp(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f(x), H v)`` with ``H`` the Hessian of ``f(x).sum()`` (forward-over-reverse).

    ``f`` returns a scalar, or per-sample scalars ``(B,)``, which are summed: for independent
    samples that gives every sample's own Hessian-vector product at once.

    Shapes:
        x, v: ``(*)`` (``(B, *)`` batched); output: ``()`` or ``(B,)``, and ``(*)`` like ``x``.
    """
    _check_callable(f)
    check_floating(x, "x")
    check_floating(v, "v")
    _check_like((x,), (v,), "v")

    def summed(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = f(y)
        return out.sum(), out

    grad_fn = torch.func.grad(summed, has_aux=True)
    res: tuple[Any, ...] = torch.func.jvp(grad_fn, (x,), (v,), has_aux=True)
    _, hv, out = res
    return out, hv


def _probe(x: torch.Tensor, distribution: str, generator: torch.Generator | None) -> torch.Tensor:
    if distribution == "rademacher":
        r = rng.randint(0, 2, x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return 2 * r - 1
    return rng.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def divergence(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    n_samples: int = 1,
    distribution: Literal["rademacher", "gaussian"] = "rademacher",
    generator: torch.Generator | None = None,
    exact: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f(x), tr ∂f(x)[b]/∂x[b])``: the output and its per-sample Jacobian trace, one pass of f.

    The pair a continuous normalising flow needs. With ``exact=False`` the trace is Hutchinson's
    unbiased estimate ``mean_k εₖᵀ J εₖ`` over ``n_samples`` probes (Rademacher ±1 or standard
    Gaussian, drawn from ``generator``), each one vector-Jacobian product. With ``exact=True``
    it is the exact trace from ``D = prod(*S)`` vector-Jacobian products (basis vectors).
    Both are differentiable (in ``x`` and in parameters ``f`` closes over).

    Shapes:
        x: ``(B, *S)``; ``f(x)``: ``(B, *S)``. Returns ``(B, *S)`` and ``(B,)``.
    """
    _check_callable(f)
    check_floating(x, "x")
    if x.dim() == 0:
        raise ValueError("x must have shape (B, *S), got a 0-d tensor")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}")
    if distribution not in ("rademacher", "gaussian"):
        raise ValueError(f"distribution must be 'rademacher' or 'gaussian', got {distribution!r}")
    res: tuple[Any, ...] = torch.func.vjp(f, x)
    out, vjp_fn = res[0], res[1]
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"f(x) must have x's shape {tuple(x.shape)} for a trace, got {got}")
    B = x.shape[0]
    if exact:
        D = math.prod(x.shape[1:])
        # basis[k] = e_k in every sample: one vjp gives row k of every sample's Jacobian
        basis = torch.eye(D, dtype=x.dtype, device=x.device)[:, None, :].expand(D, B, D)
        rows = torch.func.vmap(vjp_fn)(basis.reshape(D, *x.shape))[0]  # (D, B, *S)
        trace = rows.reshape(D, B, D).diagonal(dim1=0, dim2=2).sum(-1)
        return out, trace
    if n_samples == 1:
        eps = _probe(x, distribution, generator)
        return out, (vjp_fn(eps)[0] * eps).reshape(B, -1).sum(-1)
    eps = _probe(x.expand(n_samples, *x.shape), distribution, generator)  # (n, B, *S)
    g = torch.func.vmap(vjp_fn)(eps)[0]
    return out, (g * eps).reshape(n_samples, B, -1).sum(-1).mean(0)


def trace_estimate(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    n_samples: int = 1,
    distribution: Literal["rademacher", "gaussian"] = "rademacher",
    generator: torch.Generator | None = None,
    exact: bool = False,
) -> torch.Tensor:
    """Per-sample trace of the Jacobian ``tr ∂f(x)[b]/∂x[b]`` (Hutchinson, or exact).

    See :func:`divergence` (which also returns ``f(x)``) for the estimator and options.

    Shapes:
        x: ``(B, *S)``; ``f(x)``: ``(B, *S)``; output: ``(B,)``.
    """
    return divergence(f, x, n_samples, distribution, generator, exact)[1]
