"""Neural Tangent Kernel: empirical kernels of any module, analytic NNGP/NTK of wide MLPs,
and infinite-width predictions of gradient-descent training.

Jacot, Gabriel & Hongler, *Neural Tangent Kernel: Convergence and Generalization in Neural
Networks* (NeurIPS 2018). For a network in NTK parameterisation

    f^{1}(x) = sigma_w / sqrt(n_0) W^0 x + sigma_b b^0,
    f^{l+1}(x) = sigma_w / sqrt(n_l) W^l phi(f^l(x)) + sigma_b b^l,   W, b ~ N(0, 1),

the output is, as the widths grow, a Gaussian process with covariance (NNGP)

    Sigma^1(x, x') = sigma_w^2 x.x' / n_0 + sigma_b^2,
    Sigma^{l+1}(x, x') = sigma_w^2 E_{f ~ GP(0, Sigma^l)}[phi(f(x)) phi(f(x'))] + sigma_b^2,

and the tangent kernel Theta = sum_p (d f / d p)(d f / d p)^T converges to (Jacot, Thm. 1)

    Theta^1 = Sigma^1,
    Theta^{l+1}(x, x') = Theta^l(x, x') sigma_w^2 E[phi'(f(x)) phi'(f(x'))] + Sigma^{l+1}(x, x').

Under gradient flow on ``C(f) = 1/(2N) sum_i ||f(x_i) - y_i||^2`` with learning rate ``eta``
the function follows the linear ODE ``df/dt = -eta/N Theta (f - y)`` (Jacot, Sec. 5).
"""

from __future__ import annotations

import itertools
import math
from typing import Literal, NamedTuple

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from torchloom.core.checks import check_floating, check_ndim, check_positive
from torchloom.theory._gaussian import (
    ActivationLike,
    Method,
    get_activation,
    pair_expectations,
    resolve_method,
)

__all__ = [
    "NTKMLP",
    "InfiniteWidthKernels",
    "NTKLinear",
    "empirical_ntk",
    "infinite_width_kernels",
    "nngp_kernel",
    "nngp_posterior",
    "ntk_kernel",
    "predict_gd",
]


# --------------------------------------------------------------------------- empirical kernel


