"""2D Poisson test problems for iterative solvers (DCDM, paper #32).

The system is the 5-point Laplacian (entries 4 / -1, no h² scaling) on an ``n x n`` grid of
interior cells with homogeneous Dirichlet boundary. Optional *solid* cells (obstacles) are
decoupled: their rows/columns become identity rows, so the matrix stays SPD and the same size,
and a right-hand side that is zero on solid cells gives a solution that is zero there (a
Dirichlet wall). Vectors are flattened row-major grids, ``u[i * n + j] = grid[i, j]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from torchloom.core.checks import check_floating

__all__ = ["PoissonProblem", "gaussian_sources", "low_eigenvectors", "poisson_2d", "ritz_rhs"]

_NEIGHBOURS = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])


@dataclass
class PoissonProblem:
    """A 2D Poisson system: ``matrix`` (N x N scipy CSR, N = n²) and its matrix-free twin.

    ``fluid`` is the ``(n, n)`` bool mask of unknowns that are coupled (``True`` = fluid).
    """

    n: int
    fluid: torch.Tensor
    matrix: sp.csr_matrix

    @property
    def size(self) -> int:
        """Number of unknowns N = n²."""
        return self.n * self.n

    def apply(self, u: torch.Tensor) -> torch.Tensor:
        """Matrix-free ``A u`` by a conv2d stencil: ``u`` is ``(..., n, n)`` or ``(..., n²)``.

        Returns a tensor of the same shape. Equal to ``matrix @ u`` (tested against scipy).
        """
        u = check_floating(u, "u")
        n = self.n
        flat = u.shape[-1] == n * n and not (u.ndim >= 2 and u.shape[-2:] == (n, n))
        if flat:
            grid = u.reshape(*u.shape[:-1], n, n)
        elif u.ndim >= 2 and u.shape[-2:] == (n, n):
            grid = u
        else:
            raise ValueError(
                f"u must have shape (..., {n}, {n}) or (..., {n * n}), got {tuple(u.shape)}"
            )
        batch = grid.shape[:-2]
        g = grid.reshape(-1, 1, n, n)
        mask = self.fluid.to(device=g.device, dtype=g.dtype)
        # zero padding = homogeneous Dirichlet; masking the input drops solid neighbours
        nb = F.conv2d(g * mask, _NEIGHBOURS.to(g)[None, None], padding=1)
        out = torch.where(mask.bool(), 4.0 * g - nb, g)
        out = out.reshape(*batch, n, n)
        return out.reshape(u.shape) if flat else out


def poisson_2d(n: int, obstacles: torch.Tensor | None = None) -> PoissonProblem:
    """The 5-point Dirichlet Laplacian on an ``n x n`` interior grid.

    ``obstacles``: optional ``(n, n)`` bool mask, ``True`` = solid cell (decoupled identity row).
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    if obstacles is None:
        fluid = torch.ones(n, n, dtype=torch.bool)
    else:
        if not isinstance(obstacles, torch.Tensor) or obstacles.shape != (n, n):
            raise ValueError(f"obstacles must be a ({n}, {n}) bool tensor")
        fluid = ~obstacles.bool().cpu()
    f = fluid.numpy().reshape(-1)
    idx = np.arange(n * n).reshape(n, n)
    rows, cols = [], []
    # horizontal and vertical neighbour pairs, kept only when both cells are fluid
    for a, b in ((idx[:, :-1], idx[:, 1:]), (idx[:-1, :], idx[1:, :])):
        a, b = a.reshape(-1), b.reshape(-1)
        keep = f[a] & f[b]
        rows += [a[keep], b[keep]]
        cols += [b[keep], a[keep]]
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    off = sp.coo_matrix((-np.ones(r.size), (r, c)), shape=(n * n, n * n))
    diag = sp.diags(np.where(f, 4.0, 1.0))
    return PoissonProblem(n=n, fluid=fluid, matrix=(off + diag).tocsr())


def low_eigenvectors(problem: PoissonProblem, k: int) -> np.ndarray:
    """The ``k`` eigenvectors of ``problem.matrix`` with smallest eigenvalues, ``(N, k)``."""
    if not 1 <= k <= problem.size:
        raise ValueError(f"k must be in [1, {problem.size}], got {k}")
    if problem.size <= 4096:
        _, vecs = np.linalg.eigh(problem.matrix.toarray())
        return vecs[:, :k]
    from scipy.sparse.linalg import eigsh

    _, vecs = eigsh(problem.matrix, k=k, sigma=0.0, which="LM")
    return vecs


def ritz_rhs(
    problem: PoissonProblem,
    count: int,
    *,
    modes: int | None = None,
    low_weight: float = 9.0,
    generator: torch.Generator | None = None,
    basis: np.ndarray | None = None,
) -> torch.Tensor:
    """Unit-norm right-hand sides from the span of low eigenvectors, ``(count, n, n)`` float32.

    Follows the paper's training distribution b = Σ c_i v_i / ‖·‖ with c_i ~ N(0, 1), multiplied
    by ``low_weight`` (paper: 9) on the lower half of the ``modes`` vectors so that the smooth,
    slow-to-converge part of the spectrum dominates. The paper takes Ritz vectors from a Lanczos
    run; at these sizes we use exact eigenvectors (the limit Ritz vectors converge to).
    ``modes`` defaults to N/4. Solid cells are zeroed (the decoupled identity rows also have
    eigenvectors there) before normalising.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    m = modes if modes is not None else max(1, problem.size // 4)
    v = basis if basis is not None else low_eigenvectors(problem, m)
    if v.shape != (problem.size, m):
        raise ValueError(f"basis must have shape ({problem.size}, {m}), got {v.shape}")
    c = torch.randn(count, m, generator=generator, dtype=torch.float64)
    c[:, : m // 2] *= low_weight
    b = (c @ torch.from_numpy(v).T) * problem.fluid.reshape(-1)
    b = b / b.norm(dim=1, keepdim=True)
    return b.reshape(count, problem.n, problem.n).float()


def gaussian_sources(
    problem: PoissonProblem,
    count: int,
    *,
    bumps: int = 3,
    width: float = 2.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Unit-norm right-hand sides made of ``bumps`` Gaussian sources, ``(count, n, n)`` float32.

    A physically shaped source family *outside* the eigenvector training distribution (random
    centres, N(0, 1) amplitudes, std ``width`` cells), used to test generalisation. Zero on solids.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if bumps < 1:
        raise ValueError(f"bumps must be >= 1, got {bumps}")
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    n = problem.n
    yy, xx = torch.meshgrid(torch.arange(float(n)), torch.arange(float(n)), indexing="ij")
    centres = torch.rand(count, bumps, 2, generator=generator, dtype=torch.float64) * n
    amps = torch.randn(count, bumps, generator=generator, dtype=torch.float64)
    d2 = (yy - centres[..., 0, None, None]) ** 2 + (xx - centres[..., 1, None, None]) ** 2
    b = (amps[..., None, None] * torch.exp(-d2 / (2 * width**2))).sum(1) * problem.fluid
    b = b / b.reshape(count, -1).norm(dim=1).clamp_min(1e-300)[:, None, None]
    return b.float()
