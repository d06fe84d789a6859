"""2D Poisson test problems for iterative solvers (DCDM, paper #32).

The system is the 5-point Laplacian (entries 4 / -1, no h² scaling) on an ``n x n`` grid of
interior cells with homogeneous Dirichlet boundary. Optional *solid* cells (obstacles) are
decoupled: their rows/columns become identity rows, so the matrix stays SPD and the same size,
and a right-hand side that is zero on solid cells gives a solution that is zero there (a
Dirichlet wall). Vectors are flattened row-major grids, ``u[i * n + j] = grid[i, j]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from torchloom.core.checks import check_floating

__all__ = [
    "ODE_FAMILIES",
    "DarcyData",
    "ODEData",
    "ODEFamily",
    "PoissonProblem",
    "darcy_2d",
    "darcy_matrix",
    "darcy_solve",
    "gaussian_random_field",
    "gaussian_sources",
    "lanczos_ritz",
    "low_eigenvectors",
    "ode_dataset",
    "poisson_2d",
    "ritz_rhs",
]

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


def lanczos_ritz(
    problem: PoissonProblem, m: int, *, generator: torch.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Ritz values ``(k,)`` (ascending) and unit Ritz vectors ``(N, k)`` from ``m`` Lanczos steps.

    As in the authors' dataset code: Lanczos with full reorthogonalisation started from
    ``A g``, ``g ~ N(0, I)``; the eigenpairs of the tridiagonal matrix T give the Ritz pairs
    ``(θ_i, V y_i)``. Ritz values below 1e-8 (zero modes) are dropped. ``k = m`` unless the
    Krylov space is exhausted earlier; for ``m = N`` these are the exact eigenpairs.

    Args:
        problem: the SPD system.
        m: Lanczos steps, ``1 <= m <= N``.
        generator: randomness of the start vector.

    Returns:
        ``(values, vectors)``.
    """
    if not 1 <= m <= problem.size:
        raise ValueError(f"m must be in [1, {problem.size}], got {m}")
    a = problem.matrix
    g = torch.randn(problem.size, generator=generator, dtype=torch.float64).numpy()
    v = a @ (g * problem.fluid.reshape(-1).numpy())
    basis = np.zeros((m, problem.size))
    alpha, beta = np.zeros(m), np.zeros(m)
    v = v / np.linalg.norm(v)
    k = m
    for j in range(m):
        basis[j] = v
        w = a @ v
        alpha[j] = w @ v
        for _ in range(2):  # full reorthogonalisation, twice is enough
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        beta[j] = np.linalg.norm(w)
        if beta[j] < 1e-10 * max(1.0, abs(alpha[j])):  # invariant subspace reached
            k = j + 1
            break
        v = w / beta[j]
    t = np.diag(alpha[:k]) + np.diag(beta[: k - 1], 1) + np.diag(beta[: k - 1], -1)
    vals, y = np.linalg.eigh(t)
    vecs = basis[:k].T @ y
    keep = vals >= 1e-8
    return vals[keep], vecs[:, keep]


