"""Multi-scale spectral loss (DDSP §4.2.1).

``L = sum_i ||S_i - S^_i||_1 + alpha ||log S_i - log S^_i||_1`` over FFT sizes
``i in (2048, 1024, 512, 256, 128, 64)``, with ``S_i`` the STFT magnitude at 75 % overlap and the
L1 norms taken as means (magenta/ddsp ``SpectralLoss``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as nnf
from torch import nn

from torchloom.core.checks import check_floating, check_ndim, check_positive, check_same_shape
from torchloom.dsp.core import safe_log

__all__ = ["MultiScaleSpectralLoss", "multiscale_spectral_loss", "stft_magnitude"]


def _hop(fft_size: int, overlap: float) -> int:
    hop = fft_size * (1.0 - overlap)
    if hop < 1 or abs(hop - round(hop)) > 1e-9:
        raise ValueError(
            f"fft_size * (1 - overlap) must be a positive integer hop, got fft_size={fft_size}, "
            f"overlap={overlap}"
        )
    return round(hop)


def stft_magnitude(
    audio: torch.Tensor, fft_size: int, overlap: float = 0.75, pad_end: bool = True
) -> torch.Tensor:
    """``|STFT|`` with a periodic Hann window of ``fft_size`` and hop ``fft_size (1 - overlap)``.

    Frames start at sample 0; ``pad_end`` zero-pads the end so every sample is covered
    (``ceil(N / hop)`` frames, TensorFlow's ``tf.signal.stft(pad_end=True)``).

    Shapes: ``(B, N)`` -> ``(B, n_frames, fft_size // 2 + 1)``.
    """
    check_floating(audio, "audio")
    check_ndim(audio, "audio", 2, "(B, N)")
    if isinstance(fft_size, bool) or not isinstance(fft_size, int) or fft_size < 2:
        raise ValueError(f"fft_size must be an int >= 2, got {fft_size!r}")
    n = audio.shape[-1]
    if fft_size > n:
        raise ValueError(f"fft_size {fft_size} is larger than the signal ({n} samples)")
    hop = _hop(fft_size, overlap)
    if pad_end:
        n_frames = -(-n // hop)
        audio = nnf.pad(audio, (0, (n_frames - 1) * hop + fft_size - n))
    window = torch.hann_window(fft_size, periodic=True, device=audio.device, dtype=audio.dtype)
    spec = torch.stft(
        audio,
        n_fft=fft_size,
        hop_length=hop,
        win_length=fft_size,
        window=window,
        center=False,
        return_complex=True,
    )
    return spec.abs().transpose(1, 2)


def multiscale_spectral_loss(
    target: torch.Tensor,
    prediction: torch.Tensor,
    fft_sizes: Sequence[int] = (2048, 1024, 512, 256, 128, 64),
    overlap: float = 0.75,
    mag_weight: float = 1.0,
    logmag_weight: float = 1.0,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Functional form of :class:`MultiScaleSpectralLoss`. Shapes: ``(B, N)``, ``(B, N)`` -> ``()``.

    Symmetric in its two arguments; 0 iff the magnitudes agree at every scale.
    """
    check_floating(target, "target")
    check_floating(prediction, "prediction")
    check_ndim(target, "target", 2, "(B, N)")
    check_same_shape(target, prediction, "target", "prediction")
    check_positive(mag_weight, "mag_weight", strict=False)
    check_positive(logmag_weight, "logmag_weight", strict=False)
    if len(fft_sizes) == 0:
        raise ValueError("fft_sizes must name at least one FFT size")
    loss = target.new_zeros(())
    for size in fft_sizes:
        s_t = stft_magnitude(target, size, overlap)
        s_p = stft_magnitude(prediction, size, overlap)
        if mag_weight > 0:
            loss = loss + mag_weight * (s_t - s_p).abs().mean()
        if logmag_weight > 0:
            loss = loss + logmag_weight * (safe_log(s_t, eps) - safe_log(s_p, eps)).abs().mean()
    return loss


class MultiScaleSpectralLoss(nn.Module):
    """DDSP multi-scale spectral loss (§4.2.1, eq. 4).

    ``L = sum_i mag_weight * mean|S_i - S^_i| + logmag_weight * mean|log S_i - log S^_i|``,
    ``S_i`` the Hann-window STFT magnitude at FFT size ``i`` and the given overlap; the log is
    floored at ``eps``. The paper uses sizes (2048, 1024, 512, 256, 128, 64), 75 % overlap and
    ``alpha = logmag_weight = 1``.

    Shapes: ``target`` ``(B, N)``, ``prediction`` ``(B, N)`` -> scalar.
    """

    def __init__(
        self,
        fft_sizes: Sequence[int] = (2048, 1024, 512, 256, 128, 64),
        overlap: float = 0.75,
        mag_weight: float = 1.0,
        logmag_weight: float = 1.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if len(fft_sizes) == 0:
            raise ValueError("fft_sizes must name at least one FFT size")
        for size in fft_sizes:
            _hop(int(size), overlap)
        self.fft_sizes = tuple(int(s) for s in fft_sizes)
        self.overlap = float(overlap)
        self.mag_weight = check_positive(mag_weight, "mag_weight", strict=False)
        self.logmag_weight = check_positive(logmag_weight, "logmag_weight", strict=False)
        self.eps = check_positive(eps, "eps")

    def forward(self, target: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
        return multiscale_spectral_loss(
            target,
            prediction,
            self.fft_sizes,
            self.overlap,
            self.mag_weight,
            self.logmag_weight,
            self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"fft_sizes={self.fft_sizes}, overlap={self.overlap}, mag_weight={self.mag_weight}, "
            f"logmag_weight={self.logmag_weight}"
        )
