"""Stable neural SDEs for irregular time series (Oh, Lim & Kim, ICLR 2024).

The observations drive the latent SDE through the control path ``X(t)`` (an interpolation of
the observations, :mod:`torchloom.neural_de.cde`): ``z̄(t) = ζ(t, z(t), X(t))``, and the three
classes with proven stability/robustness are (diagonal noise, Itô):

- Langevin-type (LSDE):   ``dz = γ(z̄) dt + σ(t) dW``
- Linear noise (LNSDE):   ``dz = γ(t, z̄) dt + σ(t)·z dW``
- Geometric (GSDE):       ``dz = z·γ(t, z̄) dt + z·σ(t) dW``

with ``z(0) = h(X(t₀))`` and a linear readout of ``z(T)``. ``kind="naive"`` is the baseline
``dz = γ(t, z̄) dt + σ(t, z) dW`` with an unrestricted diffusion network.

Implementation notes (the forms above are implemented as stated; these are the choices):

- GSDE is integrated in log coordinates ``y = log z`` (Itô's lemma:
  ``dy = (γ − σ²/2) dt + σ dW``), which is the same SDE but keeps ``z > 0`` exactly under any
  step size; Euler-Maruyama on ``z`` itself can cross zero when ``σΔW < −1``. ``z(0)`` is made
  positive by a softplus of ``h``.
- The authors' code additionally clips/bounds the networks; here only the optional
  ``diffusion_bound`` (``σ ← bound·tanh(σ/bound)``, off by default) is offered, documented as
  a deviation from the paper's equations.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from torchloom.core.checks import check_positive
from torchloom.neural_de.cde import CubicPath
from torchloom.neural_de.sde import sdeint

__all__ = ["StableNeuralSDE"]

Kind = Literal["langevin", "linear_noise", "geometric", "naive"]
KINDS = ("langevin", "linear_noise", "geometric", "naive")


def _mlp(d_in: int, d_out: int, width: int, final: nn.Module | None = None) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Linear(d_in, width),
        nn.Softplus(),
        nn.Linear(width, width),
        nn.Softplus(),
        nn.Linear(width, d_out),
    ]
    if final is not None:
        layers.append(final)
    return nn.Sequential(*layers)


class StableNeuralSDE(nn.Module):
    """LSDE / LNSDE / GSDE (or the naive neural SDE) as a classifier/forecaster head.

    Args:
        input_channels: ``C`` of the control path (e.g. ``1 + 2·D`` from
            :func:`~torchloom.neural_de.observation_channels`).
        hidden_channels: latent size ``H``.
        output_channels: readout size.
        kind: ``"langevin"``, ``"linear_noise"``, ``"geometric"`` or ``"naive"``.
        width: hidden width of every network.
        diffusion_bound: optional bound on ``σ`` (a deviation from the paper; ``None`` = off).
        diffusion_init: ``σ`` at initialisation (the last layer of ``σ``'s network starts with
            zero weights and this bias, so every path starts with the same small noise level;
            an initialisation choice, the equations are unchanged). ``None`` keeps PyTorch's
            default initialisation.
        head: ``"linear"`` readout of ``z(T)``, or ``"mlp"`` — the authors' classifier head
            ``Linear → BatchNorm → ReLU → Linear`` (their dropout omitted).

    Shapes: ``forward(path)`` -> ``(B, output_channels)``, or ``(B, N, output_channels)`` at
    the path's knots with ``return_sequence=True``.
    """

    sde_type = "ito"
    noise_type = "diagonal"

    def __init__(
        self,
        input_channels: int,
        hidden_channels: int,
        output_channels: int,
        kind: Kind = "langevin",
        width: int = 64,
        diffusion_bound: float | None = None,
        diffusion_init: float | None = None,
        head: Literal["linear", "mlp"] = "linear",
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if diffusion_bound is not None:
            check_positive(diffusion_bound, "diffusion_bound")
        self.kind = kind
        self.input_channels, self.hidden_channels = input_channels, hidden_channels
        self.diffusion_bound = diffusion_bound
        self.initial = nn.Linear(input_channels, hidden_channels)
        # ζ(t, z, X(t)): how the observations enter the drift.
        self.zeta = _mlp(1 + hidden_channels + input_channels, hidden_channels, width, nn.Tanh())
        time_in = 0 if kind == "langevin" else 1  # LSDE's drift is autonomous in z̄
        self.gamma = _mlp(time_in + hidden_channels, hidden_channels, width, nn.Tanh())
        sigma_in = 1 + hidden_channels if kind == "naive" else 1
        self.sigma = _mlp(sigma_in, hidden_channels, width)
        if diffusion_init is not None:
            last = self.sigma[-1]
            assert isinstance(last, nn.Linear)
            with torch.no_grad():
                last.weight.zero_()
                last.bias.fill_(diffusion_init)
        if head not in ("linear", "mlp"):
            raise ValueError(f"head must be 'linear' or 'mlp', got {head!r}")
        self.readout: nn.Module = (
            nn.Linear(hidden_channels, output_channels)
            if head == "linear"
            else nn.Sequential(
                nn.Linear(hidden_channels, hidden_channels),
                nn.BatchNorm1d(hidden_channels),
                nn.ReLU(),
                nn.Linear(hidden_channels, output_channels),
            )
        )
        self._path: CubicPath | None = None

    # --- the SDE in the paper's coordinates z --------------------------------------------------

    def _tcol(self, t: Tensor, z: Tensor) -> Tensor:
        return t.to(z.dtype).expand(z.shape[0], 1)

    def _zbar(self, t: Tensor, z: Tensor) -> Tensor:
        if self._path is None:
            raise RuntimeError("the drift needs a control path: call forward(path) or set_path")
        x = self._path.evaluate(t)
        return self.zeta(torch.cat([self._tcol(t, z), z, x], 1))

    def _gamma(self, t: Tensor, z: Tensor) -> Tensor:
        zbar = self._zbar(t, z)
        if self.kind == "langevin":
            return self.gamma(zbar)
        return self.gamma(torch.cat([self._tcol(t, z), zbar], 1))

    def _sigma(self, t: Tensor, z: Tensor) -> Tensor:
        inp = self._tcol(t, z)
        if self.kind == "naive":
            inp = torch.cat([inp, z], 1)
        out = self.sigma(inp)
        if self.kind != "naive":
            out = out.expand_as(z)
        if self.diffusion_bound is not None:
            out = self.diffusion_bound * torch.tanh(out / self.diffusion_bound)
        return out

    def drift(self, t: Tensor, z: Tensor) -> Tensor:
        """The drift in ``z``: ``γ(z̄)``, ``γ(t, z̄)`` or ``z·γ(t, z̄)``; ``(B, H)``."""
        g = self._gamma(t, z)
        return z * g if self.kind == "geometric" else g

    def diffusion(self, t: Tensor, z: Tensor) -> Tensor:
        """The diagonal diffusion in ``z``: ``σ(t)``, ``σ(t)·z``, ``z·σ(t)`` or ``σ(t, z)``."""
        s = self._sigma(t, z)
        return z * s if self.kind in ("linear_noise", "geometric") else s

    # --- torchsde interface (GSDE in log coordinates) ------------------------------------------

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        if self.kind == "geometric":
            z = y.exp()
            return self._gamma(t, z) - 0.5 * self._sigma(t, z) ** 2
        return self.drift(t, y)

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        if self.kind == "geometric":
            return self._sigma(t, y.exp())
        return self.diffusion(t, y)

    def set_path(self, path: CubicPath | None) -> None:
        """Attach the control path the drift reads (``forward`` does this for you)."""
        if path is not None and path.channels != self.input_channels:
            raise ValueError(
                f"path has {path.channels} channels but the model expects {self.input_channels}"
            )
        self._path = path

    def initial_state(self, path: CubicPath) -> Tensor:
        """``z(0) = h(X(t₀))`` (softplus-positive for GSDE), ``(B, H)``."""
        z0 = self.initial(path.evaluate(path.t[0]))
        return nn.functional.softplus(z0) if self.kind == "geometric" else z0

    def latent(
        self,
        path: CubicPath,
        *,
        dt: float = 0.05,
        method: str = "euler",
        generator: torch.Generator | None = None,
        bm: object = None,
        sensitivity: Literal["autograd", "adjoint"] = "autograd",
    ) -> Tensor:
        """``z`` at the path's knots, ``(N, B, H)`` (in the paper's coordinates)."""
        if not isinstance(path, CubicPath):
            raise TypeError(f"path must be a CubicPath, got {type(path).__name__}")
        self.set_path(path)
        try:
            z0 = self.initial_state(path)
            y0 = z0.log() if self.kind == "geometric" else z0
            ys = sdeint(
                self,
                y0,
                path.t,
                method=method,
                dt=dt,
                generator=generator,
                bm=bm,
                sensitivity=sensitivity,
            )
        finally:
            self._path = None
        return ys.exp() if self.kind == "geometric" else ys

    def forward(
        self,
        path: CubicPath,
        *,
        dt: float = 0.05,
        method: str = "euler",
        generator: torch.Generator | None = None,
        return_sequence: bool = False,
    ) -> Tensor:
        zs = self.latent(path, dt=dt, method=method, generator=generator)
        if return_sequence:
            n, b, h = zs.shape
            return self.readout(zs.reshape(n * b, h)).view(n, b, -1).transpose(0, 1)
        return self.readout(zs[-1])