def ritz_rhs(
    problem: PoissonProblem,
    count: int,
    *,
    modes: int | None = None,
    low_weight: float = 9.0,
    generator: torch.Generator | None = None,
    basis: np.ndarray | None = None,
    low_count: int | None = None,
) -> torch.Tensor:
    """Unit-norm right-hand sides from the span of low eigenvectors, ``(count, n, n)`` float32.

    Follows the paper's training distribution b = Σ c_i v_i / ‖·‖ with c_i ~ N(0, 1), multiplied
    by ``low_weight`` (paper: 9) on the lower half of the ``modes`` vectors so that the smooth,
    slow-to-converge part of the spectrum dominates. The paper takes Ritz vectors from a Lanczos
    run; at these sizes we use exact eigenvectors (the limit Ritz vectors converge to).
    ``modes`` defaults to N/4. ``basis`` ``(N, modes)`` replaces the eigenvectors (e.g. Ritz
    vectors from :func:`lanczos_ritz`, ascending); ``low_count`` is how many of its first
    vectors get ``low_weight`` (default ``modes // 2``; the authors' code: m/2 + θ, θ = m/20).
    Solid cells are zeroed (the decoupled identity rows also have eigenvectors there) before
    normalising.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    m = modes if modes is not None else max(1, problem.size // 4)
    v = basis if basis is not None else low_eigenvectors(problem, m)
    if v.shape != (problem.size, m):
        raise ValueError(f"basis must have shape ({problem.size}, {m}), got {v.shape}")
    c = torch.randn(count, m, generator=generator, dtype=torch.float64)
    low = m // 2 if low_count is None else low_count
    if not 0 <= low <= m:
        raise ValueError(f"low_count must be in [0, {m}], got {low}")
    c[:, :low] *= low_weight
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


# --------------------------------------------------------------------------------------------
# 2D Darcy flow  −∇·(a ∇u) = f  on the unit square, u = 0 on the boundary (MgNO, DGNO)
# --------------------------------------------------------------------------------------------


@dataclass
class DarcyData:
    """Samples of 2D Darcy flow on an ``n x n`` grid of interior nodes ``x_i = (i + 1) h``.

    ``a``: coefficients ``(M, n, n)``, ``u``: solutions ``(M, n, n)`` (float64), ``f``: the
    source ``(n, n)``. ``h = 1 / (n + 1)``; the boundary nodes (u = 0) are not stored.
    """

    a: torch.Tensor
    u: torch.Tensor
    f: torch.Tensor

    @property
    def n(self) -> int:
        """Grid size."""
        return int(self.a.shape[-1])


def darcy_matrix(a: np.ndarray | torch.Tensor) -> sp.csr_matrix:
    """The 5-point finite-difference matrix of ``−∇·(a∇u)`` with zero Dirichlet boundary.

    ``a`` is the coefficient on the ``(n, n)`` interior nodes; face coefficients are harmonic
    means of the two nodes (boundary faces use the interior node's value); scaled by ``1/h²``
    with ``h = 1/(n+1)``, so ``darcy_matrix(ones) = poisson_2d(n).matrix / h²``.
    """
    arr = a.detach().cpu().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"a must be a square (n, n) grid, got shape {arr.shape}")
    if not np.all(arr > 0):
        raise ValueError("a must be positive everywhere")
    n = arr.shape[0]
    h2 = 1.0 / (n + 1) ** 2
    idx = np.arange(n * n).reshape(n, n)
    diag = np.zeros((n, n))
    rows, cols, vals = [], [], []
    for axis in (0, 1):
        lo = [slice(None), slice(None)]
        hi = [slice(None), slice(None)]
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        a0, a1 = arr[tuple(lo)], arr[tuple(hi)]
        w = 2 * a0 * a1 / (a0 + a1) / h2  # harmonic mean on the face between the two nodes
        diag[tuple(lo)] += w
        diag[tuple(hi)] += w
        i0, i1 = idx[tuple(lo)].ravel(), idx[tuple(hi)].ravel()
        rows += [i0, i1]
        cols += [i1, i0]
        vals += [-w.ravel(), -w.ravel()]
        # boundary faces: the Dirichlet node (u = 0) beyond the first and the last node
        first = [slice(None), slice(None)]
        last = [slice(None), slice(None)]
        first[axis], last[axis] = slice(0, 1), slice(-1, None)
        diag[tuple(first)] += arr[tuple(first)] / h2
        diag[tuple(last)] += arr[tuple(last)] / h2
    m = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))))
    return (m + sp.diags(diag.ravel())).tocsr()


def darcy_solve(a: np.ndarray | torch.Tensor, f: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Solve ``−∇·(a∇u) = f`` (zero Dirichlet) for one ``(n, n)`` coefficient; ``u`` float64."""
    from scipy.sparse.linalg import spsolve

    mat = darcy_matrix(a)
    n = int(np.sqrt(mat.shape[0]))
    rhs = f.detach().cpu().double().numpy() if isinstance(f, torch.Tensor) else np.asarray(f)
    if rhs.shape != (n, n):
        raise ValueError(f"f must have shape ({n}, {n}), got {rhs.shape}")
    return torch.from_numpy(spsolve(mat.tocsc(), rhs.ravel()).reshape(n, n))


def gaussian_random_field(
    count: int,
    n: int,
    *,
    alpha: float = 2.0,
    tau: float = 3.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Samples of a Gaussian field with covariance ``(−Δ + τ²)^(−α)`` on ``(n, n)``, float64.

    Drawn by spectral filtering of white noise on a ``2n`` periodic grid and cropped to ``n``
    (so the field is not periodic on the crop); each sample is normalised to unit std.
    """
    if count < 1 or n < 2:
        raise ValueError(f"count must be >= 1 and n >= 2, got {count}, {n}")
    m = 2 * n
    k = torch.fft.fftfreq(m, d=1.0 / m, dtype=torch.float64)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    spec = (4 * np.pi**2 * k2 + tau**2) ** (-alpha / 2)
    noise = torch.randn(count, m, m, generator=generator, dtype=torch.float64)
    field = torch.fft.ifft2(torch.fft.fft2(noise) * spec).real[:, :n, :n]
    field = field - field.mean(dim=(1, 2), keepdim=True)
    return field / field.std(dim=(1, 2), keepdim=True)


def darcy_2d(
    count: int,
    n: int = 31,
    *,
    kind: str = "threshold",
    values: tuple[float, float] = (3.0, 12.0),
    blocks: int = 3,
    generator: torch.Generator | None = None,
) -> DarcyData:
    """Random Darcy problems with ``f = 1`` solved by scipy, ``(count, n, n)`` each.

    ``kind="threshold"``: the FNO benchmark's thresholded Gaussian field, ``a = values[1]``
    where the field is ≥ 0 and ``values[0]`` elsewhere. ``kind="piecewise"``: ``blocks x blocks``
    constant patches with values uniform in ``values``.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    lo, hi = values
    if not 0 < lo <= hi:
        raise ValueError(f"values must satisfy 0 < lo <= hi, got {values}")
    if kind == "threshold":
        g = gaussian_random_field(count, n, generator=generator)
        a = torch.where(g >= 0, hi, lo)
    elif kind == "piecewise":
        if not 1 <= blocks <= n:
            raise ValueError(f"blocks must be in [1, {n}], got {blocks}")
        v = lo + (hi - lo) * torch.rand(count, blocks, blocks, generator=generator)
        cell = (torch.arange(n) * blocks) // n
        a = v[:, cell][:, :, cell].double()
    else:
        raise ValueError(f"kind must be 'threshold' or 'piecewise', got {kind!r}")
    f = torch.ones(n, n, dtype=torch.float64)
    u = torch.stack([darcy_solve(ai, f) for ai in a])
    return DarcyData(a=a, u=u, f=f)


# --------------------------------------------------------------------------------------------
# Parametric ODE families with their symbolic forms (PROSE)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ODEFamily:
    """A family of 2-state ODE systems ``x' = F(x; c)`` given as sympy templates.

    ``templates`` holds one expression per state in the symbols ``x0, x1`` (states) and
    ``c0, c1, …`` (parameters, with nominal values ``nominal``).
    """

    name: str
    templates: tuple[str, str]
    nominal: tuple[float, ...]
    init_range: tuple[float, float] = (-1.5, 1.5)


ODE_FAMILIES: tuple[ODEFamily, ...] = (
    ODEFamily("decay", ("-c0*x0", "-c1*x1"), (0.5, 1.0)),
    ODEFamily("rotation", ("c0*x1", "-c0*x0"), (1.5,)),
    ODEFamily("damped_oscillator", ("x1", "-c0*x0 - c1*x1"), (2.0, 0.3)),
    ODEFamily(
        "lotka_volterra", ("c0*x0 - c1*x0*x1", "c1*x0*x1 - c2*x1"), (1.0, 0.5, 0.8), (0.5, 2.0)
    ),
    ODEFamily("van_der_pol", ("x1", "c0*x1 - c0*x0**2*x1 - x0"), (1.0,)),
    ODEFamily("duffing", ("x1", "-x0 - c0*x1 - c1*x0**3"), (0.2, 0.5)),
    ODEFamily(
        "brusselator", ("c0 - c1*x0 - x0 + x0**2*x1", "c1*x0 - x0**2*x1"), (1.0, 2.0), (0.5, 2.0)
    ),
)


@dataclass
class ODEData:
    """Trajectories of ODE systems with their equations.

    ``t``: times ``(T,)``; ``x``: states ``(M, T, 2)`` float32; ``family``: family index
    ``(M,)``; ``params``: ``(M, P)`` parameter values (NaN-padded); ``equations``: ``M`` pairs
    of sympy expressions in ``x0, x1`` with the sampled constants substituted.
    """

    t: torch.Tensor
    x: torch.Tensor
    family: torch.Tensor
    params: torch.Tensor
    equations: list[tuple[Any, Any]]


def _rk4(
    rhs: Any, c: np.ndarray, x0: np.ndarray, dt_out: float, n_times: int, substeps: int
) -> torch.Tensor:
    """Classical RK4 for a batch ``x0`` ``(B, 2)`` of ``x' = rhs(x, c)``; ``(B, n_times, 2)``."""

    def f(x: np.ndarray) -> np.ndarray:
        d = rhs(x.T, c)
        return np.stack([np.broadcast_to(di, x.shape[:1]) for di in d], axis=1)

    x = x0.copy()
    traj = [x.copy()]
    dt = dt_out / substeps
    for _ in range(n_times - 1):
        for _ in range(substeps):
            k1 = f(x)
            k2 = f(x + dt / 2 * k1)
            k3 = f(x + dt / 2 * k2)
            k4 = f(x + dt * k3)
            x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        traj.append(x.copy())
    return torch.from_numpy(np.stack(traj, axis=1))


def _float3(a: Any) -> Any:
    import sympy

    return sympy.Float(str(_round_sig(float(a))))


def _round_sig(v: float, digits: int = 3) -> float:
    return float(f"{v:.{digits - 1}e}")


def ode_dataset(
    count: int,
    *,
    families: tuple[ODEFamily, ...] = ODE_FAMILIES,
    t_end: float = 6.0,
    n_times: int = 97,
    spread: float = 0.1,
    substeps: int = 8,
    generator: torch.Generator | None = None,
) -> ODEData:
    """Sample ``count`` systems (family uniform, parameters ``nominal·U(1−spread, 1+spread)``
    rounded to 3 significant digits, initial states uniform in the family's range) and integrate
    them with classical RK4 (``substeps`` steps between output times) on ``[0, t_end]``.
    """
    import sympy

    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if n_times < 2 or substeps < 1:
        raise ValueError(f"n_times must be >= 2 and substeps >= 1, got {n_times}, {substeps}")
    if not 0 <= spread < 1:
        raise ValueError(f"spread must be in [0, 1), got {spread}")
    fam = torch.randint(len(families), (count,), generator=generator)
    p_max = max(len(f.nominal) for f in families)
    params = torch.full((count, p_max), float("nan"), dtype=torch.float64)
    x0 = torch.empty(count, 2, dtype=torch.float64)
    xs = sympy.symbols("x0 x1")
    equations: list[tuple[Any, Any]] = [(None, None)] * count
    t = torch.linspace(0.0, t_end, n_times, dtype=torch.float64)
    out = torch.empty(count, n_times, 2, dtype=torch.float64)
    for k, family in enumerate(families):
        sel = (fam == k).nonzero().flatten()
        if sel.numel() == 0:
            continue
        m = len(family.nominal)
        u = torch.rand(sel.numel(), m, generator=generator, dtype=torch.float64)
        vals = torch.tensor(family.nominal, dtype=torch.float64) * (1 - spread + 2 * spread * u)
        vals = vals.apply_(_round_sig)
        params[sel, :m] = vals
        lo, hi = family.init_range
        x0[sel] = lo + (hi - lo) * torch.rand(
            sel.numel(), 2, generator=generator, dtype=torch.float64
        )
        cs = sympy.symbols(f"c0:{m}")
        tmpl = [
            sympy.sympify(s, locals={**{str(c): c for c in cs}, "x0": xs[0], "x1": xs[1]})
            for s in family.templates
        ]
        rhs = sympy.lambdify([xs, cs], tmpl, modules="numpy")
        for j, i in enumerate(sel.tolist()):
            sub = {c: sympy.Float(str(float(v))) for c, v in zip(cs, vals[j].tolist())}
            eqs = [e.xreplace(sub) for e in tmpl]
            # constants that sympy folded (e.g. −c1·x0 − x0) are rounded back to 3 digits
            eqs = [
                e.xreplace(
                    {a: sympy.Float(str(_round_sig(float(a)))) for a in e.atoms(sympy.Float)}
                )
                for e in eqs
            ]
            equations[i] = (eqs[0], eqs[1])

        out[sel] = _rk4(rhs, vals.numpy().T, x0[sel].numpy(), float(t[1] - t[0]), n_times, substeps)
    return ODEData(t=t.float(), x=out.float(), family=fam, params=params, equations=equations)
