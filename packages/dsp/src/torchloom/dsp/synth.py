"""DDSP synthesizers: additive harmonic oscillators, filtered noise, FFT convolution, reverb.

Engel et al., "DDSP: Differentiable Digital Signal Processing", ICLR 2020, §3.
Time runs along dimension 1: frame-rate controls ``(B, F, ...)``, audio ``(B, N)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as nnf
from torch import nn

from torchloom.core.checks import check_floating, check_ndim, check_positive
from torchloom.dsp.core import exp_sigmoid, resample, safe_divide

__all__ = [
    "ExpDecayReverb",
    "FilteredNoise",
    "Harmonic",
    "Reverb",
    "Wavetable",
    "fft_convolve",
    "filtered_noise",
    "frequency_impulse_response",
    "harmonic_frequencies",
    "harmonic_synth",
    "normalize_harmonics",
    "oscillator_bank",
    "remove_above_nyquist",
    "wavetable_synth",
]


def _check_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def harmonic_frequencies(f0: torch.Tensor, n_harmonics: int) -> torch.Tensor:
    """Integer multiples ``k * f0`` for ``k = 1..n_harmonics``: ``(B, F)`` -> ``(B, F, K)``."""
    check_floating(f0, "f0")
    _check_int(n_harmonics, "n_harmonics")
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
    _check_int(n_samples, "n_samples")
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
    _check_int(n_samples, "n_samples")
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
        self.n_samples = _check_int(n_samples, "n_samples")
        self.scale_fn = scale_fn
        _check_int(size, "size", 2)
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
        self.n_samples = _check_int(n_samples, "n_samples")
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
    _check_int(window_size, "window_size")
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
    _check_int(n_samples, "n_samples")
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
        self.n_samples = _check_int(n_samples, "n_samples")
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


def _apply_reverb(audio: torch.Tensor, ir: torch.Tensor, add_dry: bool) -> torch.Tensor:
    # Index 0 of the response is the direct path; it is masked so the dry signal is carried
    # only by ``add_dry`` and the learned response stays a pure room tail.
    ir = torch.cat([torch.zeros_like(ir[:, :1]), ir[:, 1:]], dim=1)
    wet = fft_convolve(audio, ir, padding="same", delay_compensation=0)
    return wet + audio if add_dry else wet


class Reverb(nn.Module):
    """Convolution reverb with a learned impulse response (DDSP §3.4, "Reverb").

    ``y = x + h * x`` with ``h`` a free parameter of ``ir_length`` taps (first tap masked).
    Passing ``ir`` to ``forward`` uses that response instead (e.g. predicted by a network).

    Shapes: audio ``(B, N)``, optional ``ir`` ``(B, L)`` -> ``(B, N)``.
    """

    def __init__(
        self,
        ir_length: int,
        add_dry: bool = True,
        init_std: float = 1e-6,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        _check_int(ir_length, "ir_length", 2)
        self.add_dry = add_dry
        self.ir = nn.Parameter(torch.randn(ir_length, generator=generator) * init_std)

    def forward(self, audio: torch.Tensor, ir: torch.Tensor | None = None) -> torch.Tensor:
        check_floating(audio, "audio")
        check_ndim(audio, "audio", 2, "(B, N)")
        if ir is None:
            ir = self.ir.unsqueeze(0)
        else:
            check_floating(ir, "ir")
            check_ndim(ir, "ir", 2, "(B, L)")
        return _apply_reverb(audio, ir.to(audio.dtype), self.add_dry)


class ExpDecayReverb(nn.Module):
    """Reverb whose impulse response is exponentially decaying noise with learned level and decay.

    ``h(t) = exp_sigmoid(gain) * exp(-(2 + exp(decay)) t) * u(t)``, ``t`` in ``[0, 1]`` over the
    response, ``u`` a fixed uniform noise buffer in ``[-1, 1]``; ``y = x + h * x`` (the gain sets
    the wet/dry balance). Two parameters instead of ``ir_length``: the blind-dereverberation
    setting of the paper's §5.3 with a strong prior.

    Shapes: ``(B, N)`` -> ``(B, N)``.
    """

    def __init__(
        self,
        ir_length: int,
        initial_gain: float = 0.0,
        initial_decay: float = 2.0,
        add_dry: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        _check_int(ir_length, "ir_length", 2)
        self.add_dry = add_dry
        self.gain = nn.Parameter(torch.tensor(float(initial_gain)))
        self.decay = nn.Parameter(torch.tensor(float(initial_decay)))
        self.register_buffer("noise", torch.rand(ir_length, generator=generator) * 2.0 - 1.0)

    def impulse_response(self) -> torch.Tensor:
        """The current response ``(L,)``."""
        noise = self.get_buffer("noise")
        t = torch.linspace(0.0, 1.0, noise.shape[0], device=noise.device, dtype=noise.dtype)
        return exp_sigmoid(self.gain) * torch.exp(-(2.0 + torch.exp(self.decay)) * t) * noise

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        check_floating(audio, "audio")
        check_ndim(audio, "audio", 2, "(B, N)")
        ir = self.impulse_response().to(audio.dtype).unsqueeze(0)
        return _apply_reverb(audio, ir, self.add_dry)
