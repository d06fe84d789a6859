"""DDSP additive synthesizers: harmonic oscillator bank and wavetables (noise: ``noise.py``,
reverb: ``reverb.py``).

Engel et al., "DDSP: Differentiable Digital Signal Processing", ICLR 2020, §3.
Time runs along dimension 1: frame-rate controls ``(B, F, ...)``, audio ``(B, N)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from torchloom.core.checks import check_floating, check_int, check_ndim, check_positive
from torchloom.dsp.core import exp_sigmoid, resample, safe_divide

__all__ = [
    "Harmonic",
    "Wavetable",
    "harmonic_frequencies",
    "harmonic_synth",
    "normalize_harmonics",
    "oscillator_bank",
    "remove_above_nyquist",
    "wavetable_synth",
]


def harmonic_frequencies(f0: torch.Tensor, n_harmonics: int) -> torch.Tensor:
    """Integer multiples ``k * f0`` for ``k = 1..n_harmonics``: ``(B, F)`` -> ``(B, F, K)``."""
    check_floating(f0, "f0")
    check_int(n_harmonics, "n_harmonics")
    k = torch.arange(1, n_harmonics + 1, device=f0.device, dtype=f0.dtype)
    return f0.unsqueeze(-1) * k


def remove_above_nyquist(
    frequencies: torch.Tensor, amplitudes: torch.Tensor, sample_rate: float
) -> torch.Tensor:
    """Zero the amplitude of every oscillator at or above Nyquist (``sample_rate / 2``).

    Aliased partials would fold back into the audible band; DDSP silences them instead.
    """
    if frequencies.shape != amplitudes.shape:
        raise ValueError(
            f"frequencies and amplitudes must have the same shape, got "
            f"{tuple(frequencies.shape)} and {tuple(amplitudes.shape)}"
        )
    nyquist = check_positive(sample_rate, "sample_rate") / 2.0
    # A mask product (not torch.where) keeps the backward pass to one multiply.
    return amplitudes * (frequencies < nyquist).to(amplitudes.dtype)


def normalize_harmonics(
    harmonic_distribution: torch.Tensor,
    f0: torch.Tensor | None = None,
    sample_rate: float | None = None,
) -> torch.Tensor:
    """Mask harmonics above Nyquist (when ``f0`` and ``sample_rate`` are given), then normalise
    the distribution to sum to 1 over the harmonics: ``(B, F, K)`` -> ``(B, F, K)``.

    Normalising *after* masking keeps the total amplitude equal to ``amplitude`` whatever the
    pitch, so loudness and timbre stay disentangled (DDSP §B.5).
    """
    check_floating(harmonic_distribution, "harmonic_distribution")
    if f0 is not None and sample_rate is not None:
        freqs = harmonic_frequencies(f0, harmonic_distribution.shape[-1])
        harmonic_distribution = remove_above_nyquist(freqs, harmonic_distribution, sample_rate)
    total = harmonic_distribution.sum(dim=-1, keepdim=True)
    return safe_divide(harmonic_distribution, total)


def _cumulative_phase(frequencies: torch.Tensor, sample_rate: float) -> torch.Tensor:
    # In float32 the phase increment and its running sum over tens of thousands of samples drift
    # by ~1e-2 rad; both are done in float64 and wrapped to [0, 2 pi) before returning to the
    # working precision.
    wide = frequencies.to(torch.float64) if frequencies.dtype != torch.float64 else frequencies
    phase = torch.cumsum(wide * (2.0 * math.pi / float(sample_rate)), dim=1)
    return torch.remainder(phase, 2.0 * math.pi).to(frequencies.dtype)


def oscillator_bank(
    frequency_envelopes: torch.Tensor,
    amplitude_envelopes: torch.Tensor,
    sample_rate: float,
    sum_sinusoids: bool = True,
) -> torch.Tensor:
    """Sum of sinusoids ``sum_k A_k(n) sin(phi_k(n))``, ``phi_k(n) = sum_{m<=n} 2 pi f_k(m) / sr``.

    Oscillators at or above Nyquist are silenced. Shapes: sample-rate envelopes ``(B, N, K)``
    -> ``(B, N)`` (or ``(B, N, K)`` with ``sum_sinusoids=False``).
    """
    check_floating(frequency_envelopes, "frequency_envelopes")
    check_floating(amplitude_envelopes, "amplitude_envelopes")
    check_ndim(frequency_envelopes, "frequency_envelopes", 3, "(B, N, K)")
    amplitude_envelopes = remove_above_nyquist(
        frequency_envelopes, amplitude_envelopes, sample_rate
    )
    phase = _cumulative_phase(frequency_envelopes, sample_rate)
    audio = amplitude_envelopes * torch.sin(phase)
    return audio.sum(dim=-1) if sum_sinusoids else audio


def harmonic_synth(
    f0: torch.Tensor,
    amplitude: torch.Tensor,
    harmonic_distribution: torch.Tensor,
    sample_rate: float,
    n_samples: int,
    amp_resample: str = "window",
    normalize: bool = True,
) -> torch.Tensor:
    """DDSP harmonic (additive) synthesizer, eq. (1)-(3) of the paper.

    ``x(n) = sum_k A(n) c_k(n) sin(phi_k(n))`` with ``phi_k(n) = 2 pi sum_{m<=n} k f0(m) / sr``.
    Frame-rate ``f0`` is linearly upsampled (so instantaneous frequency is continuous), the
    amplitudes with overlapping Hann windows (``amp_resample="window"``) or linearly. Harmonics at
    or above Nyquist are removed and, with ``normalize``, the distribution ``c_k`` is renormalised
    over the remaining ones to sum to 1.

    Args:
        f0: fundamental in Hz, ``(B, F)``; every value must lie in ``(0, sample_rate / 2)``.
        amplitude: overall amplitude ``A``, ``(B, F)``.
        harmonic_distribution: non-negative ``c_k``, ``(B, F, K)``.
        sample_rate: samples per second.
        n_samples: audio length ``N``.

    Returns:
        audio ``(B, N)``.
    """
    check_floating(f0, "f0")
    check_floating(amplitude, "amplitude")
    check_floating(harmonic_distribution, "harmonic_distribution")
    check_ndim(f0, "f0", 2, "(B, F)")
    check_ndim(amplitude, "amplitude", 2, "(B, F)")
    check_ndim(harmonic_distribution, "harmonic_distribution", 3, "(B, F, K)")
    sr = check_positive(sample_rate, "sample_rate")
    check_int(n_samples, "n_samples")
    if amplitude.shape != f0.shape or harmonic_distribution.shape[:2] != f0.shape:
        raise ValueError(
            "f0 (B, F), amplitude (B, F) and harmonic_distribution (B, F, K) must agree on B and "
            f"the frame count F, got {tuple(f0.shape)}, {tuple(amplitude.shape)} and "
            f"{tuple(harmonic_distribution.shape)}"
        )
    with torch.no_grad():
        lo, hi = float(f0.min()), float(f0.max())
    if not (lo > 0.0 and hi < sr / 2.0):
        raise ValueError(
            f"f0 must lie in (0, sample_rate / 2 = {sr / 2:g}) Hz, got values in [{lo:g}, {hi:g}]"
        )
    n_harmonics = harmonic_distribution.shape[-1]
    if normalize:
        harmonic_distribution = normalize_harmonics(harmonic_distribution, f0, sr)
    harmonic_amps = amplitude.unsqueeze(-1) * harmonic_distribution
    f0_env = resample(f0, n_samples, method="linear")
    # Harmonic k's phase is exactly k times the fundamental's: one running sum instead of K,
    # and sin(k * (phi mod 2 pi)) == sin(k * phi) for integer k.
    k = torch.arange(1, n_harmonics + 1, device=f0.device, dtype=f0.dtype)
    phase = _cumulative_phase(f0_env.unsqueeze(-1), sr) * k
    n_frames = f0.shape[1]
    if n_samples % n_frames != 0 or amp_resample not in ("linear", "window"):
        amp_env = resample(harmonic_amps, n_samples, method=amp_resample)
        amp_env = remove_above_nyquist(harmonic_frequencies(f0_env, n_harmonics), amp_env, sr)
        return (amp_env * torch.sin(phase)).sum(dim=-1)
    # Fast path (integer hop): inside frame j the envelope is fall(r) a_j + rise(r) a_{j+1}, so
    # sum_k A_k(n) sin(k phi(n)) = fall(r) <s(n), a_j> + rise(r) <s(n), a_{j+1}>: two dot
    # products per sample instead of materialising the (B, N, K) amplitude envelopes.
    hop = n_samples // n_frames
    osc = torch.sin(phase) * (k < (sr / 2.0) / f0_env.unsqueeze(-1)).to(phase.dtype)
    ends = torch.stack(
        [harmonic_amps, torch.cat([harmonic_amps[:, 1:], harmonic_amps[:, -1:]], 1)], -1
    )
    parts = osc.reshape(-1, n_frames, hop, n_harmonics) @ ends  # (B, F, hop, 2)
    fall, rise = _crossfade(hop, amp_resample, phase)
    audio = parts[..., 0] * fall + parts[..., 1] * rise
    return audio.reshape(-1, n_samples)


def _crossfade(hop: int, method: str, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(fall, rise) weights over one hop, matching :func:`resample`'s linear / window methods."""
    r = torch.arange(hop, device=like.device, dtype=like.dtype)
    rise = r / hop if method == "linear" else 0.5 - 0.5 * torch.cos(math.pi * r / hop)
    return 1.0 - rise, rise


