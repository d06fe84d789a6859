"""Deep Conjugate Direction Method (Kaneda et al., ICML 2023, paper #32).

A CNN ``q = f(r)`` approximates the direction of ``A⁻¹ r``; the solver uses ``f(r/‖r‖)`` as a
search direction, A-orthogonalises it against the last few directions and takes the exact line
search step ``α = qᵀr / qᵀAq``. Because every step is an exact A-norm minimisation along a
direction, the error's A-norm never increases, whatever the network outputs.

The network is trained without solutions: for unit right-hand sides ``b`` the loss is
``‖b − A q (qᵀb)/(qᵀAq)‖²``, the residual after one exact line search along ``q`` — invariant to
the scale of ``q`` and zero iff ``q ∝ A⁻¹b``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from torchloom.core.checks import check_floating, check_positive
from torchloom.operator.data import PoissonProblem

__all__ = [
    "DCDMNet",
    "DCDMResNet",
    "DCDMResult",
    "dcdm_loss",
    "dcdm_solve",
    "ic0_preconditioner",
    "net_direction",
    "train_dcdm",
]

MatVec = Callable[[torch.Tensor], torch.Tensor]


class DCDMNet(nn.Module):
    """A small multiscale CNN ``(B, 1, n, n) -> (B, 1, n, n)`` approximating ``A⁻¹`` up to scale.

    A U-Net: A⁻¹ is a global operator, so a plain stack of 3x3 convolutions would need ~n layers
    of receptive field; ``levels`` average-pool halvings reach across the grid in a few layers
    (the paper uses a deeper CNN with down/up-sampling for the same reason). ``n`` must be
    divisible by ``2**levels``.
    """

    def __init__(self, channels: int = 16, levels: int = 3, activation: str = "elu") -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if levels < 0:
            raise ValueError(f"levels must be >= 0, got {levels}")
        acts = {"elu": nn.ELU, "relu": nn.ReLU, "linear": nn.Identity}
        if activation not in acts:
            raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
        self.levels = levels
        c = channels

        def block(cin: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, c, 3, padding=1), acts[activation]())

        self.inp = block(1)
        self.down = nn.ModuleList(block(c) for _ in range(levels))
        self.up = nn.ModuleList(block(c) for _ in range(levels))
        self.out = nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        if r.ndim != 4 or r.shape[1] != 1:
            raise ValueError(f"r must have shape (B, 1, n, n), got {tuple(r.shape)}")
        if r.shape[-1] % (2**self.levels) or r.shape[-2] % (2**self.levels):
            raise ValueError(f"grid size {tuple(r.shape[-2:])} not divisible by 2**{self.levels}")
        h = self.inp(r)
        skips = []
        for d in self.down:
            skips.append(h)
            h = d(nn.functional.avg_pool2d(h, 2))
        for u, s in zip(self.up, reversed(skips)):
            h = u(nn.functional.interpolate(h, scale_factor=2, mode="nearest") + s)
        return self.out(h)


class _ResBlock(nn.Module):
    """``h + relu(conv(relu(conv(h))))`` with 3x3 convolutions, ``(B, c, H, W)``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1)
        self.b = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + torch.relu(self.b(torch.relu(self.a(h))))


