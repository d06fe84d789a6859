"""The DDSP autoencoder (Engel et al., ICLR 2020, §4 and Appendix B).

Encoder: f0 (YIN here; CREPE in the paper), A-weighted loudness and, optionally, a latent ``z``
from MFCCs (normalisation -> GRU -> linear). Decoder: each input through an MLP
(Linear -> LayerNorm -> ReLU, ``n_layers`` times), concatenation, a GRU, the GRU output
concatenated with the MLP outputs, a final MLP and a linear head producing the amplitude,
harmonic distribution and noise magnitudes. The synth is :class:`Harmonic` + :class:`FilteredNoise`
followed by an optional learned :class:`Reverb`. Train with :class:`MultiScaleSpectralLoss`.
"""

from __future__ import annotations

import torch
from torch import nn

from torchloom.core.checks import check_floating, check_ndim, check_positive
from torchloom.dsp.features import _hop, compute_loudness, mfcc, yin
from torchloom.dsp.noise import FilteredNoise
from torchloom.dsp.reverb import Reverb
from torchloom.dsp.synth import Harmonic

__all__ = ["Autoencoder", "Decoder", "ZEncoder", "hz_to_midi", "mlp"]

F0_RANGE = 127.0  # MIDI range used to scale f0 to [0, 1]
LD_RANGE = 120.0  # dB range used to scale loudness to about [0, 1]


def hz_to_midi(f0: torch.Tensor) -> torch.Tensor:
    """MIDI note number ``12 log2(f / 440) + 69`` (0 for f <= 0)."""
    check_floating(f0, "f0")
    midi = 12.0 * torch.log2(f0.clamp(min=1e-5) / 440.0) + 69.0
    return torch.where(f0 > 0, midi, torch.zeros_like(midi)).clamp(min=0.0)


def mlp(in_size: int, hidden: int, n_layers: int = 3) -> nn.Sequential:
    """DDSP's MLP: ``n_layers`` x (Linear -> LayerNorm -> ReLU)."""
    layers: list[nn.Module] = []
    for i in range(n_layers):
        layers += [
            nn.Linear(in_size if i == 0 else hidden, hidden),
            nn.LayerNorm(hidden),
            nn.ReLU(),
        ]
    return nn.Sequential(*layers)


class ZEncoder(nn.Module):
    """Latent timbre encoder: MFCCs -> normalisation -> GRU -> linear ``z`` (paper §B.2).

    Shapes: ``(B, F, n_mfcc)`` -> ``(B, F, z_dim)``.
    """

    def __init__(self, n_mfcc: int = 30, hidden: int = 512, z_dim: int = 16) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm1d(n_mfcc, affine=True)
        self.gru = nn.GRU(n_mfcc, hidden, batch_first=True)
        self.out = nn.Linear(hidden, z_dim)

    def forward(self, mfccs: torch.Tensor) -> torch.Tensor:
        check_ndim(mfccs, "mfccs", 3, "(B, F, n_mfcc)")
        x = self.norm(mfccs.transpose(1, 2)).transpose(1, 2)
        return self.out(self.gru(x)[0])


