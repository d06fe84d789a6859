"""Compact baselines the recipes compare against: a 2D Fourier neural operator and DeepONet.

``FNO2d`` follows Li et al. (ICLR 2021): lifting of ``(a, x, y)``, Fourier layers
``σ(W u + K u)`` with ``K`` a truncated-spectrum multiplication (the lowest ``modes`` frequencies
in both directions), projection by a 2-layer pointwise MLP. It stands in for neuraloperator's
FNO, which is not a dependency. ``DeepONet`` is the unstacked DeepONet of Lu et al. (2021):
``G(a)(x) = Σ_k b_k(a) t_k(x) + b₀``. :func:`neuralop_fno` builds the peer itself,
neuraloperator's ``FNO`` (optional dependency, imported when called).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from torchloom.core.checks import check_floating
from torchloom.core.nn import mlp

__all__ = ["DeepONet", "EvenGridFNO", "FNO2d", "SpectralConv2d", "neuralop_fno"]


class SpectralConv2d(nn.Module):
    """FNO's Fourier layer ``K``: ``(B, C, H, W) -> (B, C_out, H, W)``.

    Multiplies the lowest ``modes`` frequencies (both signs along ``H``, non-negative along
    ``W`` of the real FFT) by learnable complex ``C x C_out`` matrices; drops the rest.

    Args:
        in_channels: ``C``.
        out_channels: ``C_out``.
        modes: frequencies kept per direction.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: int) -> None:
        super().__init__()
        if modes < 1:
            raise ValueError(f"modes must be >= 1, got {modes}")
        self.modes = modes
        scale = 1.0 / (in_channels * out_channels)
        shape = (2, in_channels, out_channels, modes, modes)
        self.weight = nn.Parameter(scale * torch.rand(*shape, dtype=torch.cfloat))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the spectral convolution.

        Args:
            x: ``(B, C, H, W)`` with ``H >= 2·modes`` and ``W // 2 + 1 >= modes``.

        Returns:
            ``(B, C_out, H, W)``.
        """
        h, w = x.shape[-2:]
        m = self.modes
        if h < 2 * m or w // 2 + 1 < m:
            raise ValueError(f"grid {h}x{w} too small for modes={m}")
        xf = torch.fft.rfft2(x)
        wt = self.weight.to(xf.dtype)
        out = torch.zeros(x.shape[0], wt.shape[2], h, w // 2 + 1, dtype=xf.dtype, device=x.device)
        out[:, :, :m, :m] = torch.einsum("bixy,ioxy->boxy", xf[:, :, :m, :m], wt[0])
        out[:, :, -m:, :m] = torch.einsum("bixy,ioxy->boxy", xf[:, :, -m:, :m], wt[1])
        return torch.fft.irfft2(out, s=(h, w))


class FNO2d(nn.Module):
    """Fourier neural operator ``(B, C_in, H, W) -> (B, C_out, H, W)``.

    Args:
        in_channels: input channels (the grid coordinates are appended internally).
        out_channels: output channels.
        width: hidden channels.
        modes: Fourier modes per direction.
        depth: number of Fourier layers.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        width: int = 16,
        modes: int = 8,
        depth: int = 4,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.lift = nn.Conv2d(in_channels + 2, width, 1)
        self.spectral = nn.ModuleList(SpectralConv2d(width, width, modes) for _ in range(depth))
        self.pointwise = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(depth))
        self.proj = nn.Sequential(
            nn.Conv2d(width, 4 * width, 1), nn.GELU(), nn.Conv2d(4 * width, out_channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x`` ``(B, C_in, H, W)`` to ``(B, C_out, H, W)``.

        Args:
            x: input grid functions.

        Returns:
            output grid functions.
        """
        x = check_floating(x, "x")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        b, _, h, w = x.shape
        gy = torch.linspace(0, 1, h, dtype=x.dtype, device=x.device)[:, None].expand(h, w)
        gx = torch.linspace(0, 1, w, dtype=x.dtype, device=x.device)[None, :].expand(h, w)
        grid = torch.stack([gy, gx])[None].expand(b, 2, h, w)
        u = self.lift(torch.cat([x, grid], dim=1))
        for i, (k, wl) in enumerate(zip(self.spectral, self.pointwise)):
            u = k(u) + wl(u)
            if i < len(self.spectral) - 1:
                u = F.gelu(u)
        return self.proj(u)


class DeepONet(nn.Module):
    """Unstacked DeepONet ``G(β)(x) = Σ_k branch_k(β) trunk_k(x) + b₀``.

    Args:
        branch_in: input size of the branch net (sensor values of the input function).
        trunk_in: dimension of the query points.
        width: hidden width of both nets.
        depth: hidden layers of both nets.
        basis: number of basis functions ``p``.
    """

    def __init__(
        self, branch_in: int, trunk_in: int = 2, width: int = 64, depth: int = 3, basis: int = 64
    ) -> None:
        super().__init__()
        self.branch = mlp([branch_in] + [width] * depth + [basis], nn.Tanh)
        self.trunk = mlp([trunk_in] + [width] * depth + [basis], nn.Tanh)
        self.trunk_act = nn.Tanh()
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, beta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Evaluate ``G(β)`` at points ``x``.

        Args:
            beta: branch inputs ``(B, branch_in)``.
            x: query points ``(B, N, trunk_in)`` or shared ``(N, trunk_in)``.

        Returns:
            ``(B, N)`` values.
        """
        b = self.branch(beta)
        t = self.trunk_act(self.trunk(x))
        if t.ndim == 2:
            return b @ t.T + self.bias
        return torch.einsum("bp,bnp->bn", b, t) + self.bias


class EvenGridFNO(nn.Module):
    """Run a grid operator on an odd grid by padding one replicated row/column to even size.

    ``(B, C, H, W) -> (B, C_out, H, W)``: pads odd ``H``/``W`` by one replicated cell at the end,
    applies ``inner`` and crops back. neuraloperator 2.0.0's ``SpectralConv`` shifts the spectrum
    back with ``fftshift`` instead of ``ifftshift`` (fixed upstream in PR #688), which misplaces
    the frequencies by one on odd grids; on even grids the two coincide.

    Args:
        inner: the operator to wrap, ``(B, C, H', W') -> (B, C_out, H', W')``.
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad to even size, apply the wrapped operator, crop.

        Args:
            x: ``(B, C, H, W)``.

        Returns:
            ``(B, C_out, H, W)``.
        """
        x = check_floating(x, "x")
        if x.ndim != 4:
            raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        x = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
        return self.inner(x)[..., :h, :w]


def neuralop_fno(
    in_channels: int = 1,
    out_channels: int = 1,
    *,
    width: int = 16,
    modes: int = 8,
    depth: int = 4,
) -> nn.Module:
    """neuraloperator's ``FNO`` (the issue's peer) with :class:`FNO2d`'s mode convention.

    ``modes`` counts frequencies per sign as in :class:`SpectralConv2d`, i.e.
    ``n_modes = (2·modes, 2·modes)`` for neuraloperator; its defaults otherwise (grid positional
    embedding, channel MLPs, linear skips). Wrapped in :class:`EvenGridFNO` so that odd grids are
    handled correctly. Requires the optional ``neuraloperator`` package.

    Args:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        width: hidden channels.
        modes: Fourier modes per direction and sign.
        depth: number of Fourier layers.

    Returns:
        A module ``(B, C_in, H, W) -> (B, C_out, H, W)``.
    """
    if modes < 1 or width < 1 or depth < 1:
        raise ValueError(f"modes, width and depth must be >= 1, got {modes}, {width}, {depth}")
    from neuralop.models import FNO

    fno = FNO(
        n_modes=(2 * modes, 2 * modes),
        in_channels=in_channels,
        out_channels=out_channels,
        hidden_channels=width,
        n_layers=depth,
    )
    return EvenGridFNO(fno)
