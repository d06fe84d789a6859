"""torchloom.dsp.features: A-weighting, loudness, YIN, MFCC."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch
from hypothesis import given, strategies as st

from torchloom.dsp.features import (
    _dct_matrix,
    a_weighting,
    compute_loudness,
    mel_filterbank,
    mfcc,
    yin,
)
from torchloom.dsp.synth import harmonic_synth

SR = 16000


def _tone(f0: float, n: int = 6400, weights=(1.0, 0.6, 0.4, 0.3, 0.2)) -> torch.Tensor:
    frames = n // 64
    f = torch.full((1, frames), f0, dtype=torch.float64)
    dist = torch.tensor(weights, dtype=torch.float64).expand(1, frames, len(weights))
    return harmonic_synth(f, torch.ones_like(f), dist, SR, n)


def test_a_weighting_matches_iec_61672_table() -> None:
    # IEC 61672-1 A-weightings (dB, to 0.1 dB) at the exact base-ten band frequencies
    # 1000 * 10^(n/10) Hz, nominally 31.5 Hz ... 16 kHz.
    table = {31.5: -39.4, 63: -26.2, 125: -16.1, 250: -8.6, 500: -3.2, 1000: 0.0, 2000: 1.2,
             4000: 1.0, 8000: -1.1, 16000: -6.6}  # fmt: skip
    exact = [1000 * 10 ** (n / 10) for n in (-15, -12, -9, -6, -3, 0, 3, 6, 9, 12)]
    freqs = torch.tensor(exact, dtype=torch.float64)
    np.testing.assert_allclose(a_weighting(freqs).numpy(), list(table.values()), atol=0.1)


@given(st.floats(0.01, 0.9), st.floats(1.5, 20.0))
def test_loudness_moves_by_20log10_of_gain(amp: float, gain: float) -> None:
    x = amp * _tone(330.0, 3200)
    lo, hi = compute_loudness(x, SR), compute_loudness(x * gain, SR)
    torch.testing.assert_close(hi - lo, torch.full_like(lo, 20 * np.log10(gain)))


def test_loudness_monotonic_in_gain_and_a_weighted(device: torch.device) -> None:
    x = _tone(440.0).to(device)
    levels = [compute_loudness(g * x, SR).mean().item() for g in (0.01, 0.1, 0.5, 1.0)]
    assert levels == sorted(levels)
    # Equal-amplitude tones: 60 Hz is attenuated by A-weighting, 1 kHz is not.
    low = compute_loudness(_tone(60.0, weights=(1.0,))).mean()
    mid = compute_loudness(_tone(1000.0, weights=(1.0,))).mean()
    assert 20.0 < (mid - low).item() < 30.0
    assert compute_loudness(torch.zeros(1, 640), SR).eq(-120.0).all()


def test_loudness_shape_and_grad() -> None:
    x = torch.randn(2, 1600, requires_grad=True)
    ld = compute_loudness(x, SR, frame_rate=250)
    assert ld.shape == (2, 25)
    ld.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("f0", [65.4, 110.0, 261.6, 440.0, 987.8, 1760.0])
def test_yin_finds_f0_within_one_percent(f0: float, device: torch.device) -> None:
    est, conf = yin(_tone(f0).to(device), SR)
    inner = slice(4, -4)  # frames whose window lies fully inside the note
    assert float((est[0, inner] / f0 - 1).abs().max()) < 0.01
    assert float(conf[0, inner].min()) > 0.6


def test_yin_tracks_a_glide_and_flags_noise() -> None:
    frames = 200
    f = torch.linspace(200.0, 400.0, frames, dtype=torch.float64)[None]
    x = harmonic_synth(
        f, torch.ones_like(f), torch.ones(1, frames, 3, dtype=torch.float64), SR, 64 * frames
    )
    est, _ = yin(x, SR)
    assert float((est[0, 8:-8] / f[0, 8:-8] - 1).abs().max()) < 0.01
    _, conf_noise = yin(torch.randn(1, 16000, dtype=torch.float64), SR)
    assert float(conf_noise.mean()) < 0.3
    _, conf_silence = yin(torch.zeros(1, 3200), SR)
    assert float(conf_silence.max()) == 0.0


def test_yin_bad_input() -> None:
    with pytest.raises(ValueError, match="f0_min < f0_max"):
        yin(torch.randn(1, 1600), SR, f0_min=500.0, f0_max=100.0)
    with pytest.raises(ValueError, match="whole number"):
        yin(torch.randn(1, 1600), SR, frame_rate=300)
    with pytest.raises(ValueError, match="window"):
        yin(torch.randn(1, 1600), SR, f0_min=10.0)


def test_dct_matrix_matches_scipy() -> None:
    x = np.random.default_rng(0).standard_normal((3, 40))
    ours = torch.from_numpy(x) @ _dct_matrix(40, 13, torch.float64, torch.device("cpu"))
    np.testing.assert_allclose(ours.numpy(), scipy.fft.dct(x, type=2, norm="ortho")[:, :13])


def test_mel_filterbank_and_mfcc() -> None:
    fb = mel_filterbank(1024, 40, SR, 20.0, 8000.0, dtype=torch.float64)
    assert fb.shape == (513, 40)
    peaks = fb.argmax(0)
    assert bool((peaks[1:] >= peaks[:-1]).all())  # centres increase with the filter index
    assert float(fb.max()) <= 1.0 + 1e-12
    coeffs = mfcc(_tone(220.0).float(), SR)
    assert coeffs.shape == (1, 100, 30) and torch.isfinite(coeffs).all()
    # A gain only moves the 0th (DC) coefficient: log(g S) = log g + log S.
    x = _tone(220.0)
    diff = mfcc(3.0 * x, SR, eps=1e-12) - mfcc(x, SR, eps=1e-12)
    assert float(diff[..., 1:].abs().max()) < 1e-3
    expected = torch.full_like(diff[..., 0], np.log(3.0) * 128**0.5)  # ortho DCT of a constant
    torch.testing.assert_close(diff[..., 0], expected, rtol=1e-4, atol=1e-3)
