"""MgNO: multigrid neural operators (He, Liu, Xu et al., ICLR 2024, paper #24).

Each layer's linear operator is one multigrid V-cycle acting on a multi-channel grid function
``f`` (the layer input), started from ``u = 0``. On level ``j`` (grid ``n_j``):

- smoothing, ``ν`` times: ``u ← u + S_j (f − A_j u)`` with learnable 3x3 convolutions
  ``A_j`` (the "PDE operator") and ``S_j`` (the smoother);
- restriction of the residual by a stride-2 3x3 convolution ``R_j``: ``f_{j+1} = R_j(f − A_j u)``;
- the coarse correction ``u ← u + P_j V_{j+1}(f_{j+1})`` with a stride-2 transposed 3x3
  convolution ``P_j`` (prolongation), then optional post-smoothing.

A layer is ``σ(V(x) + b)``: the nonlinearity is applied only between V-cycles. Boundary
conditions enter through the padding mode of ``A_j`` and ``S_j`` (and of ``R_j``/``P_j``):

- ``"zeros"`` (zero Dirichlet): vertex-centred grids of interior nodes, ``n = 2^L m − 1``;
  the coarse grid keeps the odd fine nodes, so both grids share the boundary;
- ``"circular"`` (periodic): ``n = 2^L m``, and ``"reflect"`` (mirror/Neumann, nodes on both
  boundaries): ``n = 2^L m + 1``; the coarse grid keeps the even fine nodes.

With ``A`` the 5-point Laplacian, ``S = ω D⁻¹`` (damped Jacobi), full-weighting ``R`` and bilinear
``P`` the V-cycle is the textbook geometric multigrid (:func:`classical_vcycle_weights`).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from torchloom.core.checks import check_floating

__all__ = ["MgNO", "VCycle", "classical_vcycle_weights", "mg_levels_ok"]

Padding = Literal["zeros", "circular", "reflect"]
_MODES = ("zeros", "circular", "reflect")


def mg_levels_ok(n: int, levels: int, padding: str = "zeros") -> bool:
    """Whether an ``n``-point grid coarsens ``levels − 1`` times under ``padding``'s layout."""
    if levels < 1 or n < 1:
        return False
    k = 2 ** (levels - 1)
    span = {"zeros": n + 1, "circular": n, "reflect": n - 1}.get(padding, 0)
    return span % k == 0 and span // k >= 2


def _pad(x: torch.Tensor, mode: str, width: int = 1) -> torch.Tensor:
    if mode == "zeros":
        return F.pad(x, (width,) * 4)
    return F.pad(x, (width,) * 4, mode=mode)


def _conv(x: torch.Tensor, w: torch.Tensor, mode: str) -> torch.Tensor:
    """Same-size 3x3 convolution with the boundary given by ``mode``."""
    return F.conv2d(_pad(x, mode), w)


