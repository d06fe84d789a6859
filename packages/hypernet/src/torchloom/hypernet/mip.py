"""Magnitude Invariant Parametrizations (MIP) for hypernetworks.

Ortiz, Guttag & Dalca, "Non-Proportional Parametrizations for Stable Hypernetwork Learning"
(ICLR 2024). With the *default* formulation ``θ = h(z)`` a ReLU hypernetwork's output
magnitude is (nearly) proportional to its input's, ``‖h(cz)‖ ≈ c‖h(z)‖``, so the primary
network's weights — and the gradients — swing with ``z``'s magnitude and training is unstable.
MIP removes the proportionality with two changes:

- input encoding: each ``z_i ∈ [0, 1]`` becomes ``[cos(π z_i / 2), sin(π z_i / 2)]``, so the
  encoded input has constant norm ``sqrt(d)``;
- additive output: ``θ(z) = θ₀ + Δθ(z)``, ``θ₀`` a learnable input-independent vector (the
  output layer's bias) initialised like the primary network's own weights (Kaiming), and the
  output layer's weights initialised per output block with fan-out scaling so ``Δθ`` starts
  small beside ``θ₀``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from torchloom.core.checks import check_floating
from torchloom.core.warnings import TorchloomWarning
from torchloom.hypernet.hypernetize import HyperTarget

__all__ = ["MIPHyperNetwork", "mip_encode"]

Formulation = Literal["mip", "default"]


def mip_encode(z: torch.Tensor) -> torch.Tensor:
    """MIP input encoding ``E(z) = [cos(π z / 2), sin(π z / 2)]`` per input dimension.

    ``‖E(z)‖ = sqrt(d)`` for every ``z``; warns (:class:`TorchloomWarning`) when some
    ``z_i`` lies outside ``[0, 1]``, where the encoding stops being one-to-one.

    Shapes: ``z`` is ``(..., d)``; returns ``(..., 2d)`` (all cosines, then all sines).
    """
    z = check_floating(z, "z")
    if z.ndim == 0:
        raise ValueError("z must have a trailing feature axis (..., d), got a scalar")
    if bool(((z < 0) | (z > 1)).any()):
        warnings.warn(
            f"MIP inputs z should lie in [0, 1]; got range [{z.min().item():.3g}, "
            f"{z.max().item():.3g}] — the cos/sin encoding is only one-to-one there",
            TorchloomWarning,
            stacklevel=2,
        )
    angle = 0.5 * math.pi * z
    return torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1)


def _kaiming_theta(target: HyperTarget, generator: torch.Generator | None) -> torch.Tensor:
    """θ₀ initialised like the primary network: Kaiming-normal (fan-in, ReLU gain) for weight
    tensors, zeros for biases, the module's own values for other vectors (norm scales)."""
    own = target.unflatten(target.own_parameters().detach())
    out = {}
    for name, value in own.items():
        if value.ndim >= 2:
            # drawn where the generator lives (recipes hand out a CPU one), then moved
            where = generator.device if generator is not None else value.device
            t = torch.empty(value.shape, dtype=value.dtype, device=where)
            nn.init.kaiming_normal_(t, mode="fan_in", nonlinearity="relu", generator=generator)
            t = t.to(value.device)
        elif name.rsplit(".", 1)[-1] == "bias":
            t = torch.zeros_like(value)
        else:
            t = value.clone()
        out[name] = t
    return target.flatten(out)