def wavetable_synth(
    f0: torch.Tensor,
    amplitude: torch.Tensor,
    wavetables: torch.Tensor,
    sample_rate: float,
    n_samples: int,
    amp_resample: str = "window",
) -> torch.Tensor:
    """DDSP wavetable synthesizer: ``x(n) = A(n) w(phi(n))`` with ``phi`` the cumulative phase
    in cycles, ``phi(n) = sum_{m<=n} f0(m) / sr mod 1``, and ``w`` one period of a waveform read
    with linear interpolation (wrapping around).

    Time-varying tables ``(B, F, L)`` are crossfaded between frames with the same weights as the
    amplitude envelope (``n_samples`` must then be a multiple of ``F``); ``(B, L)`` is one table
    per signal. The table is not band-limited: keep its content below ``sr / (2 f0)`` harmonics.

    Shapes: ``f0`` ``(B, F)`` Hz, ``amplitude`` ``(B, F)`` -> audio ``(B, n_samples)``.
    """
    check_floating(f0, "f0")
    check_floating(amplitude, "amplitude")
    check_floating(wavetables, "wavetables")
    check_ndim(f0, "f0", 2, "(B, F)")
    check_ndim(wavetables, "wavetables", (2, 3), "(B, L) or (B, F, L)")
    sr = check_positive(sample_rate, "sample_rate")
    check_int(n_samples, "n_samples")
    if amplitude.shape != f0.shape or wavetables.shape[0] != f0.shape[0]:
        raise ValueError(
            f"f0 (B, F), amplitude (B, F) and wavetables (B, [F,] L) must agree, got "
            f"{tuple(f0.shape)}, {tuple(amplitude.shape)} and {tuple(wavetables.shape)}"
        )
    if amp_resample not in ("linear", "window"):
        raise ValueError(f"amp_resample must be 'linear' or 'window', got {amp_resample!r}")
    with torch.no_grad():
        lo, hi = float(f0.min()), float(f0.max())
    if not (lo > 0.0 and hi < sr / 2.0):
        raise ValueError(
            f"f0 must lie in (0, sample_rate / 2 = {sr / 2:g}) Hz, got values in [{lo:g}, {hi:g}]"
        )
    batch, n_frames = f0.shape
    f0_env = resample(f0, n_samples, method="linear")
    amp_env = resample(amplitude, n_samples, method=amp_resample)
    wide = f0_env.to(torch.float64) / sr
    cycles = torch.remainder(torch.cumsum(wide, dim=1), 1.0).to(f0.dtype)
    size = wavetables.shape[-1]
    pos = cycles * size
    base = pos.detach().floor()
    frac = pos - base
    i0 = base.long().remainder(size)
    i1 = (i0 + 1).remainder(size)
    if wavetables.dim() == 2:
        w0 = torch.gather(wavetables, 1, i0)
        w1 = torch.gather(wavetables, 1, i1)
        return amp_env * (w0 + frac * (w1 - w0))
    if wavetables.shape[1] != n_frames:
        raise ValueError(f"wavetables has {wavetables.shape[1]} frames but f0 has {n_frames}")
    if n_samples % n_frames != 0:
        raise ValueError(
            f"n_samples must be a multiple of the frame count ({n_frames}) for time-varying "
            f"wavetables, got {n_samples}"
        )
    hop = n_samples // n_frames
    frame = torch.arange(n_samples, device=f0.device) // hop
    flat = wavetables.reshape(batch, n_frames * size)

    def lookup(j: torch.Tensor) -> torch.Tensor:
        w0 = torch.gather(flat, 1, j * size + i0)
        w1 = torch.gather(flat, 1, j * size + i1)
        return w0 + frac * (w1 - w0)

    fall, rise = _crossfade(hop, amp_resample, frac)
    now = lookup(frame.expand(batch, -1))
    nxt = lookup((frame + 1).clamp(max=n_frames - 1).expand(batch, -1))
    value = now * fall.repeat(n_frames) + nxt * rise.repeat(n_frames)
    return amp_env * value


