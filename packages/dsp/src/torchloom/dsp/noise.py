"""DDSP filtered noise: frequency-sampling FIR design, FFT convolution with time-varying filters,
and the filtered-noise synthesizer (Engel et al., ICLR 2020, §3.3).

Time runs along dimension 1: frame-rate controls ``(B, F, ...)``, audio ``(B, N)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as nnf
from torch import nn

from torchloom.core.checks import check_floating, check_int, check_ndim
from torchloom.dsp.core import exp_sigmoid

__all__ = ["FilteredNoise", "fft_convolve", "filtered_noise", "frequency_impulse_response"]


def frequency_impulse_response(
    magnitudes: torch.Tensor, window_size: int | None = None
) -> torch.Tensor:
    """Linear-phase FIR filters from sampled magnitude responses (frequency-sampling design).

    The ``M`` magnitudes sit at ``linspace(0, sr/2, M)``. The zero-phase impulse response
    ``irfft(magnitudes)`` (length ``2(M-1)``) is truncated to ``window_size`` taps (odd, at most
    ``2M - 3``; the default), multiplied by a symmetric Hann window and shifted to be causal with
    delay ``(window_size - 1) / 2``. This is ``scipy.signal.firwin2(window_size, linspace(0, 1, M),
    magnitudes, window="hann")`` when ``M - 1`` is a power of two.

    Shapes: ``(..., M)`` -> ``(..., window_size)``.
    """
    check_floating(magnitudes, "magnitudes")
    n_mag = magnitudes.shape[-1]
    if n_mag < 3:
        raise ValueError(f"magnitudes needs at least 3 frequency bins, got {n_mag}")
    ir_size = 2 * (n_mag - 1)
    if window_size is None:
        window_size = ir_size - 1
    check_int(window_size, "window_size")
    if window_size % 2 == 0 or window_size > ir_size - 1:
        raise ValueError(
            f"window_size must be odd and at most 2 * (M - 1) - 1 = {ir_size - 1} for M = {n_mag} "
            f"magnitudes, got {window_size}"
        )
    zero_phase = torch.fft.irfft(magnitudes, n=ir_size, dim=-1)
    half = (window_size - 1) // 2
    causal = torch.cat([zero_phase[..., ir_size - half :], zero_phase[..., : half + 1]], dim=-1)
    n = torch.arange(window_size, device=magnitudes.device, dtype=magnitudes.dtype)
    if window_size > 1:
        window = 0.5 - 0.5 * torch.cos(2.0 * math.pi * n / (window_size - 1))
    else:
        window = torch.ones_like(n)
    return causal * window


def fft_convolve(
    audio: torch.Tensor,
    impulse_response: torch.Tensor,
    padding: str = "same",
    delay_compensation: int | None = None,
) -> torch.Tensor:
    """Convolve audio with (time-varying) impulse responses through the FFT.

    With ``F`` impulse responses the audio is cut into ``F`` equal non-overlapping blocks, block
    ``i`` is convolved with response ``i`` and the tails are overlap-added (DDSP's time-varying
    filter). ``padding="valid"`` returns the full convolution ``N + W - 1``; ``"same"`` returns
    ``N`` samples starting at ``delay_compensation`` (default ``(W - 1) // 2``, the group delay of
    :func:`frequency_impulse_response`; use 0 for a causal filter such as a reverb).

    Shapes: ``audio`` ``(B, N)``, ``impulse_response`` ``(B, W)`` or ``(B, F, W)`` (``B`` may be
    1 to share the responses) -> ``(B, N)`` or ``(B, N + W - 1)``.
    """
    check_floating(audio, "audio")
    check_floating(impulse_response, "impulse_response")
    check_ndim(audio, "audio", 2, "(B, N)")
    check_ndim(impulse_response, "impulse_response", (2, 3), "(B, W) or (B, F, W)")
    if padding not in ("same", "valid"):
        raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
    ir = impulse_response if impulse_response.dim() == 3 else impulse_response.unsqueeze(1)
    batch, n_audio = audio.shape
    if ir.shape[0] not in (1, batch):
        raise ValueError(
            f"impulse_response batch size must be 1 or match audio's ({batch}), got {ir.shape[0]}"
        )
    n_frames, ir_size = ir.shape[1], ir.shape[2]
    if n_frames > n_audio:
        raise ValueError(
            f"impulse_response has more frames ({n_frames}) than audio has samples ({n_audio})"
        )
    frame_size = -(-n_audio // n_frames)
    if (n_frames - 1) * frame_size >= n_audio:
        raise ValueError(
            f"{n_audio} audio samples cannot be split into {n_frames} blocks of {frame_size}; "
            "choose n_samples divisible by the number of frames"
        )
    padded = nnf.pad(audio, (0, n_frames * frame_size - n_audio))
    blocks = padded.reshape(batch, n_frames, frame_size)
    out_size = frame_size + ir_size - 1
    fft_size = 1 << (out_size - 1).bit_length()
    spec = torch.fft.rfft(blocks, n=fft_size) * torch.fft.rfft(ir, n=fft_size)
    pieces = torch.fft.irfft(spec, n=fft_size)[..., :out_size]  # (B, F, out_size)
    total = (n_frames - 1) * frame_size + out_size
    out = nnf.fold(
        pieces.transpose(1, 2),
        output_size=(1, total),
        kernel_size=(1, out_size),
        stride=(1, frame_size),
    ).reshape(batch, total)
    full = out[:, : n_audio + ir_size - 1]
    if padding == "valid":
        return full
    start = (ir_size - 1) // 2 if delay_compensation is None else delay_compensation
    if not 0 <= start < ir_size:
        raise ValueError(f"delay_compensation must lie in [0, {ir_size}), got {start}")
    return full[:, start : start + n_audio]


def filtered_noise(
    magnitudes: torch.Tensor,
    n_samples: int,
    window_size: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DDSP filtered-noise synthesizer: uniform white noise in ``[-1, 1]`` through time-varying
    linear-phase FIR filters designed from ``magnitudes`` (:func:`frequency_impulse_response`,
    :func:`fft_convolve` with zero-phase alignment).

    Shapes: ``magnitudes`` ``(B, F, M)`` (or ``(B, M)`` for one frame) -> ``(B, n_samples)``.
    """
    check_floating(magnitudes, "magnitudes")
    check_ndim(magnitudes, "magnitudes", (2, 3), "(B, F, M) or (B, M)")
    check_int(n_samples, "n_samples")
    noise = torch.rand(
        magnitudes.shape[0],
        n_samples,
        generator=generator,
        device=magnitudes.device,
        dtype=magnitudes.dtype,
    )
    ir = frequency_impulse_response(magnitudes, window_size)
    return fft_convolve(noise * 2.0 - 1.0, ir, padding="same")


class FilteredNoise(nn.Module):
    """Filtered-noise synthesizer on raw network outputs (DDSP's ``synths.FilteredNoise``).

    ``magnitudes = scale_fn(raw + initial_bias)``; the negative bias starts the noise quiet.

    Shapes: ``(B, F, M)`` -> ``(B, n_samples)``.
    """

    def __init__(
        self,
        n_samples: int,
        window_size: int | None = None,
        scale_fn: Callable[[torch.Tensor], torch.Tensor] | None = exp_sigmoid,
        initial_bias: float = -5.0,
    ) -> None:
        super().__init__()
        self.n_samples = check_int(n_samples, "n_samples")
        self.window_size = window_size
        self.scale_fn = scale_fn
        self.initial_bias = float(initial_bias)

    def forward(
        self, magnitudes: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if self.scale_fn is not None:
            magnitudes = self.scale_fn(magnitudes + self.initial_bias)
        return filtered_noise(magnitudes, self.n_samples, self.window_size, generator)

    def extra_repr(self) -> str:
        return f"n_samples={self.n_samples}, window_size={self.window_size}"