class MIPHyperNetwork(nn.Module):
    """An MLP hypernetwork predicting the parameters of a :class:`HyperTarget`.

    ``formulation="mip"`` (default):
    ``θ(z) = θ₀ + W_out · φ(… φ(W_1 · E(z)))`` with ``E`` = :func:`mip_encode`,
    ``φ`` = LeakyReLU, hidden layers Kaiming-normal (fan-out) with zero bias, ``W_out``
    initialised block by block (one block per predicted tensor, ``std = 1/sqrt(block size)``,
    the fan-out of that block) and ``θ₀`` Kaiming (:func:`_kaiming_theta`).

    ``formulation="default"``: the proportional baseline, ``θ(z) = W_out · φ(… φ(W_1 z + b_1)) +
    b_out`` on the raw input, initialised as the paper's (and HyperLight's) default
    hypernetwork: Kaiming-normal fan-out weights (linear gain for ``W_out``) and zero biases,
    so that at initialisation ``θ(cz) = c·θ(z)`` exactly.

    Args:
        target: the primary network, made a hypernetwork target by :func:`hypernetize`.
        input_dim: number ``d`` of conditioning inputs.
        hidden: hidden widths of the hypernetwork MLP.
        formulation: ``"mip"`` or ``"default"``.
        freeze_theta0: keep ``θ₀`` fixed (a buffer) and learn only ``Δθ`` (MIP only).
        generator: randomness for the initialisation.

    Shapes: ``z`` is ``(B, d)`` (or ``(d,)``); returns ``θ`` as ``(B, P)`` (or ``(P,)``),
    ready for ``target(θ, x)``.
    """

    theta0: torch.Tensor | None

    def __init__(
        self,
        target: HyperTarget,
        input_dim: int = 1,
        hidden: Sequence[int] = (64, 64),
        formulation: Formulation = "mip",
        freeze_theta0: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(target, HyperTarget):
            raise TypeError(
                f"target must be a HyperTarget (see hypernetize), got {type(target).__name__}"
            )
        if isinstance(input_dim, bool) or not isinstance(input_dim, int) or input_dim < 1:
            raise ValueError(f"input_dim must be a positive int, got {input_dim!r}")
        hidden = tuple(hidden)
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"hidden must be positive ints, got {hidden!r}")
        if formulation not in ("mip", "default"):
            raise ValueError(f"formulation must be 'mip' or 'default', got {formulation!r}")
        if freeze_theta0 and formulation != "mip":
            raise ValueError("freeze_theta0 needs formulation='mip' (the default has no θ₀)")
        self.formulation: Formulation = formulation
        self.input_dim = input_dim
        self.names = target.names
        self.sizes = target.sizes
        self.num_params = target.num_params
        mip = formulation == "mip"

        layers: list[nn.Module] = []
        width = 2 * input_dim if mip else input_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        # MIP: θ₀ is the output layer's bias, kept as its own tensor so it can be frozen
        self.out = nn.Linear(width, self.num_params, bias=not mip)
        dtype = target.own_parameters().dtype
        self.to(dtype)

        if mip:
            theta0 = _kaiming_theta(target, generator)
            if freeze_theta0:
                self.register_buffer("theta0", theta0)
            else:
                self.theta0 = nn.Parameter(theta0)
            self._init_mip(generator)
        else:
            self.theta0 = None
            self._init_default(generator)

    @torch.no_grad()
    def _init_default(self, generator: torch.Generator | None) -> None:
        for m in [*self.body, self.out]:
            if isinstance(m, nn.Linear):
                if m is self.out:
                    nn.init.kaiming_normal_(
                        m.weight, mode="fan_out", nonlinearity="linear", generator=generator
                    )
                else:
                    nn.init.kaiming_normal_(
                        m.weight, mode="fan_out", nonlinearity="leaky_relu", generator=generator
                    )
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @torch.no_grad()
    def _init_mip(self, generator: torch.Generator | None) -> None:
        for m in self.body:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(
                    m.weight, mode="fan_out", nonlinearity="leaky_relu", generator=generator
                )
                nn.init.zeros_(m.bias)
        # per output block: fan-out of block k is its size n_k, linear gain -> std 1/sqrt(n_k)
        start = 0
        for n in self.sizes:
            block = self.out.weight[start : start + n]
            block.normal_(0.0, 1.0 / math.sqrt(n), generator=generator)
            start += n

    @classmethod
    def from_existing(
        cls, target: HyperTarget, input_dim: int = 1, **kwargs: object
    ) -> MIPHyperNetwork:
        """A MIP hypernetwork whose ``θ₀`` is ``target``'s current (e.g. pretrained) weights."""
        kwargs = dict(kwargs)
        if kwargs.get("formulation", "mip") != "mip":
            raise ValueError("from_existing needs formulation='mip' (θ₀ holds the weights)")
        net = cls(target, input_dim, **kwargs)  # type: ignore[arg-type]
        theta0 = net.theta0
        if theta0 is None:  # unreachable: the MIP branch always sets θ₀
            raise RuntimeError("MIP hypernetwork without θ₀")
        with torch.no_grad():
            theta0.copy_(target.own_parameters().to(theta0))
        return net

    def delta(self, z: torch.Tensor) -> torch.Tensor:
        """The input-dependent part: ``Δθ(z)`` under MIP, ``h(z)`` (all of θ) by default."""
        z = check_floating(z, "z")
        if z.ndim not in (1, 2) or z.shape[-1] != self.input_dim:
            raise ValueError(
                f"z must be (B, {self.input_dim}) or ({self.input_dim},), got {tuple(z.shape)}"
            )
        u = mip_encode(z) if self.formulation == "mip" else z
        return self.out(self.body(u))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``θ(z)``: ``θ₀ + Δθ(E(z))`` under MIP, ``h(z)`` by default."""
        d = self.delta(z)
        return d if self.theta0 is None else self.theta0 + d

    def extra_repr(self) -> str:
        return f"formulation={self.formulation!r}, num_params={self.num_params}"
