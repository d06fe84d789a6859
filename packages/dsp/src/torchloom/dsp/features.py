"""Conditioning features for DDSP: A-weighted loudness, YIN f0 with confidence, MFCCs.

All features are frame-rate tensors aligned with the synthesizers' convention: frame ``i`` is
centred on sample ``i * hop`` and an ``N``-sample signal gives ``N // hop`` frames, so
``n_samples = n_frames * hop`` round-trips through :func:`torchloom.dsp.resample`.
No downloaded models: f0 comes from YIN (de Cheveigne & Kawahara, JASA 2002) instead of CREPE.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as nnf

from torchloom.core.checks import check_floating, check_ndim, check_positive
from torchloom.dsp.core import power_to_db

__all__ = ["a_weighting", "compute_loudness", "mel_filterbank", "mfcc", "yin"]


def _hop(sample_rate: float, frame_rate: float) -> int:
    hop = sample_rate / frame_rate
    if abs(hop - round(hop)) > 1e-9 or hop < 1:
        raise ValueError(
            f"sample_rate / frame_rate must be a whole number of samples, got "
            f"{sample_rate:g} / {frame_rate:g}"
        )
    return round(hop)


def _centered_frames(audio: torch.Tensor, frame_length: int, hop: int) -> torch.Tensor:
    """``(B, N)`` -> ``(B, N // hop, frame_length)``, frame ``i`` centred on sample ``i * hop``."""
    n_frames = audio.shape[-1] // hop
    if n_frames < 1:
        raise ValueError(f"audio ({audio.shape[-1]} samples) is shorter than one hop ({hop})")
    left = frame_length // 2
    right = max(0, (n_frames - 1) * hop + frame_length - left - audio.shape[-1])
    padded = nnf.pad(audio, (left, right))
    return padded.unfold(-1, frame_length, hop)[:, :n_frames]


def a_weighting(frequencies: torch.Tensor, min_db: float = -80.0) -> torch.Tensor:
    """IEC 61672 A-weighting in dB (0 dB at 1 kHz), floored at ``min_db``; ``(...)`` -> ``(...)``.

    ``R_A = 12194^2 f^4 / ((f^2 + 20.6^2) sqrt((f^2 + 107.7^2)(f^2 + 737.9^2)) (f^2 + 12194^2))``,
    ``A(f) = 20 log10 R_A(f) + 2.00``.
    """
    check_floating(frequencies, "frequencies")
    f_sq = frequencies.to(torch.float64) ** 2
    c = (12194.217**2, 20.598997**2, 107.65265**2, 737.86223**2)
    with torch.no_grad():
        log = torch.log10
        weight = 2.0 + 20.0 * (
            math.log10(c[0])
            + 2.0 * log(f_sq.clamp(min=1e-30))
            - log(f_sq + c[0])
            - log(f_sq + c[1])
            - 0.5 * log(f_sq + c[2])
            - 0.5 * log(f_sq + c[3])
        )
    return weight.clamp(min=min_db).to(frequencies.dtype)


def compute_loudness(
    audio: torch.Tensor,
    sample_rate: float = 16000,
    frame_rate: float = 250,
    n_fft: int = 512,
    range_db: float = 120.0,
    ref_db: float = 0.0,
) -> torch.Tensor:
    """Perceptual loudness: A-weighted mean power of a Hann STFT, in dB (DDSP §B.1).

    ``L = 10 log10(mean_f |X(f)|^2 10^{A(f)/10}) - ref_db``, floored at ``-range_db``.
    Differentiable. Shapes: ``(B, N)`` -> ``(B, N // hop)``, ``hop = sample_rate / frame_rate``.
    """
    check_floating(audio, "audio")
    check_ndim(audio, "audio", 2, "(B, N)")
    hop = _hop(check_positive(sample_rate, "sample_rate"), check_positive(frame_rate, "frame_rate"))
    frames = _centered_frames(audio, n_fft, hop)
    window = torch.hann_window(n_fft, device=audio.device, dtype=audio.dtype)
    power = torch.fft.rfft(frames * window, dim=-1).abs() ** 2
    freqs = torch.fft.rfftfreq(n_fft, 1.0 / sample_rate, device=audio.device, dtype=audio.dtype)
    weighting = torch.pow(10.0, a_weighting(freqs) / 10.0)
    return power_to_db((power * weighting).mean(-1), ref_db=ref_db, range_db=range_db)


def yin(
    audio: torch.Tensor,
    sample_rate: float = 16000,
    frame_rate: float = 250,
    f0_min: float = 50.0,
    f0_max: float = 2000.0,
    window: int = 1024,
    threshold: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """YIN fundamental-frequency estimator with confidence (de Cheveigne & Kawahara, 2002).

    Per frame: difference function ``d(tau) = sum_{j<W} (x_j - x_{j+tau})^2`` (through the FFT),
    cumulative-mean normalisation ``d'(tau) = d(tau) tau / sum_{k<=tau} d(k)``, the first dip of
    ``d'`` below ``threshold`` (else the global minimum) followed to its local minimum, parabolic
    interpolation; ``f0 = sr / tau``, ``confidence = 1 - d'(tau)`` clipped to ``[0, 1]``.
    Not differentiable (an analysis feature).

    Shapes: ``(B, N)`` -> ``f0`` ``(B, N // hop)`` in Hz and ``confidence`` ``(B, N // hop)``.
    """
    check_floating(audio, "audio")
    check_ndim(audio, "audio", 2, "(B, N)")
    sr = check_positive(sample_rate, "sample_rate")
    hop = _hop(sr, check_positive(frame_rate, "frame_rate"))
    check_positive(f0_min, "f0_min")
    check_positive(f0_max, "f0_max")
    if not f0_min < f0_max < sr / 2:
        raise ValueError(
            f"need 0 < f0_min < f0_max < sample_rate / 2, got f0_min={f0_min}, f0_max={f0_max}"
        )
    tau_min = max(2, int(sr / f0_max))
    tau_max = math.ceil(sr / f0_min)
    if tau_max >= window:
        raise ValueError(f"window ({window}) must exceed sample_rate / f0_min ({tau_max})")
    with torch.no_grad():
        x = _centered_frames(audio, window + tau_max + 1, hop).to(torch.float64)
        length = x.shape[-1]
        n_fft = 1 << (length + window - 1).bit_length()
        # r(tau) = sum_{j<W} x_j x_{j+tau}: cross-correlation of the first W samples with all.
        corr = torch.fft.irfft(
            torch.fft.rfft(x, n_fft) * torch.fft.rfft(x[..., :window], n_fft).conj(), n_fft
        )[..., : tau_max + 2]
        energy = nnf.pad(torch.cumsum(x**2, dim=-1), (1, 0))
        taus = torch.arange(tau_max + 2, device=x.device)
        e_tau = energy[..., taus + window] - energy[..., taus]
        diff = (energy[..., window : window + 1] + e_tau - 2.0 * corr).clamp(min=0.0)
        cum = torch.cumsum(diff[..., 1:], dim=-1)
        cmnd = torch.ones_like(diff)
        # Silent frames (d == 0 everywhere) get d' = 1, i.e. confidence 0, not a perfect match.
        cmnd[..., 1:] = torch.where(
            cum > 1e-20, diff[..., 1:] * taus[1:] / cum.clamp(min=1e-20), 1.0
        )

        search = cmnd[..., tau_min : tau_max + 1]
        below = search < threshold
        first = torch.argmax(below.int(), dim=-1)
        any_below = below.any(-1)
        first = torch.where(any_below, first, torch.argmin(search, dim=-1))
        # Walk from the first dip to its local minimum.
        rising = search[..., 1:] >= search[..., :-1]
        rising = nnf.pad(rising, (0, 1), value=True)
        idx = torch.arange(search.shape[-1], device=x.device)
        after = rising & (idx >= first.unsqueeze(-1))
        best = torch.argmax(after.int(), dim=-1) + tau_min
        # Parabolic interpolation on d' around the chosen lag.
        lo = torch.gather(cmnd, -1, (best - 1).unsqueeze(-1)).squeeze(-1)
        mid = torch.gather(cmnd, -1, best.unsqueeze(-1)).squeeze(-1)
        hi = torch.gather(cmnd, -1, (best + 1).unsqueeze(-1)).squeeze(-1)
        denom = lo - 2.0 * mid + hi
        shift = torch.where(denom.abs() > 1e-12, 0.5 * (lo - hi) / denom, torch.zeros_like(denom))
        tau = best.to(torch.float64) + shift.clamp(-1.0, 1.0)
        f0 = (sr / tau).to(audio.dtype)
        confidence = (1.0 - mid).clamp(0.0, 1.0).to(audio.dtype)
    return f0, confidence


def mel_filterbank(
    n_fft: int,
    n_mels: int,
    sample_rate: float,
    f_min: float = 20.0,
    f_max: float | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Triangular filters equally spaced on the HTK mel scale ``2595 log10(1 + f / 700)``.

    Shapes: -> ``(n_fft // 2 + 1, n_mels)``; each filter peaks at 1 (no area normalisation).
    """
    f_max = sample_rate / 2.0 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2.0:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, got {f_min}, {f_max}")
    mel_lo, mel_hi = (2595.0 * math.log10(1.0 + f / 700.0) for f in (f_min, f_max))
    mels = torch.linspace(mel_lo, mel_hi, n_mels + 2, dtype=torch.float64)
    hz = 700.0 * (torch.pow(10.0, mels / 2595.0) - 1.0)
    freqs = torch.fft.rfftfreq(n_fft, 1.0 / sample_rate, dtype=torch.float64)[:, None]
    left, center, right = hz[:-2], hz[1:-1], hz[2:]
    up = (freqs - left) / (center - left)
    down = (right - freqs) / (right - center)
    return torch.clamp(torch.minimum(up, down), min=0.0).to(dtype=dtype, device=device)


def _dct_matrix(n_in: int, n_out: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Orthonormal DCT-II as a matrix ``(n_in, n_out)`` (scipy ``dct(type=2, norm="ortho")``)."""
    n = torch.arange(n_in, dtype=torch.float64)[:, None]
    k = torch.arange(n_out, dtype=torch.float64)[None, :]
    basis = torch.cos(math.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    basis[:, 0] /= math.sqrt(2.0)
    return basis.to(dtype=dtype, device=device)


def mfcc(
    audio: torch.Tensor,
    sample_rate: float = 16000,
    frame_rate: float = 250,
    n_fft: int = 1024,
    n_mels: int = 128,
    n_mfcc: int = 30,
    f_min: float = 20.0,
    f_max: float = 8000.0,
    eps: float = 1e-6,
) -> torch.Tensor:
    """MFCCs: DCT-II (ortho) of the log mel spectrogram (the DDSP z-encoder input, §B.2).

    The paper uses FFT size 1024, 128 mel bins over 20 Hz - 8 kHz and 30 coefficients.
    Shapes: ``(B, N)`` -> ``(B, N // hop, n_mfcc)``.
    """
    check_floating(audio, "audio")
    check_ndim(audio, "audio", 2, "(B, N)")
    if not 1 <= n_mfcc <= n_mels:
        raise ValueError(f"n_mfcc must lie in [1, n_mels={n_mels}], got {n_mfcc}")
    hop = _hop(check_positive(sample_rate, "sample_rate"), check_positive(frame_rate, "frame_rate"))
    frames = _centered_frames(audio, n_fft, hop)
    window = torch.hann_window(n_fft, device=audio.device, dtype=audio.dtype)
    mag = torch.fft.rfft(frames * window, dim=-1).abs()
    fb = mel_filterbank(
        n_fft, n_mels, sample_rate, f_min, min(f_max, sample_rate / 2), audio.dtype, audio.device
    )
    log_mel = torch.log(mag @ fb + eps)
    return log_mel @ _dct_matrix(n_mels, n_mfcc, audio.dtype, audio.device)