class Decoder(nn.Module):
    """DDSP decoder: (f0, loudness[, z]) -> raw synth controls (paper §B.3, Fig. 2).

    Inputs are scaled as in magenta/ddsp: ``midi(f0) / 127`` and ``loudness / 120 + 1``.

    Shapes: ``f0`` ``(B, F)`` Hz, ``loudness`` ``(B, F)`` dB, ``z`` ``(B, F, z_dim)`` ->
    ``amplitude`` ``(B, F)``, ``harmonic_distribution`` ``(B, F, n_harmonics)``,
    ``noise_magnitudes`` ``(B, F, n_noise_bands)`` (before the exponentiated sigmoid).
    """

    def __init__(
        self,
        n_harmonics: int = 60,
        n_noise_bands: int = 65,
        hidden: int = 512,
        n_layers: int = 3,
        z_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.n_harmonics = n_harmonics
        self.n_noise_bands = n_noise_bands
        self.z_dim = z_dim
        n_inputs = 2 if z_dim is None else 3
        self.f0_mlp = mlp(1, hidden, n_layers)
        self.ld_mlp = mlp(1, hidden, n_layers)
        self.z_mlp = mlp(z_dim, hidden, n_layers) if z_dim is not None else None
        self.gru = nn.GRU(n_inputs * hidden, hidden, batch_first=True)
        self.out_mlp = mlp((n_inputs + 1) * hidden, hidden, n_layers)
        self.head = nn.Linear(hidden, 1 + n_harmonics + n_noise_bands)

    def forward(
        self, f0: torch.Tensor, loudness: torch.Tensor, z: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        check_ndim(f0, "f0", 2, "(B, F)")
        check_ndim(loudness, "loudness", 2, "(B, F)")
        if f0.shape != loudness.shape:
            raise ValueError(
                f"f0 and loudness must have the same (B, F) shape, got {tuple(f0.shape)} and "
                f"{tuple(loudness.shape)}"
            )
        feats = [
            self.f0_mlp((hz_to_midi(f0) / F0_RANGE).unsqueeze(-1)),
            self.ld_mlp((loudness / LD_RANGE + 1.0).unsqueeze(-1)),
        ]
        if self.z_mlp is not None:
            if z is None or z.dim() != 3 or z.shape[:2] != f0.shape:
                got = None if z is None else tuple(z.shape)
                raise ValueError(f"z must have shape (B, F, {self.z_dim}) here, got {got}")
            feats.append(self.z_mlp(z))
        elif z is not None:
            raise ValueError("z was given but the decoder was built with z_dim=None")
        x = torch.cat(feats, dim=-1)
        x = torch.cat([self.gru(x)[0], *feats], dim=-1)
        out = self.head(self.out_mlp(x))
        amp, dist, noise = out.split([1, self.n_harmonics, self.n_noise_bands], dim=-1)
        return amp.squeeze(-1), dist, noise


class Autoencoder(nn.Module):
    """DDSP autoencoder: audio -> (f0, loudness[, z]) -> decoder -> harmonic + noise -> reverb.

    ``forward(audio)`` returns a dict with the resynthesis ``audio`` ``(B, N)``, its
    ``harmonic`` and ``noise`` parts, the conditioning ``f0``/``loudness`` ``(B, F)`` and the
    scaled controls. ``N`` must be a multiple of ``hop = sample_rate / frame_rate``.
    ``decode(f0, loudness, z)`` synthesises from given features (e.g. a shifted f0).
    """

    def __init__(
        self,
        n_samples: int,
        sample_rate: float = 16000,
        frame_rate: float = 250,
        n_harmonics: int = 60,
        n_noise_bands: int = 65,
        hidden: int = 512,
        n_layers: int = 3,
        z_dim: int | None = 16,
        n_mfcc: int = 30,
        reverb_length: int | None = None,
    ) -> None:
        super().__init__()
        self.sample_rate = check_positive(sample_rate, "sample_rate")
        self.frame_rate = check_positive(frame_rate, "frame_rate")
        self.hop = _hop(self.sample_rate, self.frame_rate)
        if n_samples % self.hop != 0:
            raise ValueError(
                f"n_samples must be a multiple of the hop ({self.hop}), got {n_samples}"
            )
        self.n_samples = n_samples
        self.n_mfcc = n_mfcc
        self.encoder = ZEncoder(n_mfcc, hidden, z_dim) if z_dim is not None else None
        self.decoder = Decoder(n_harmonics, n_noise_bands, hidden, n_layers, z_dim)
        self.harmonic = Harmonic(self.sample_rate, n_samples)
        self.noise = FilteredNoise(n_samples)
        self.reverb = Reverb(reverb_length) if reverb_length is not None else None

    def features(
        self, audio: torch.Tensor, f0: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """f0 (YIN unless given), loudness and MFCCs at frame rate; ``(B, N)`` -> ``(B, F)``."""
        check_floating(audio, "audio")
        if audio.dim() != 2 or audio.shape[-1] != self.n_samples:
            raise ValueError(
                f"audio must have shape (B, {self.n_samples}), got {tuple(audio.shape)}"
            )
        with torch.no_grad():
            if f0 is None:
                f0, _ = yin(audio, self.sample_rate, self.frame_rate)
            loudness = compute_loudness(audio, self.sample_rate, self.frame_rate)
        feats = {"f0": f0, "loudness": loudness}
        if self.encoder is not None:
            feats["mfcc"] = mfcc(audio, self.sample_rate, self.frame_rate, n_mfcc=self.n_mfcc)
        return feats

    def decode(
        self,
        f0: torch.Tensor,
        loudness: torch.Tensor,
        z: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Synthesise from frame-rate ``f0`` (Hz) and ``loudness`` (dB), both ``(B, F)``."""
        if f0.shape[-1] * self.hop != self.n_samples:
            raise ValueError(
                f"expected {self.n_samples // self.hop} frames for n_samples={self.n_samples}, "
                f"got f0 of shape {tuple(f0.shape)}"
            )
        amp, dist, noise_mag = self.decoder(f0, loudness, z)
        harmonic = self.harmonic(f0, amp, dist)
        noise = self.noise(noise_mag, generator)
        audio = harmonic + noise
        if self.reverb is not None:
            audio = self.reverb(audio)
        return {
            "audio": audio,
            "harmonic": harmonic,
            "noise": noise,
            "f0": f0,
            "loudness": loudness,
        }

    def forward(
        self,
        audio: torch.Tensor,
        f0: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        feats = self.features(audio, f0)
        z = self.encoder(feats["mfcc"]) if self.encoder is not None else None
        out = self.decode(feats["f0"], feats["loudness"], z, generator)
        if z is not None:
            out["z"] = z
        return out

    def extra_repr(self) -> str:
        return (
            f"n_samples={self.n_samples}, sample_rate={self.sample_rate:g}, "
            f"frame_rate={self.frame_rate:g}, hop={self.hop}"
        )
