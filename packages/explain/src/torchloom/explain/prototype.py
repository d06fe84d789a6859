"""Prototype networks: case-based reasoning through prototypes (Li, Liu, Chen & Rudin, AAAI 2018,
"Deep Learning for Case-Based Reasoning through Prototypes: A Neural Network that Explains Its
Predictions").

An autoencoder ``f``/``g`` and a prototype layer holding ``m`` learned codes ``p_j``. The class
logits are a linear map of the negative squared distances ``−‖f(x) − p_j‖²``, so every decision is
a weighted vote of "how close is this input to each prototype", and decoding ``g(p_j)`` shows what
each prototype looks like. The objective is

    λ_c·CE + λ·‖g(f(x)) − x‖²
           + λ₁·(1/m) Σ_j min_i ‖p_j − f(x_i)‖² + λ₂·(1/n) Σ_i min_j ‖f(x_i) − p_j‖²

where R1 pulls every prototype towards some encoding (so it decodes to a realistic input) and R2
pulls every encoding towards some prototype.

Shapes: images ``(B, C, H, W)``; codes ``(B, p)``; prototypes ``(m, p)``; logits ``(B, K)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from torchloom.core.checks import check_ndim, check_positive

__all__ = [
    "PrototypeExplanation",
    "PrototypeLoss",
    "PrototypeNetwork",
    "prototype_regularizers",
]


def prototype_regularizers(
    codes: torch.Tensor, prototypes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R1, R2)`` for codes ``(n, p)`` and prototypes ``(m, p)``:
    R1 = mean_j min_i ‖p_j − z_i‖², R2 = mean_i min_j ‖z_i − p_j‖²."""
    d2 = torch.cdist(codes, prototypes).pow(2)  # (n, m)
    return d2.min(0).values.mean(), d2.min(1).values.mean()


class _ConvAE(nn.Module):
    """Small convolutional autoencoder for ``(B, C, H, W)`` images with H, W divisible by 4."""

    def __init__(self, in_channels: int, size: int, width: int, code: int) -> None:
        super().__init__()
        s = size // 4
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1),
            nn.Sigmoid(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.Sigmoid(),
            nn.Flatten(),
            nn.Linear(width * s * s, code),
        )
        self.decoder = nn.Sequential(
            nn.Linear(code, width * s * s),
            nn.Sigmoid(),
            nn.Unflatten(1, (width, s, s)),
            nn.ConvTranspose2d(width, width, 4, stride=2, padding=1),
            nn.Sigmoid(),
            nn.ConvTranspose2d(width, in_channels, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )


class PrototypeNetwork(nn.Module):
    """Autoencoder + prototype layer + linear classifier on ``−‖f(x) − p_j‖²``.

    Args:
        n_classes: number of classes ``K``.
        n_prototypes: number of prototypes ``m``.
        in_channels: input channels ``C``.
        image_size: input side ``S`` (divisible by 4 for the default autoencoder).
        code: latent size ``p``.
        width: channels of the default conv autoencoder.
        encoder: custom module ``(B, C, H, W) -> (B, p)`` replacing the default encoder.
        decoder: custom module ``(B, p) -> (B, C, H, W)``; pass both or neither.

    ``forward(x)`` returns logits ``(B, K)``; :meth:`distances` the squared distances ``(B, m)``.
    """

    def __init__(
        self,
        n_classes: int,
        n_prototypes: int = 15,
        in_channels: int = 1,
        image_size: int = 8,
        code: int = 16,
        width: int = 32,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        for name, v in (("n_classes", n_classes), ("n_prototypes", n_prototypes), ("code", code)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        enc: nn.Module
        dec: nn.Module
        if encoder is None and decoder is None:
            if image_size % 4:
                raise ValueError(f"image_size must be divisible by 4, got {image_size}")
            ae = _ConvAE(in_channels, image_size, width, code)
            enc, dec = ae.encoder, ae.decoder
        elif encoder is not None and decoder is not None:
            enc, dec = encoder, decoder
        else:
            raise ValueError("pass both encoder and decoder, or neither")
        self.encoder = enc
        self.decoder = dec
        self.in_shape = (in_channels, image_size, image_size)
        self.prototypes = nn.Parameter(torch.rand(n_prototypes, code))
        self.classifier = nn.Linear(n_prototypes, n_classes)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        check_ndim(x, "x", 4, "(B, C, H, W)")
        if tuple(x.shape[1:]) != self.in_shape and isinstance(self.encoder, nn.Sequential):
            raise ValueError(
                f"x must have shape (B, {', '.join(map(str, self.in_shape))}), got {tuple(x.shape)}"
            )
        z: torch.Tensor = self.encoder(x)
        return z

    def distances(self, z: torch.Tensor) -> torch.Tensor:
        """Squared distances ``‖z_i − p_j‖²`` ``(B, m)``."""
        return torch.cdist(z, self.prototypes).pow(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(-self.distances(self.encode(x)))
        return logits

    def decode_prototypes(self) -> torch.Tensor:
        """Prototypes decoded to input space ``(m, C, H, W)``."""
        with torch.no_grad():
            out: torch.Tensor = self.decoder(self.prototypes)
        return out

    def explain(self, x: torch.Tensor, top: int = 3) -> PrototypeExplanation:
        """The ``top`` nearest prototypes of each input and their distances, with the
        prediction: the case-based reason for the decision."""
        with torch.no_grad():
            d = self.distances(self.encode(x))
            logits = self.classifier(-d)
            dist, idx = d.topk(min(top, d.shape[1]), dim=1, largest=False)
        return PrototypeExplanation(logits.argmax(1), idx, dist, self.classifier.weight[:, idx])


@dataclass(frozen=True)
class PrototypeExplanation:
    """``prediction (B,)``, nearest ``prototype (B, top)`` indices and their squared
    ``distance (B, top)``; ``weights (K, B, top)`` are the class weights of those prototypes."""

    prediction: torch.Tensor
    prototype: torch.Tensor
    distance: torch.Tensor
    weights: torch.Tensor


class PrototypeLoss(nn.Module):
    """The four-term objective of the paper, returning the total and its parts.

    Defaults follow the paper: ``λ_c = 20``, ``λ = λ₁ = λ₂ = 1`` (rescaled: the reconstruction
    here is a per-pixel mean, the paper's a per-image sum).
    """

    def __init__(
        self,
        lam_class: float = 20.0,
        lam_recon: float = 1.0,
        lam_r1: float = 1.0,
        lam_r2: float = 1.0,
    ) -> None:
        super().__init__()
        for name, v in (
            ("lam_class", lam_class),
            ("lam_recon", lam_recon),
            ("lam_r1", lam_r1),
            ("lam_r2", lam_r2),
        ):
            check_positive(v, name, strict=False)
        self.lam = (lam_class, lam_recon, lam_r1, lam_r2)

    def forward(
        self, model: PrototypeNetwork, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        z = model.encode(x)
        logits = model.classifier(-model.distances(z))
        ce = nn.functional.cross_entropy(logits, y)
        recon = ((model.decoder(z) - x) ** 2).mean()
        r1, r2 = prototype_regularizers(z, model.prototypes)
        lc, lr, l1, l2 = self.lam
        total = lc * ce + lr * recon + l1 * r1 + l2 * r2
        parts = {
            k: float(v.detach()) for k, v in (("ce", ce), ("recon", recon), ("r1", r1), ("r2", r2))
        }
        if not torch.isfinite(total):
            raise FloatingPointError(f"prototype loss is {float(total.detach())} ({parts})")
        return total, parts