class DCDMResNet(nn.Module):
    """The authors' DCDM network, in 2D: ``(B, 1, n, n) -> (B, 1, n, n)``, any even ``n``.

    As in Kaneda et al.'s reference code: a linear 3x3 convolution lifts to ``channels``; ReLU
    residual blocks at full resolution (``fine``); ``levels`` 2x2 average poolings, each followed
    by ``coarse`` residual blocks; nearest upsampling added to the skip of the finer level and
    ``up`` residual blocks; a linear 1x1 convolution to one channel. The authors use
    ``channels=16``, one level, ``fine=2, coarse=3, up=2`` (trained at 64³ and applied at 128³).
    Nothing depends on ``n``, so a network trained on one grid runs on any larger one
    (``n`` divisible by ``2**levels``).

    Args:
        channels: hidden channels.
        levels: number of 2x2 average-pooling levels.
        fine: residual blocks at full resolution (before pooling).
        coarse: residual blocks after each pooling.
        up: residual blocks after each upsampling.
    """

    def __init__(
        self, channels: int = 16, levels: int = 1, fine: int = 2, coarse: int = 3, up: int = 2
    ) -> None:
        super().__init__()
        for name, v, low in (
            ("channels", channels, 1),
            ("levels", levels, 0),
            ("fine", fine, 1),
            ("coarse", coarse, 0),
            ("up", up, 0),
        ):
            if v < low:
                raise ValueError(f"{name} must be >= {low}, got {v}")
        c = channels
        self.levels = levels
        self.first = nn.Conv2d(1, c, 3, padding=1)
        # full resolution: conv, then residual blocks, then conv (the skip to the up path)
        self.fine_in = nn.Conv2d(c, c, 3, padding=1)
        self.fine = nn.Sequential(*(_ResBlock(c) for _ in range(fine - 1)))
        self.fine_out = nn.Conv2d(c, c, 3, padding=1)
        self.coarse = nn.ModuleList(
            nn.Sequential(*(_ResBlock(c) for _ in range(coarse))) for _ in range(levels)
        )
        self.up = nn.ModuleList(
            nn.Sequential(*(_ResBlock(c) for _ in range(up))) for _ in range(levels)
        )
        self.out = nn.Conv2d(c, 1, 1)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """Map residuals to search directions.

        Args:
            r: ``(B, 1, n, n)`` right-hand sides / residuals.

        Returns:
            ``(B, 1, n, n)`` directions ``q ≈ A⁻¹r`` up to scale.
        """
        if r.ndim != 4 or r.shape[1] != 1:
            raise ValueError(f"r must have shape (B, 1, n, n), got {tuple(r.shape)}")
        if r.shape[-1] % (2**self.levels) or r.shape[-2] % (2**self.levels):
            raise ValueError(f"grid size {tuple(r.shape[-2:])} not divisible by 2**{self.levels}")
        h = torch.relu(self.fine_in(self.first(r)))
        h = torch.relu(self.fine_out(self.fine(h)))
        skips = []
        for blocks in self.coarse:
            skips.append(h)
            h = blocks(nn.functional.avg_pool2d(h, 2))
        for blocks, s in zip(reversed(self.up), reversed(skips)):
            h = blocks(nn.functional.interpolate(h, scale_factor=2, mode="nearest") + s)
        return self.out(h)


def dcdm_loss(q: torch.Tensor, b: torch.Tensor, apply: MatVec) -> torch.Tensor:
    """Mean of ``‖b − A q (qᵀb)/(qᵀAq)‖² / ‖b‖²`` over the batch; ``q, b``: ``(B, ...)``."""
    if q.shape != b.shape:
        raise ValueError(
            f"q and b must have the same shape, got {tuple(q.shape)}, {tuple(b.shape)}"
        )
    aq = apply(q)
    dims = tuple(range(1, q.ndim))
    qb = (q * b).sum(dims, keepdim=True)
    qaq = (q * aq).sum(dims, keepdim=True).clamp_min(1e-30)
    res = b - aq * (qb / qaq)
    return ((res**2).sum(dims) / (b**2).sum(dims)).mean()


