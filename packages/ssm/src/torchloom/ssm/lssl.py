"""Linear State-Space Layer (LSSL; Gu, Johnson, Goel, Saab, Dao, Rudra, Ré, NeurIPS 2021).

Each of the ``H`` input features is fed to ``M`` (``channels``) copies of a continuous-time
state space ``x' = A x + B u``, ``y = C x + D u`` with a HiPPO-LegS initialised ``A ∈ R^{N×N}``
shared across features and a learnt step ``Δt_h`` per feature. With the bilinear discretisation
``(Ā_h, B̄_h)`` the layer has two equivalent views (paper Sec. 2):

- **recurrent**: ``x_k = Ā x_{k−1} + B̄ u_k``, ``y_k = C x_k + D u_k`` — :meth:`LSSL.step`, O(1)
  per token, for streaming and generation;
- **convolutional**: ``y = K * u + D u`` with the Krylov kernel
  ``K = (C B̄, C Ā B̄, …, C Ā^{L−1} B̄)``, applied by FFT in ``O(L log L)``.

:func:`krylov` builds ``(Ā^l B̄)_{l<L}`` by doubling — ``[X, Ā^{2^j} X]`` with repeated squaring
of ``Ā`` — so only ``⌈log2 L⌉`` matrix products are needed instead of ``L`` sequential
matrix-vector products. The ``H·M`` outputs are mixed by a position-wise linear layer after an
activation (GELU, or a GLU), as in the paper's deep LSSL.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from torchloom.core.checks import check_floating, check_ndim, check_positive
from torchloom.ssm.discretize import gbt
from torchloom.ssm.hippo import hippo

__all__ = ["LSSL", "LSSLModel", "fft_conv", "krylov", "krylov_kernel"]


def krylov(dA: torch.Tensor, dB: torch.Tensor, length: int) -> torch.Tensor:
    """Krylov sequence ``(Ā^l B̄)_{l=0..L−1}`` by doubling.

    Shapes: ``dA`` ``(..., N, N)``, ``dB`` ``(..., N)`` → ``(..., L, N)``.
    """
    check_floating(dA, "dA")
    check_floating(dB, "dB")
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be an int >= 1, got {length!r}")
    if dA.dim() < 2 or dA.shape[-1] != dA.shape[-2] or dB.shape[-1] != dA.shape[-1]:
        raise ValueError(
            f"dA must be (..., N, N) and dB (..., N), got {tuple(dA.shape)} and {tuple(dB.shape)}"
        )
    # Stable Ā has powers that decay geometrically; once they fall into the subnormal range
    # every CPU matmul on them runs several times slower. Entries below sqrt(tiny) are flushed
    # to zero (relative change < 1e-19 in float32), so no product can become subnormal.
    floor = math.sqrt(torch.finfo(dA.dtype).tiny)

    def flush(t: torch.Tensor) -> torch.Tensor:
        # comparisons, not abs(): elementwise arithmetic on subnormals is what is slow
        return t.masked_fill((t < floor) & (t > -floor), 0.0)

    x = dB.unsqueeze(-2)  # rows are the vectors Ā^l B̄
    power_t = dA.transpose(-1, -2)
    while x.shape[-2] < length:
        # rows r^T -> (P r)^T = r^T P^T; the new block holds Ā^{l + 2^j} B̄ (only the rows
        # still needed are multiplied)
        n_new = min(x.shape[-2], length - x.shape[-2])
        x = torch.cat([x, flush(x[..., :n_new, :] @ power_t)], dim=-2)
        if x.shape[-2] < length:
            power_t = flush(power_t @ power_t)
    return x


def krylov_kernel(dA: torch.Tensor, dB: torch.Tensor, C: torch.Tensor, length: int) -> torch.Tensor:
    """SSM convolution kernel ``K_l = C Ā^l B̄`` without materialising the Krylov matrix.

    Writing ``l = q S + r`` with a block size ``S ≈ sqrt(L)`` (a power of two),
    ``K_{qS+r} = (C Ā^{qS}) (Ā^r B̄)``: the ``S`` right vectors ``Ā^r B̄`` and the ``L/S`` left
    vectors ``C (Ā^S)^q`` are each built by doubling (:func:`krylov`), and one batched matrix
    product of ``(L/S, N)`` by ``(N, S)`` gives the kernel. Work ``O(H N^2 sqrt(L) + M H L N)``
    and memory ``O(M H L)`` instead of ``O(H L N)`` for the full Krylov matrix.

    Shapes: ``dA`` ``(H, N, N)``, ``dB`` ``(H, N)``, ``C`` ``(M, H, N)`` → ``(M, H, L)``.
    """
    check_floating(C, "C")
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be an int >= 1, got {length!r}")
    if C.dim() < 2 or C.shape[-1] != dA.shape[-1]:
        raise ValueError(f"C must be (..., H, N) with N={dA.shape[-1]}, got {tuple(C.shape)}")
    block = 1 << max(0, (length - 1).bit_length() // 2)  # ≈ sqrt(L), power of two
    n_blocks = -(-length // block)
    right = krylov(dA, dB, block)  # (H, S, N): Ā^r B̄
    power = dA
    for _ in range(block.bit_length() - 1):  # Ā^S by repeated squaring
        power = power @ power
    floor = math.sqrt(torch.finfo(dA.dtype).tiny)
    power = power.masked_fill((power < floor) & (power > -floor), 0.0)
    # rows c^T (Ā^S)^q, as the Krylov sequence of (Ā^S)^T started at c
    left = krylov(power.transpose(-1, -2), C, n_blocks)  # (M, H, L/S, N)
    k = (left @ right.transpose(-1, -2)).flatten(-2)[..., :length]  # (M, H, L)
    return k.masked_fill((k < floor) & (k > -floor), 0.0)


def fft_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal convolution ``y_t = Σ_{s≤t} k_s u_{t−s}`` along the last axis by FFT.

    Shapes: ``u`` ``(..., L)`` and ``k`` ``(..., L)`` broadcastable → ``(..., L)``.
    """
    length = u.shape[-1]
    if k.shape[-1] != length:
        raise ValueError(f"k must have length {length} like u, got {k.shape[-1]}")
    # zero padding to >= 2L - 1 turns the circular convolution into a linear one; a power of
    # two is the fastest FFT size
    n = 1 << (2 * length - 1).bit_length() if length > 1 else 1
    y: torch.Tensor = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n), n=n)
    return y[..., :length]