class Wavetable(nn.Module):
    """Wavetable synthesizer with one learned table of ``size`` samples (DDSP ``Wavetable``).

    ``amplitude`` goes through ``scale_fn``; the table is a free parameter, or pass
    ``wavetables`` ``(B, [F,] L)`` to ``forward`` to use predicted ones.

    Shapes: ``f0`` ``(B, F)``, ``amplitude`` ``(B, F)`` -> ``(B, n_samples)``.
    """

    def __init__(
        self,
        sample_rate: float,
        n_samples: int,
        size: int = 2048,
        scale_fn: Callable[[torch.Tensor], torch.Tensor] | None = exp_sigmoid,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.sample_rate = check_positive(sample_rate, "sample_rate")
        self.n_samples = check_int(n_samples, "n_samples")
        self.scale_fn = scale_fn
        check_int(size, "size", 2)
        self.table = nn.Parameter(0.1 * torch.randn(size, generator=generator))

    def forward(
        self,
        f0: torch.Tensor,
        amplitude: torch.Tensor,
        wavetables: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.scale_fn is not None:
            amplitude = self.scale_fn(amplitude)
        if wavetables is None:
            wavetables = self.table.to(amplitude.dtype).expand(f0.shape[0], -1)
        return wavetable_synth(f0, amplitude, wavetables, self.sample_rate, self.n_samples)


class Harmonic(nn.Module):
    """Harmonic synthesizer on raw network outputs (DDSP's ``synths.Harmonic``).

    ``amplitude`` and ``harmonic_distribution`` go through ``scale_fn`` (the exponentiated
    sigmoid by default) before :func:`harmonic_synth`.

    Shapes: ``f0`` ``(B, F)`` Hz, ``amplitude`` ``(B, F)``, ``harmonic_distribution``
    ``(B, F, K)`` -> audio ``(B, n_samples)``.
    """

    def __init__(
        self,
        sample_rate: float,
        n_samples: int,
        scale_fn: Callable[[torch.Tensor], torch.Tensor] | None = exp_sigmoid,
        amp_resample: str = "window",
    ) -> None:
        super().__init__()
        self.sample_rate = check_positive(sample_rate, "sample_rate")
        self.n_samples = check_int(n_samples, "n_samples")
        self.scale_fn = scale_fn
        self.amp_resample = amp_resample

    def forward(
        self, f0: torch.Tensor, amplitude: torch.Tensor, harmonic_distribution: torch.Tensor
    ) -> torch.Tensor:
        if self.scale_fn is not None:
            amplitude = self.scale_fn(amplitude)
            harmonic_distribution = self.scale_fn(harmonic_distribution)
        return harmonic_synth(
            f0,
            amplitude,
            harmonic_distribution,
            self.sample_rate,
            self.n_samples,
            amp_resample=self.amp_resample,
        )

    def extra_repr(self) -> str:
        return f"sample_rate={self.sample_rate:g}, n_samples={self.n_samples}"