def train_dcdm(
    net: nn.Module,
    problem: PoissonProblem,
    rhs: torch.Tensor,
    *,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 2e-3,
    cosine: bool = False,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Fit ``net`` by :func:`dcdm_loss` on right-hand sides ``rhs`` ``(M, n, n)``; loss history.

    Adam with learning rate ``lr``, annealed to zero on a cosine schedule if ``cosine``.
    """
    rhs = check_floating(rhs, "rhs")
    if rhs.ndim != 3 or rhs.shape[1:] != (problem.n, problem.n):
        raise ValueError(
            f"rhs must have shape (M, {problem.n}, {problem.n}), got {tuple(rhs.shape)}"
        )
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if cosine else None
    mask = problem.fluid.to(rhs)
    losses = []
    for _ in range(steps):
        idx = torch.randint(rhs.shape[0], (min(batch_size, rhs.shape[0]),), generator=generator)
        b = rhs[idx, None]
        q = net(b) * mask  # solid cells carry no unknowns
        loss = dcdm_loss(q, b, problem.apply)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(float(loss.detach()))
    return losses


def net_direction(net: nn.Module, problem: PoissonProblem) -> MatVec:
    """The DCDM direction map ``r (N,) float64 -> f(r/‖r‖) (N,) float64`` for a grid network."""
    p = next(net.parameters(), None)
    dtype = p.dtype if p is not None else torch.float32
    mask = problem.fluid.reshape(-1).to(torch.float64)

    def direction(r: torch.Tensor) -> torch.Tensor:
        g = (r / r.norm()).to(dtype).reshape(1, 1, problem.n, problem.n)
        with torch.no_grad():
            q = net(g).reshape(-1).to(torch.float64)
        return q * mask.to(q.device)

    return direction


@dataclass
class DCDMResult:
    """Solution ``x`` (N,), relative residual norms per iteration (``[0]`` = start)."""

    x: torch.Tensor
    residuals: list[float] = field(default_factory=list)
    converged: bool = False

    @property
    def iterations(self) -> int:
        return len(self.residuals) - 1


# `a` is a PoissonProblem, a scipy sparse matrix, an ndarray or a tensor, told apart below
def _as_matvec(a: Any, name: str = "a") -> tuple[MatVec, int]:
    if isinstance(a, PoissonProblem):
        return (lambda v: a.apply(v)), a.size
    if sp.issparse(a) or isinstance(a, np.ndarray):
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ValueError(f"{name} must be square, got shape {a.shape}")
        m = sp.csr_matrix(a)
        return (lambda v: torch.from_numpy(m @ v.cpu().numpy()).to(v)), a.shape[0]
    if isinstance(a, torch.Tensor):
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ValueError(f"{name} must be square, got shape {tuple(a.shape)}")
        m = a.to(torch.float64)
        return (lambda v: m @ v), a.shape[0]
    raise TypeError(
        f"{name} must be a PoissonProblem, scipy sparse matrix, numpy array or tensor, "
        f"got {type(a).__name__}"
    )


def dcdm_solve(
    a: object,
    b: torch.Tensor,
    direction: MatVec | None = None,
    *,
    x0: torch.Tensor | None = None,
    tol: float = 1e-4,
    max_iter: int = 1000,
    n_ortho: int = 2,
) -> DCDMResult:
    """Solve ``A x = b`` for SPD ``a`` by DCDM (float64).

    ``direction`` maps a residual ``(N,)`` to a search direction (default identity: then with
    ``n_ortho >= 1`` this is CG in exact arithmetic, with ``n_ortho = 0`` steepest descent).
    Each direction is A-orthogonalised against the previous ``n_ortho`` (paper: 2). Stops when
    ``‖r‖ <= tol ‖b‖``.
    """
    matvec, size = _as_matvec(a)
    b = check_floating(b, "b").to(torch.float64)
    if b.ndim == 2:  # a grid (n, n)
        b = b.reshape(-1)
    if b.ndim != 1 or b.shape[0] != size:
        raise ValueError(f"b must have {size} entries to match a, got shape {tuple(b.shape)}")
    check_positive(tol, "tol")
    if n_ortho < 0:
        raise ValueError(f"n_ortho must be >= 0, got {n_ortho}")
    f = direction if direction is not None else (lambda r: r.clone())
    x = torch.zeros_like(b) if x0 is None else x0.reshape(-1).to(torch.float64).clone()
    if x.shape != b.shape:
        raise ValueError(f"x0 must have {size} entries, got shape {tuple(x0.shape)}")  # type: ignore[union-attr]
    r = b - matvec(x)
    bnorm = float(b.norm()) or 1.0
    hist = [float(r.norm()) / bnorm]
    prev: list[tuple[torch.Tensor, torch.Tensor, float]] = []  # (p, A p, pᵀAp)
    for _ in range(max_iter):
        if hist[-1] <= tol:
            return DCDMResult(x, hist, True)
        q = f(r)
        # A-orthogonalise against the last n_ortho directions (Gram-Schmidt in the A-inner product)
        for p, ap, pap in prev:
            q = q - (q @ ap) / pap * p
        aq = matvec(q)
        qaq = float(q @ aq)
        if not qaq > 0:  # zero direction (or A not SPD): no progress possible
            break
        alpha = float(q @ r) / qaq
        x = x + alpha * q
        r = r - alpha * aq
        hist.append(float(r.norm()) / bnorm)
        if n_ortho:
            prev = [*prev, (q, aq, qaq)][-n_ortho:]
    return DCDMResult(x, hist, hist[-1] <= tol)


def ic0_preconditioner(a: sp.spmatrix) -> Callable[[np.ndarray], np.ndarray]:
    """Incomplete-Cholesky IC(0) preconditioner ``r -> M⁻¹ r`` for a sparse SPD matrix.

    Uses the diagonal form M = (D + L) D⁻¹ (D + Lᵀ), L the strict lower part of A and
    d_i = a_ii − Σ_{j<i} a_ij² / d_j; for the 5-point Laplacian this equals IC(0) exactly
    (the dropped fill lies outside the stencil either way).
    """
    if not sp.issparse(a) or a.shape[0] != a.shape[1]:
        raise ValueError("a must be a square scipy sparse matrix")
    a = sp.csr_matrix(a)
    low = sp.tril(a, k=-1).tocsr()
    d = a.diagonal().astype(np.float64).copy()
    ip, ix, vals = low.indptr, low.indices, low.data
    for i in range(a.shape[0]):
        s = ip[i]
        e = ip[i + 1]
        if e > s:
            d[i] -= float(np.sum(vals[s:e] ** 2 / d[ix[s:e]]))
        if d[i] <= 0:
            raise ValueError("a is not SPD enough for IC(0) (non-positive pivot)")
    lower = (low + sp.diags(d)).tocsr()
    upper = lower.T.tocsr()
    from scipy.sparse.linalg import spsolve_triangular

    def apply(r: np.ndarray) -> np.ndarray:
        y = spsolve_triangular(lower, r, lower=True)
        return spsolve_triangular(upper, d * y, lower=False)

    return apply