def _restrict(x: torch.Tensor, w: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "zeros":  # coarse node i sits on fine node 2i + 1; padding only adds zeros
        return F.conv2d(x, w, stride=2)
    return F.conv2d(_pad(x, mode), w, stride=2)  # coarse node i on fine node 2i


def _prolong(x: torch.Tensor, w: torch.Tensor, mode: str, n_fine: int) -> torch.Tensor:
    # pad the coarse grid with its ghost nodes (zero, periodic or mirrored), scatter every coarse
    # node to its 3x3 fine neighbourhood, and crop the fine grid out of the result
    full = F.conv_transpose2d(_pad(x, mode), w, stride=2)
    off = 2 if mode == "zeros" else 3
    return full[..., off : off + n_fine, off : off + n_fine]


class VCycle(nn.Module):
    """One multigrid V-cycle as a learnable linear operator ``(B, C, n, n) -> (B, C, n, n)``.

    Args:
        channels: number of channels ``C`` (all operators are ``C → C`` 3x3 convolutions).
        levels: number of grids (1 = smoothing only).
        padding: boundary condition, ``"zeros"``, ``"circular"`` or ``"reflect"``.
        pre_smooth: smoothing steps before the coarse correction (per level).
        post_smooth: smoothing steps after it.
    """

    def __init__(
        self,
        channels: int,
        levels: int = 4,
        padding: Padding = "zeros",
        pre_smooth: int = 1,
        post_smooth: int = 0,
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        if padding not in _MODES:
            raise ValueError(f"padding must be one of {_MODES}, got {padding!r}")
        if pre_smooth < 0 or post_smooth < 0 or pre_smooth + post_smooth < 1:
            raise ValueError(
                f"pre_smooth, post_smooth must be >= 0 with a positive sum, "
                f"got {pre_smooth}, {post_smooth}"
            )
        self.channels, self.levels, self.padding = channels, levels, padding
        self.pre_smooth, self.post_smooth = pre_smooth, post_smooth
        c = channels

        def weights(count: int) -> nn.ParameterList:
            return nn.ParameterList(
                nn.Parameter(torch.randn(c, c, 3, 3) / (3 * c**0.5)) for _ in range(count)
            )

        self.A = weights(levels)
        self.S = weights(levels)
        self.R = weights(levels - 1)
        self.P = weights(levels - 1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """Apply the V-cycle to ``f`` ``(B, C, n, n)``, starting from ``u = 0``.

        Args:
            f: right-hand side ``(B, C, n, n)``.

        Returns:
            ``u`` ``(B, C, n, n)``.
        """
        f = check_floating(f, "f")
        if f.ndim != 4 or f.shape[1] != self.channels or f.shape[-1] != f.shape[-2]:
            raise ValueError(f"f must have shape (B, {self.channels}, n, n), got {tuple(f.shape)}")
        n = f.shape[-1]
        if not mg_levels_ok(n, self.levels, self.padding):
            need = {"zeros": "n + 1", "circular": "n", "reflect": "n - 1"}[self.padding]
            raise ValueError(
                f"grid size {n} does not coarsen {self.levels - 1} times with padding "
                f"{self.padding!r}: {need} must be a multiple of 2**{self.levels - 1} "
                f"with at least 2 coarse cells"
            )
        return self._cycle(f, 0)

    def _smooth(self, u: torch.Tensor | None, f: torch.Tensor, j: int, steps: int) -> torch.Tensor:
        mode = self.padding
        for _ in range(steps):
            r = f if u is None else f - _conv(u, self.A[j], mode)
            du = _conv(r, self.S[j], mode)
            u = du if u is None else u + du
        assert u is not None
        return u

    def _cycle(self, f: torch.Tensor, j: int) -> torch.Tensor:
        mode = self.padding
        if j == self.levels - 1:
            return self._smooth(None, f, j, self.pre_smooth + self.post_smooth)
        u = self._smooth(None, f, j, self.pre_smooth) if self.pre_smooth else torch.zeros_like(f)
        coarse = self._cycle(_restrict(f - _conv(u, self.A[j], mode), self.R[j], mode), j + 1)
        u = u + _prolong(coarse, self.P[j], mode, f.shape[-1])
        return self._smooth(u, f, j, self.post_smooth)


def classical_vcycle_weights(cycle: VCycle, h: float = 1.0, omega: float = 0.8) -> None:
    """Set a 1-channel :class:`VCycle` to textbook geometric multigrid for ``−Δ`` (in place).

    ``A_j`` = 5-point Laplacian with spacing ``2^j h``, ``S_j = ω D_j⁻¹`` (damped Jacobi),
    ``R`` = full weighting ``[1,2,1]⊗[1,2,1]/16`` and ``P`` = bilinear interpolation
    ``[1,2,1]⊗[1,2,1]/4``.

    Args:
        cycle: a V-cycle with ``channels == 1``.
        h: fine grid spacing.
        omega: Jacobi damping.
    """
    if cycle.channels != 1:
        raise ValueError(f"cycle must have 1 channel, got {cycle.channels}")
    lap = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]], dtype=torch.float64)
    ident = torch.zeros(3, 3, dtype=torch.float64)
    ident[1, 1] = 1.0
    fw = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    fw2 = torch.outer(fw, fw)
    with torch.no_grad():
        for j in range(cycle.levels):
            hj2 = (h * 2**j) ** 2
            cycle.A[j].copy_((lap / hj2)[None, None])
            cycle.S[j].copy_((omega * hj2 / 4 * ident)[None, None])
        for j in range(cycle.levels - 1):
            cycle.R[j].copy_((fw2 / 16)[None, None])
            cycle.P[j].copy_((fw2 / 4)[None, None])


class MgNO(nn.Module):
    """Multigrid neural operator ``(B, C_in, n, n) -> (B, C_out, n, n)``.

    Lifting by a 1x1 convolution, ``depth`` layers ``u ← σ(V_ℓ(u) + b_ℓ)`` with V-cycles
    :class:`VCycle`, and a 1x1-convolution projection (no nonlinearity after the last cycle).

    Args:
        in_channels: input channels (e.g. 1 for the Darcy coefficient).
        out_channels: output channels.
        channels: hidden channels ``C``.
        depth: number of V-cycle layers.
        levels: grids per V-cycle.
        padding: boundary condition as padding mode (see the module docstring).
        pre_smooth: smoothing steps before each coarse correction.
        post_smooth: smoothing steps after it.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: int = 16,
        depth: int = 4,
        levels: int = 4,
        padding: Padding = "zeros",
        pre_smooth: int = 1,
        post_smooth: int = 0,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.lift = nn.Conv2d(in_channels, channels, 1)
        self.cycles = nn.ModuleList(
            VCycle(channels, levels, padding, pre_smooth, post_smooth) for _ in range(depth)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(1, channels, 1, 1)) for _ in range(depth)
        )
        self.proj = nn.Conv2d(channels, out_channels, 1)
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x`` ``(B, C_in, n, n)`` to ``(B, C_out, n, n)``.

        Args:
            x: input grid functions ``(B, C_in, n, n)``.

        Returns:
            the output grid functions ``(B, C_out, n, n)``.
        """
        x = check_floating(x, "x")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have shape (B, {self.in_channels}, n, n), got {tuple(x.shape)}"
            )
        u = self.lift(x)
        for cycle, b in zip(self.cycles, self.biases):
            u = F.gelu(cycle(u) + b)
        return self.proj(u)