def empirical_ntk(
    model: nn.Module,
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    *,
    mode: Literal["jacobian", "ntk_vp"] = "jacobian",
    trace: bool = False,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Empirical neural tangent kernel ``Theta(x1, x2) = J(x1) J(x2)^T`` of ``model``.

    The Jacobian is taken with respect to every parameter with ``requires_grad``; buffers are
    held fixed (put BatchNorm in ``eval()`` mode: per-example Jacobians need per-example
    outputs).

    Args:
        model: any module mapping ``(N, *in)`` to ``(N, *out)``; ``O = prod(out)``.
        x1: ``(N1, *in)``. x2: ``(N2, *in)``; defaults to ``x1``.
        mode: ``"jacobian"`` contracts per-example Jacobians (``vmap(jacrev)``);
            ``"ntk_vp"`` never forms a Jacobian: it computes ``J(x1) (J(x2)^T e_b)`` with one
            vjp and one jvp per output basis vector (cheaper in memory for big models).
        trace: return the mean over output dimensions of the diagonal, ``(N1, N2)``, instead
            of the full ``(N1, N2, O, O)`` kernel. For networks with i.i.d. outputs it is
            directly comparable with the analytic per-output kernel.
        chunk_size: forwarded to ``torch.func.vmap`` to bound memory.

    Returns:
        ``(N1, N2, O, O)`` with entry ``[i, j, a, b] = <d f_a(x1_i)/d p, d f_b(x2_j)/d p>``,
        or ``(N1, N2)`` when ``trace``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    x1 = check_floating(x1, "x1")
    x2 = x1 if x2 is None else check_floating(x2, "x2")
    if x1.dim() < 1 or x2.dim() < 1 or x1.shape[1:] != x2.shape[1:]:
        raise ValueError(
            f"x1 and x2 must be batches of the same input shape, got {tuple(x1.shape)} "
            f"and {tuple(x2.shape)}"
        )
    if mode not in ("jacobian", "ntk_vp"):
        raise ValueError(f"mode must be 'jacobian' or 'ntk_vp', got {mode!r}")
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    if not params:
        raise ValueError("model has no parameters with requires_grad=True")
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def f_single(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = functional_call(model, (p, buffers), (x.unsqueeze(0),))
        return out.reshape(-1)

    if mode == "jacobian":
        jac = vmap(jacrev(f_single), in_dims=(None, 0), chunk_size=chunk_size)
        j1 = jac(params, x1)
        j2 = j1 if x2 is x1 else jac(params, x2)
        eq = "iaP,jaP->ij" if trace else "iaP,jbP->ijab"
        terms = [torch.einsum(eq, j1[k].flatten(2), j2[k].flatten(2)) for k in params]
        out = torch.stack(terms).sum(0)
        return out / next(iter(j1.values())).shape[1] if trace else out

    def f_batch(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = functional_call(model, (p, buffers), (x,))
        return out.reshape(x.shape[0], -1)

    # One vjp per output coordinate (j, b) of the x2 batch gives J(x2_j)_b^T (examples do not
    # interact, as for per-example Jacobians); one batched jvp over x1 then gives a column.
    res = vjp(lambda p: f_batch(p, x2), params)
    out2, vjp_fn = res[0], res[1]
    n2, o = out2.shape

    def column(cotangent: torch.Tensor) -> torch.Tensor:
        (tangent,) = vjp_fn(cotangent)
        col: torch.Tensor = jvp(lambda p: f_batch(p, x1), (params,), (tangent,))[1]
        return col

    basis = torch.eye(n2 * o, dtype=out2.dtype, device=out2.device).reshape(n2 * o, n2, o)
    cols = vmap(column, chunk_size=chunk_size)(basis)  # (N2 * O, N1, O): [(j, b), i, a]
    k = cols.reshape(n2, o, x1.shape[0], o).permute(2, 0, 3, 1)
    return k.diagonal(dim1=-2, dim2=-1).mean(-1) if trace else k


# --------------------------------------------------------------------------- NTK-parameterised MLP


class NTKLinear(nn.Module):
    """Dense layer in NTK parameterisation: ``y = sqrt(sigma_w2 / n_in) x W^T + sqrt(sigma_b2) b``
    with ``W, b ~ N(0, 1)`` (Jacot et al. 2018, Sec. 2). ``parameterization="standard"`` draws
    ``W ~ N(0, sigma_w2 / n_in)``, ``b ~ N(0, sigma_b2)`` and applies no multiplier (same NNGP,
    a different NTK).

    Shapes: ``(*, n_in) -> (*, n_out)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        sigma_w2: float = 1.0,
        sigma_b2: float = 0.0,
        parameterization: Literal["ntk", "standard"] = "ntk",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if parameterization not in ("ntk", "standard"):
            raise ValueError(
                f"parameterization must be 'ntk' or 'standard', got {parameterization!r}"
            )
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.sigma_w2 = check_positive(sigma_w2, "sigma_w2", strict=False)
        self.sigma_b2 = check_positive(sigma_b2, "sigma_b2", strict=False)
        self.parameterization = parameterization
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **kw))  # type: ignore[arg-type]
        self.bias = nn.Parameter(torch.empty(out_features, **kw))  # type: ignore[arg-type]
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        with torch.no_grad():
            w = torch.randn(self.weight.shape, generator=generator, dtype=self.weight.dtype)
            b = torch.randn(self.bias.shape, generator=generator, dtype=self.bias.dtype)
            if self.parameterization == "standard":
                w = w * math.sqrt(self.sigma_w2 / self.in_features)
                b = b * math.sqrt(self.sigma_b2)
            self.weight.copy_(w)
            self.bias.copy_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"input must have last dimension {self.in_features}, got {tuple(x.shape)}"
            )
        if self.parameterization == "standard":
            return torch.nn.functional.linear(x, self.weight, self.bias)
        w_scale = math.sqrt(self.sigma_w2 / self.in_features)
        return w_scale * (x @ self.weight.T) + math.sqrt(self.sigma_b2) * self.bias

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, sigma_w2={self.sigma_w2}, "
            f"sigma_b2={self.sigma_b2}, parameterization={self.parameterization!r}"
        )


class NTKMLP(nn.Module):
    """Fully connected network whose infinite-width kernels are :func:`nngp_kernel` and
    :func:`ntk_kernel` with the same ``(depth, activation, sigma_w2, sigma_b2)``.

    ``depth`` hidden layers of ``width`` units, then a linear read-out:
    ``Dense -> phi -> ... -> Dense -> phi -> Dense``.

    Shapes: ``(B, in_features) -> (B, out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        width: int,
        depth: int,
        out_features: int = 1,
        *,
        activation: ActivationLike = "relu",
        sigma_w2: float = 2.0,
        sigma_b2: float = 0.0,
        parameterization: Literal["ntk", "standard"] = "ntk",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        self.activation = get_activation(activation)
        sizes = [in_features] + [width] * depth + [out_features]
        self.layers = nn.ModuleList(
            NTKLinear(
                a,
                b,
                sigma_w2=sigma_w2,
                sigma_b2=sigma_b2,
                parameterization=parameterization,
                device=device,
                dtype=dtype,
            )
            for a, b in itertools.pairwise(sizes)
        )

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        for layer in self.layers:
            layer.reset_parameters(generator)  # type: ignore[operator]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = self.activation(x)
            x = layer(x)
        return x


# --------------------------------------------------------------------------- analytic kernels


class InfiniteWidthKernels(NamedTuple):
    """Analytic kernels of the read-out: ``nngp`` and ``ntk``, each ``(N1, N2)``."""

    nngp: torch.Tensor
    ntk: torch.Tensor


def _check_inputs(x1: torch.Tensor, x2: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    x1 = check_ndim(check_floating(x1, "x1"), "x1", 2, "(N1, D)")
    if x2 is None:
        return x1, x1
    x2 = check_ndim(check_floating(x2, "x2"), "x2", 2, "(N2, D)")
    if x2.shape[1] != x1.shape[1]:
        raise ValueError(
            f"x1 and x2 must have the same feature dimension, got {tuple(x1.shape)} "
            f"and {tuple(x2.shape)}"
        )
    return x1, x2


def infinite_width_kernels(
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    *,
    depth: int,
    activation: ActivationLike = "relu",
    sigma_w2: float = 2.0,
    sigma_b2: float = 0.0,
    method: Method = "auto",
    nodes: int = 64,
) -> InfiniteWidthKernels:
    """NNGP and NTK of an infinitely wide :class:`NTKMLP` (``depth`` hidden layers).

    ``method="auto"`` uses the closed forms for ReLU (arc-cosine), erf and identity and
    Gauss–Hermite quadrature with ``nodes`` points per dimension for any other activation
    (a name or a pointwise callable); ``"closed"`` warns and falls back to quadrature where no
    closed form exists; ``"quadrature"`` forces quadrature.

    Shapes: ``x1 (N1, D)``, ``x2 (N2, D)`` -> two ``(N1, N2)`` kernels.
    """
    x1, x2 = _check_inputs(x1, x2)
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    sigma_w2 = check_positive(sigma_w2, "sigma_w2", strict=False)
    sigma_b2 = check_positive(sigma_b2, "sigma_b2", strict=False)
    act = get_activation(activation)
    how = resolve_method(act, method)
    d = x1.shape[1]
    k12 = sigma_w2 * (x1 @ x2.T) / d + sigma_b2
    k11 = (sigma_w2 * (x1 * x1).sum(-1) / d + sigma_b2)[:, None]
    k22 = (sigma_w2 * (x2 * x2).sum(-1) / d + sigma_b2)[None, :]
    theta = k12
    for _ in range(depth):
        e12, de12 = pair_expectations(act, k11, k22, k12, method=how, nodes=nodes)
        e11, _ = pair_expectations(act, k11, k11, k11, method=how, nodes=nodes, derivative=False)
        e22, _ = pair_expectations(act, k22, k22, k22, method=how, nodes=nodes, derivative=False)
        if de12 is None:  # pragma: no cover - derivative=True always returns it
            raise RuntimeError("missing derivative expectation")
        new12 = sigma_w2 * e12 + sigma_b2
        theta = theta * sigma_w2 * de12 + new12
        k12, k11, k22 = new12, sigma_w2 * e11 + sigma_b2, sigma_w2 * e22 + sigma_b2
    return InfiniteWidthKernels(k12, theta)


def nngp_kernel(
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    *,
    depth: int,
    activation: ActivationLike = "relu",
    sigma_w2: float = 2.0,
    sigma_b2: float = 0.0,
    method: Method = "auto",
    nodes: int = 64,
) -> torch.Tensor:
    """NNGP kernel ``Sigma^{L+1}(x1, x2)``, ``(N1, N2)``; see :func:`infinite_width_kernels`."""
    return infinite_width_kernels(
        x1,
        x2,
        depth=depth,
        activation=activation,
        sigma_w2=sigma_w2,
        sigma_b2=sigma_b2,
        method=method,
        nodes=nodes,
    ).nngp


def ntk_kernel(
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    *,
    depth: int,
    activation: ActivationLike = "relu",
    sigma_w2: float = 2.0,
    sigma_b2: float = 0.0,
    method: Method = "auto",
    nodes: int = 64,
) -> torch.Tensor:
    """Limiting NTK ``Theta^{L+1}(x1, x2)``, ``(N1, N2)``; see :func:`infinite_width_kernels`."""
    return infinite_width_kernels(
        x1,
        x2,
        depth=depth,
        activation=activation,
        sigma_w2=sigma_w2,
        sigma_b2=sigma_b2,
        method=method,
        nodes=nodes,
    ).ntk


# --------------------------------------------------------------------------- predictions


def _check_psd(k: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigendecomposition of a symmetric PSD matrix; a clear error otherwise."""
    if not torch.allclose(k, k.T, rtol=1e-5, atol=1e-8 * float(k.abs().max().clamp_min(1))):
        raise ValueError(f"{name} must be symmetric")
    evals, evecs = torch.linalg.eigh((k + k.T) / 2)
    scale = float(evals.abs().max().clamp_min(torch.finfo(k.dtype).tiny))
    tol = 100 * torch.finfo(k.dtype).eps * k.shape[0] * scale
    if float(evals[0]) < -tol:
        raise ValueError(
            f"{name} is not positive semi-definite: smallest eigenvalue {float(evals[0]):.3e} "
            f"(largest {float(evals[-1]):.3e})"
        )
    return evals.clamp_min(0), evecs


def _targets(y: torch.Tensor, n: int, name: str) -> tuple[torch.Tensor, bool]:
    y = check_floating(y, name)
    if y.dim() not in (1, 2) or y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) or ({n}, O), got {tuple(y.shape)}")
    return (y[:, None], True) if y.dim() == 1 else (y, False)


def _check_kernels(
    k_train_train: torch.Tensor,
    k_test_train: torch.Tensor,
    k_test_test: torch.Tensor,
    y_train: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """Validate a GP posterior's kernel blocks ``(N, N)``, ``(M, N)``, ``(M, M)`` and targets.

    Returns ``(k, kx, kt, y, squeeze)`` with ``y`` as ``(N, O)`` and ``squeeze`` telling
    whether it came in as ``(N,)``.
    """
    k = check_ndim(check_floating(k_train_train, "k_train_train"), "k_train_train", 2, "(N, N)")
    n = k.shape[0]
    if k.shape[1] != n:
        raise ValueError(f"k_train_train must be square, got {tuple(k.shape)}")
    kx = check_ndim(check_floating(k_test_train, "k_test_train"), "k_test_train", 2, "(M, N)")
    if kx.shape[1] != n:
        raise ValueError(f"k_test_train must have shape (M, {n}), got {tuple(kx.shape)}")
    m = kx.shape[0]
    kt = check_ndim(check_floating(k_test_test, "k_test_test"), "k_test_test", 2, "(M, M)")
    if kt.shape != (m, m):
        raise ValueError(f"k_test_test must have shape ({m}, {m}), got {tuple(kt.shape)}")
    y, squeeze = _targets(y_train, n, "y_train")
    return k, kx, kt, y, squeeze


def predict_gd(
    k_train_train: torch.Tensor,
    k_test_train: torch.Tensor,
    y_train: torch.Tensor,
    t: float,
    lr: float = 1.0,
    *,
    f0_train: torch.Tensor | None = None,
    f0_test: torch.Tensor | None = None,
    diag_reg: float = 0.0,
) -> torch.Tensor:
    """Test outputs after gradient flow for time ``t`` on the MSE ``1/(2N) sum ||f - y||^2``
    in the kernel (infinite-width / linearised) regime (Jacot et al. 2018, Sec. 5):

        f_test(t) = f0_test + K_te,tr K^{-1} (I - exp(-lr t K / N)) (y - f0_train).

    ``t = math.inf`` gives kernel regression ``K_te,tr K^{-1} (y - f0_train)``. With
    ``f0_* = None`` (the infinite-width mean) the initial outputs are zero. Gradient descent
    for ``s`` steps of size ``lr`` corresponds to ``t = s`` (time in steps, ``lr`` the rate).

    Shapes: ``k_train_train (N, N)``, ``k_test_train (M, N)``, ``y_train (N,)`` or ``(N, O)``
    -> ``(M,)`` or ``(M, O)``.
    """
    k = check_ndim(check_floating(k_train_train, "k_train_train"), "k_train_train", 2, "(N, N)")
    n = k.shape[0]
    if k.shape[1] != n:
        raise ValueError(f"k_train_train must be square, got {tuple(k.shape)}")
    kx = check_ndim(check_floating(k_test_train, "k_test_train"), "k_test_train", 2, "(M, N)")
    if kx.shape[1] != n:
        raise ValueError(f"k_test_train must have shape (M, {n}), got {tuple(kx.shape)}")
    y, squeeze = _targets(y_train, n, "y_train")
    if not (t >= 0):
        raise ValueError(f"t must be >= 0, got {t}")
    check_positive(lr, "lr")
    check_positive(diag_reg, "diag_reg", strict=False)
    resid = y
    if f0_train is not None:
        f0, _ = _targets(f0_train, n, "f0_train")
        if f0.shape != y.shape:
            raise ValueError(f"f0_train must have the shape of y_train {tuple(y_train.shape)}")
        resid = y - f0
    evals, evecs = _check_psd(k + diag_reg * torch.eye(n, dtype=k.dtype, device=k.device), "k")
    if math.isinf(t):
        if float(evals[0]) <= 0:
            raise ValueError(
                "k_train_train is singular (smallest eigenvalue "
                f"{float(evals[0]):.3e}); pass diag_reg > 0 for t = inf"
            )
        gain = 1 / evals
    else:
        # (1 - exp(-c lam)) / lam, finite as lam -> 0 (limit c).
        c = lr * t / n
        lam = evals.clamp_min(torch.finfo(evals.dtype).tiny)
        gain = torch.where(evals > 0, -torch.expm1(-c * lam) / lam, torch.full_like(evals, c))
    out = kx @ (evecs @ (gain[:, None] * (evecs.T @ resid)))
    if f0_test is not None:
        f0t, _ = _targets(f0_test, kx.shape[0], "f0_test")
        if f0t.shape != out.shape:
            raise ValueError(f"f0_test must have shape {tuple(out.shape)}")
        out = out + f0t
    return out[:, 0] if squeeze else out


def nngp_posterior(
    k_train_train: torch.Tensor,
    k_test_train: torch.Tensor,
    k_test_test: torch.Tensor,
    y_train: torch.Tensor,
    noise: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact Bayesian posterior of the NNGP (Lee et al. 2018; Jacot et al. 2018, Sec. 3):

        mean = K_te,tr (K + noise I)^{-1} y,
        cov  = K_te,te - K_te,tr (K + noise I)^{-1} K_tr,te.

    Shapes: ``(N, N)``, ``(M, N)``, ``(M, M)``, ``y (N,)`` or ``(N, O)`` -> mean ``(M,)`` or
    ``(M, O)`` and covariance ``(M, M)`` (shared by every output).
    """
    k, kx, kt, y, squeeze = _check_kernels(k_train_train, k_test_train, k_test_test, y_train)
    n = k.shape[0]
    check_positive(noise, "noise", strict=False)
    kn = k + noise * torch.eye(n, dtype=k.dtype, device=k.device)
    evals, _ = _check_psd(kn, "k_train_train + noise I")
    if float(evals[0]) <= 0:
        raise ValueError(
            f"k_train_train + noise I is singular (smallest eigenvalue {float(evals[0]):.3e}); "
            "pass noise > 0"
        )
    chol = torch.linalg.cholesky(kn)
    alpha = torch.cholesky_solve(y, chol)
    v = torch.linalg.solve_triangular(chol, kx.T, upper=False)
    mean = kx @ alpha
    cov = kt - v.T @ v
    return (mean[:, 0] if squeeze else mean), cov
