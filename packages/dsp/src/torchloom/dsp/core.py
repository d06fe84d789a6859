"""DDSP building blocks: scaling nonlinearity, safe log, dB conversions, frame/audio resampling.

Conventions follow magenta/ddsp (Engel et al., "DDSP: Differentiable Digital Signal Processing",
ICLR 2020): time runs along dimension 1, ``(B, T)`` or ``(B, T, C)``; ``add_endpoint=True``
means frame ``i`` sits at sample ``i * n_samples / n_frames`` and the last frame is held to the
end of the signal.
"""

from __future__ import annotations

import math

import torch

from torchloom.core.checks import check_floating, check_ndim, check_positive

__all__ = [
    "amplitude_to_db",
    "db_to_amplitude",
    "db_to_power",
    "exp_sigmoid",
    "power_to_db",
    "resample",
    "safe_divide",
    "safe_log",
    "upsample_with_windows",
]


def exp_sigmoid(
    x: torch.Tensor, exponent: float = 10.0, max_value: float = 2.0, threshold: float = 1e-7
) -> torch.Tensor:
    """Exponentiated sigmoid ``max_value * sigmoid(x) ** ln(exponent) + threshold`` (DDSP, §B.5).

    Bounds network outputs to ``[threshold, max_value]``; away from 0 the output changes by a
    factor ``exponent`` per unit of ``x``, which suits amplitudes spread over decades.
    """
    check_floating(x, "x")
    check_positive(exponent, "exponent")
    check_positive(max_value, "max_value")
    check_positive(threshold, "threshold", strict=False)
    return max_value * torch.sigmoid(x) ** math.log(exponent) + threshold


def safe_log(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``log(max(x, eps))``: finite value and gradient at 0 (DDSP's spectral-loss log)."""
    check_floating(x, "x")
    check_positive(eps, "eps")
    return torch.log(torch.clamp(x, min=eps))


def safe_divide(num: torch.Tensor, den: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """``num / den`` with ``|den|`` kept away from 0 (sign preserved)."""
    safe = torch.where(den.abs() < eps, torch.full_like(den, eps), den)
    return num / safe


def power_to_db(power: torch.Tensor, ref_db: float = 0.0, range_db: float = 80.0) -> torch.Tensor:
    """``10 log10(power) - ref_db``, floored at ``-range_db`` (magenta's ``power_to_db``)."""
    check_floating(power, "power")
    check_positive(range_db, "range_db")
    amin = 10.0 ** (-range_db / 10.0)
    db = 10.0 * torch.log10(torch.clamp(power, min=amin)) - ref_db
    return torch.clamp(db, min=-range_db)


def amplitude_to_db(
    amplitude: torch.Tensor, ref_db: float = 0.0, range_db: float = 80.0
) -> torch.Tensor:
    """``20 log10(|amplitude|) - ref_db``, floored at ``-range_db``."""
    check_floating(amplitude, "amplitude")
    return power_to_db(amplitude**2, ref_db=ref_db, range_db=range_db)


def db_to_power(db: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`power_to_db` (without the floor): ``10 ** (db / 10)``."""
    check_floating(db, "db")
    return torch.pow(10.0, db / 10.0)


def db_to_amplitude(db: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`amplitude_to_db` (without the floor): ``10 ** (db / 20)``."""
    check_floating(db, "db")
    return torch.pow(10.0, db / 20.0)


def _as_3d(x: torch.Tensor, name: str) -> tuple[torch.Tensor, bool]:
    check_floating(x, name)
    check_ndim(x, name, (2, 3), "(B, T) or (B, T, C)")
    return (x.unsqueeze(-1), True) if x.dim() == 2 else (x, False)


def _linear_resample(x: torch.Tensor, n_out: int, add_endpoint: bool) -> torch.Tensor:
    n_in = x.shape[1]
    if add_endpoint or n_out == 1:
        # TF1 ``resize(align_corners=False)``: output i reads input i * n_in / n_out.
        pos = torch.arange(n_out, device=x.device, dtype=torch.float64) * (n_in / n_out)
    else:
        pos = torch.linspace(0.0, n_in - 1.0, n_out, device=x.device, dtype=torch.float64)
    lo = pos.floor().clamp(max=n_in - 1).long()
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = (pos - lo.to(pos.dtype)).to(x.dtype)[None, :, None]
    # lo + frac * (hi - lo) keeps constant envelopes exact (no rounding bias in f0 to accumulate).
    return x[:, lo] + frac * (x[:, hi] - x[:, lo])


def upsample_with_windows(
    x: torch.Tensor, n_samples: int, add_endpoint: bool = True
) -> torch.Tensor:
    """Upsample frames with overlapping Hann windows (50 % overlap-add, DDSP's ``window``).

    Each interval between two frames is a raised-cosine crossfade, which is smoother than linear
    interpolation for amplitude envelopes (avoids the kinks that show up as spectral smearing).

    Shapes: ``x`` ``(B, F)`` or ``(B, F, C)`` -> ``(B, n_samples)`` or ``(B, n_samples, C)``.
    ``n_samples`` must be a multiple of the number of intervals (``F`` with ``add_endpoint``,
    ``F - 1`` without).
    """
    x3, squeeze = _as_3d(x, "x")
    if add_endpoint:
        x3 = torch.cat([x3, x3[:, -1:]], dim=1)
    n_intervals = x3.shape[1] - 1
    if n_intervals < 1:
        raise ValueError(f"x needs at least 2 frames without add_endpoint, got {x.shape[1]}")
    if n_samples < n_intervals or n_samples % n_intervals != 0:
        raise ValueError(
            f"n_samples must be a multiple of the number of frame intervals ({n_intervals}) "
            f"(at least as large), got {n_samples}"
        )
    hop = n_samples // n_intervals
    # Periodic Hann of length 2*hop: rise + fall == 1 sample by sample (constant overlap-add).
    n = torch.arange(2 * hop, device=x.device, dtype=x3.dtype)
    window = 0.5 - 0.5 * torch.cos(2.0 * math.pi * n / (2 * hop))
    rise, fall = window[:hop, None], window[hop:, None]
    segments = x3[:, 1:, None, :] * rise + x3[:, :-1, None, :] * fall  # (B, F-1, hop, C)
    out = segments.reshape(x3.shape[0], n_samples, x3.shape[-1])
    return out.squeeze(-1) if squeeze else out


def resample(
    x: torch.Tensor, n_samples: int, method: str = "linear", add_endpoint: bool = True
) -> torch.Tensor:
    """Resample along time (dim 1) between frame rate and audio rate.

    ``method="linear"`` interpolates (up- or downsampling, TF1 ``resize`` convention);
    ``method="window"`` is :func:`upsample_with_windows` (upsampling only).

    Shapes: ``(B, T)`` or ``(B, T, C)`` -> ``(B, n_samples)`` or ``(B, n_samples, C)``.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    if method == "window":
        return upsample_with_windows(x, n_samples, add_endpoint)
    if method != "linear":
        raise ValueError(f"method must be 'linear' or 'window', got {method!r}")
    x3, squeeze = _as_3d(x, "x")
    out = _linear_resample(x3, n_samples, add_endpoint)
    return out.squeeze(-1) if squeeze else out