class LSSL(nn.Module):
    """Linear State-Space Layer.

    Args:
        d_model: features ``H``.
        state_dim: state size ``N`` (HiPPO order).
        channels: SSM copies ``M`` per feature.
        dt_min, dt_max: ``Δt`` initialised log-uniformly in ``[dt_min, dt_max]`` per feature.
        train_A: learn ``A`` and ``B`` (else fixed HiPPO buffers).
        train_dt: learn ``log Δt``.
        measure: HiPPO measure for the initial ``A``, ``B`` (``"legs"``, ``"legt"``, ``"lagt"``).
        alpha: GBT parameter (``0.5`` = bilinear, the paper's choice).
        activation: ``"gelu"`` (then linear ``H·M → H``) or ``"glu"`` (linear ``H·M → 2H``, GLU).
        l_max: longest sequence accepted (``None``: any).

    Shapes:
        forward: ``u`` ``(B, L, H)`` → ``(B, L, H)``.
        step: ``u`` ``(B, H)``, state ``(B, H, N)`` → ``(B, H)``, state ``(B, H, N)``.
    """

    def __init__(
        self,
        d_model: int,
        state_dim: int = 64,
        channels: int = 1,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        train_A: bool = False,
        train_dt: bool = True,
        *,
        measure: str = "legs",
        alpha: float = 0.5,
        activation: Literal["gelu", "glu"] = "gelu",
        l_max: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, v in (("d_model", d_model), ("state_dim", state_dim), ("channels", channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        check_positive(dt_min, "dt_min")
        check_positive(dt_max, "dt_max")
        if dt_min > dt_max:
            raise ValueError(f"dt_min must be <= dt_max, got {dt_min} > {dt_max}")
        if activation not in ("gelu", "glu"):
            raise ValueError(f"activation must be 'gelu' or 'glu', got {activation!r}")
        if l_max is not None and (
            isinstance(l_max, bool) or not isinstance(l_max, int) or l_max < 1
        ):
            raise ValueError(f"l_max must be None or an int >= 1, got {l_max!r}")
        fk: dict[str, Any] = {"device": device, "dtype": dtype or torch.get_default_dtype()}
        self.d_model, self.state_dim, self.channels = d_model, state_dim, channels
        self.alpha, self.activation, self.l_max = float(alpha), activation, l_max
        a, b = hippo(measure, state_dim, **fk)
        if train_A:
            self.A = nn.Parameter(a)
            self.B = nn.Parameter(b)
        else:
            self.register_buffer("A", a)
            self.register_buffer("B", b)
        log_dt = torch.rand(d_model, **fk) * (math.log(dt_max) - math.log(dt_min)) + math.log(
            dt_min
        )
        if train_dt:
            self.log_dt = nn.Parameter(log_dt)
        else:
            self.register_buffer("log_dt", log_dt)
        self.C = nn.Parameter(torch.randn(channels, d_model, state_dim, **fk) / math.sqrt(2.0))
        self.D = nn.Parameter(torch.randn(channels, d_model, **fk))
        out = 2 * d_model if activation == "glu" else d_model
        self.output_linear = nn.Linear(channels * d_model, out, **fk)

    def discrete(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Ā, B̄)`` per feature: ``(H, N, N)`` and ``(H, N)``."""
        a = self.A.expand(self.d_model, -1, -1)
        b = self.B.expand(self.d_model, -1)
        return gbt(a, b, torch.exp(self.log_dt), self.alpha)

    def kernel(self, length: int) -> torch.Tensor:
        """Convolution kernel ``K[m, h, l] = C_{m,h} Ā_h^l B̄_h``, shape ``(M, H, L)``."""
        da, db = self.discrete()
        return krylov_kernel(da, db, self.C, length)

    def _check_input(self, u: torch.Tensor) -> None:
        check_floating(u, "u")
        check_ndim(u, "u", 3, "(B, L, H)")
        if u.shape[-1] != self.d_model:
            raise ValueError(f"u must have {self.d_model} features (B, L, H), got {tuple(u.shape)}")
        if u.shape[1] < 1:
            raise ValueError("u must have at least one time step")
        if self.l_max is not None and u.shape[1] > self.l_max:
            raise ValueError(f"sequence length {u.shape[1]} exceeds l_max={self.l_max}")

    def _mix(self, y: torch.Tensor) -> torch.Tensor:
        # y: (..., M, H) -> (..., H)
        y = F.gelu(y.flatten(-2))
        y = self.output_linear(y)
        return F.glu(y, dim=-1) if self.activation == "glu" else y

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Convolutional mode (FFT), ``(B, L, H)`` → ``(B, L, H)``."""
        self._check_input(u)
        length = u.shape[1]
        k = self.kernel(length)  # (M, H, L)
        ut = u.transpose(1, 2)  # (B, H, L)
        y = fft_conv(ut.unsqueeze(1), k)  # (B, M, H, L)
        y = y + ut.unsqueeze(1) * self.D[..., None]
        return self._mix(y.permute(0, 3, 1, 2))

    def default_state(self, batch: int) -> torch.Tensor:
        """Zero state ``(B, H, N)`` on the layer's device and dtype."""
        return self.C.new_zeros(batch, self.d_model, self.state_dim)

    def step(
        self,
        u: torch.Tensor,
        state: torch.Tensor,
        discrete: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step: ``x ← Ā x + B̄ u``, ``y = C x + D u``.

        ``discrete`` may pass a precomputed :meth:`discrete` to skip re-discretising.
        """
        check_floating(u, "u")
        if u.dim() != 2 or u.shape[-1] != self.d_model:
            raise ValueError(f"u must have shape (B, {self.d_model}), got {tuple(u.shape)}")
        want = (u.shape[0], self.d_model, self.state_dim)
        if tuple(state.shape) != want:
            raise ValueError(f"state must have shape {want}, got {tuple(state.shape)}")
        da, db = self.discrete() if discrete is None else discrete
        x = torch.einsum("hij,bhj->bhi", da, state) + db * u[..., None]
        y = torch.einsum("mhn,bhn->bmh", self.C, x) + self.D * u[:, None, :]
        return self._mix(y), x

    def forward_recurrent(
        self, u: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Recurrent mode over a whole sequence: ``(B, L, H)`` → ``(B, L, H)`` and final state."""
        self._check_input(u)
        x = self.default_state(u.shape[0]) if state is None else state
        want = (u.shape[0], self.d_model, self.state_dim)
        if tuple(x.shape) != want:
            raise ValueError(f"state must have shape {want}, got {tuple(x.shape)}")
        da, db = self.discrete()
        # a lean sequential scan: only x_k = Ā x_{k-1} + B̄ u_k is inherently sequential; the
        # readout C x_k + D u_k and the position-wise mixing run once over all steps
        da_t = da.transpose(-1, -2).unsqueeze(0)  # (1, H, N, N)
        bu = db * u[..., None]  # (B, L, H, N)
        xs = []
        for t in range(u.shape[1]):
            x = (x.unsqueeze(-2) @ da_t).squeeze(-2) + bu[:, t]
            xs.append(x)
        states = torch.stack(xs, 1)  # (B, L, H, N)
        y = torch.einsum("mhn,blhn->blmh", self.C, states) + self.D * u[:, :, None, :]
        return self._mix(y), x


class LSSLModel(nn.Module):
    """Deep LSSL: encoder, ``n_layers`` × (LSSL → dropout → residual → LayerNorm), pooling, decoder.

    Shapes: ``x`` ``(B, L, d_input)`` → ``(B, d_output)`` (``pool="mean"`` or ``"last"``) or
    ``(B, L, d_output)`` (``pool="none"``).
    """

    def __init__(
        self,
        d_input: int,
        d_output: int,
        d_model: int = 64,
        n_layers: int = 2,
        state_dim: int = 64,
        channels: int = 1,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dropout: float = 0.0,
        train_A: bool = False,
        train_dt: bool = True,
        *,
        pool: Literal["mean", "last", "none"] = "mean",
        prenorm: bool = False,
        activation: Literal["gelu", "glu"] = "gelu",
        measure: str = "legs",
    ) -> None:
        super().__init__()
        if pool not in ("mean", "last", "none"):
            raise ValueError(f"pool must be 'mean', 'last' or 'none', got {pool!r}")
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"n_layers must be an int >= 1, got {n_layers!r}")
        self.pool, self.prenorm, self.d_input = pool, prenorm, d_input
        self.encoder = nn.Linear(d_input, d_model)
        self.layers = nn.ModuleList(
            LSSL(
                d_model,
                state_dim,
                channels,
                dt_min,
                dt_max,
                train_A,
                train_dt,
                activation=activation,
                measure=measure,
            )
            for _ in range(n_layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.Linear(d_model, d_output)

    def forward(self, x: torch.Tensor, mode: Literal["conv", "recurrent"] = "conv") -> torch.Tensor:
        check_floating(x, "x")
        check_ndim(x, "x", 3, "(B, L, d_input)")
        if x.shape[-1] != self.d_input:
            raise ValueError(f"x must have {self.d_input} features, got {tuple(x.shape)}")
        if mode not in ("conv", "recurrent"):
            raise ValueError(f"mode must be 'conv' or 'recurrent', got {mode!r}")
        h = self.encoder(x)
        for layer, norm in zip(self.layers, self.norms):
            if not isinstance(layer, LSSL):  # pragma: no cover - narrows ModuleList's type
                raise TypeError(f"layers must hold LSSL modules, got {type(layer).__name__}")
            z = norm(h) if self.prenorm else h
            z = layer(z) if mode == "conv" else layer.forward_recurrent(z)[0]
            h = h + self.dropout(z)
            if not self.prenorm:
                h = norm(h)
        if self.pool == "mean":
            h = h.mean(1)
        elif self.pool == "last":
            h = h[:, -1]
        out: torch.Tensor = self.decoder(h)
        return out
