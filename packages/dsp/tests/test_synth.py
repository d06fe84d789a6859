"""torchloom.dsp.synth: oscillators, FIR design, FFT convolution, filtered noise, reverb."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss
import torch
from hypothesis import given, strategies as st

from torchloom.core.testing import assert_gradcheck
from torchloom.dsp.core import resample
from torchloom.dsp.noise import (
    FilteredNoise,
    fft_convolve,
    filtered_noise,
    frequency_impulse_response,
)
from torchloom.dsp.reverb import (
    ExpDecayReverb,
    Reverb,
)
from torchloom.dsp.synth import (
    Harmonic,
    Wavetable,
    harmonic_frequencies,
    harmonic_synth,
    normalize_harmonics,
    oscillator_bank,
    wavetable_synth,
)

SR = 16000


def _const(value: float, frames: int, device: torch.device, dtype=torch.float64) -> torch.Tensor:
    return torch.full((1, frames), value, device=device, dtype=dtype)


def _spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mag = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / SR), mag


def test_pure_tone_is_closed_form_sine(device: torch.device) -> None:
    n, f0 = 4000, 440.0
    dist = torch.ones(1, 10, 1, device=device, dtype=torch.float64)
    y = harmonic_synth(_const(f0, 10, device), _const(0.5, 10, device), dist, SR, n)
    k = np.arange(1, n + 1)  # the phase accumulates the first sample's increment too
    np.testing.assert_allclose(y[0].cpu().numpy(), 0.5 * np.sin(2 * np.pi * f0 * k / SR), atol=1e-9)
    freqs, mag = _spectrum(y[0].cpu().numpy())
    assert abs(freqs[mag.argmax()] - f0) <= SR / n


def test_harmonic_peaks_follow_distribution(device: torch.device) -> None:
    n, f0 = 8000, 250.0
    weights = torch.tensor([1.0, 0.5, 0.25, 0.125], dtype=torch.float64)
    dist = weights.expand(1, 20, 4).to(device)
    y = harmonic_synth(_const(f0, 20, device), _const(1.0, 20, device), dist, SR, n)[0]
    freqs, mag = _spectrum(y.cpu().numpy())
    peaks = ss.find_peaks(mag, height=mag.max() * 0.01)[0]
    np.testing.assert_allclose(freqs[peaks], f0 * np.arange(1, 5), atol=SR / n)
    # The normalised distribution sets the relative peak heights.
    np.testing.assert_allclose(
        mag[peaks] / mag[peaks][0], (weights / weights[0]).numpy(), rtol=1e-3
    )


def test_harmonics_above_nyquist_contribute_nothing(device: torch.device) -> None:
    n, f0 = 4000, 3000.0  # harmonics 3 (9 kHz) and up are above 8 kHz
    dist = torch.rand(1, 8, 6, device=device, dtype=torch.float64) + 0.1
    amp = _const(1.0, 8, device)
    y = harmonic_synth(_const(f0, 8, device), amp, dist, SR, n)
    y_kept = harmonic_synth(_const(f0, 8, device), amp, dist[..., :2], SR, n)
    torch.testing.assert_close(y, y_kept)
    freqs, mag = _spectrum(y[0].cpu().numpy())
    assert mag[freqs > 6500].max() < 1e-6 * mag.max()
    # Normalisation after masking: the surviving weights sum to one.
    norm = normalize_harmonics(dist, _const(f0, 8, device), SR)
    torch.testing.assert_close(norm.sum(-1), torch.ones_like(norm.sum(-1)))
    assert float(norm[..., 2:].abs().max()) == 0.0


def test_chirp_matches_scipy_chirp() -> None:
    n, frames = 16000, 100
    f0 = torch.linspace(200.0, 600.0, frames + 1, dtype=torch.float64)[None, :-1]
    y = harmonic_synth(
        f0, torch.ones_like(f0), torch.ones(1, frames, 1, dtype=torch.float64), SR, n
    )
    t = np.arange(n) / SR
    ref = ss.chirp(t, 200.0, 1.0, 600.0, method="linear", phi=-90)
    # The discrete phase sum runs one sample ahead of the integral: correlation, not equality.
    corr = np.corrcoef(y[0].numpy(), ref)[0, 1]
    assert corr > 0.99


def test_float32_phase_accumulation_stays_accurate() -> None:
    n, f0 = 64000, 3951.07
    # f0 rounded to float32 first, so only the synthesis precision differs.
    f0_32 = float(torch.tensor(f0, dtype=torch.float32))
    args = (_const(f0_32, 250, torch.device("cpu")), _const(1.0, 250, torch.device("cpu")))
    dist = torch.ones(1, 250, 2, dtype=torch.float64)
    y64 = harmonic_synth(*args, dist, SR, n)
    y32 = harmonic_synth(args[0].float(), args[1].float(), dist.float(), SR, n)
    assert float((y64 - y32.double()).abs().max()) < 1e-5


@pytest.mark.parametrize("method", ["linear", "window"])
@pytest.mark.parametrize("n_samples", [640, 650])  # integer hop (fast path) and not
def test_harmonic_synth_equals_oscillator_bank(method: str, n_samples: int) -> None:
    # The synth equals the textbook form: per-sample envelopes into a bank of K oscillators.
    frames, k = 10, 12
    f0 = (300 + 900 * torch.rand(2, 1, dtype=torch.float64)) * (1 + 0.3 * torch.rand(2, frames))
    amp = torch.rand(2, frames, dtype=torch.float64)
    dist = torch.rand(2, frames, k, dtype=torch.float64)
    if method == "window" and n_samples % frames:
        return
    ours = harmonic_synth(f0, amp, dist, SR, n_samples, amp_resample=method)
    envelopes = resample(amp[..., None] * normalize_harmonics(dist, f0, SR), n_samples, method)
    freqs = harmonic_frequencies(resample(f0, n_samples), k)
    torch.testing.assert_close(ours, oscillator_bank(freqs, envelopes, SR), atol=1e-9, rtol=0)


def test_harmonic_synth_gradcheck() -> None:
    f0 = torch.tensor([[300.0, 320.0, 310.0]], dtype=torch.float64, requires_grad=True)
    amp = torch.rand(1, 3, dtype=torch.float64, requires_grad=True)
    dist = torch.rand(1, 3, 4, dtype=torch.float64, requires_grad=True)
    assert_gradcheck(lambda a, b, c: harmonic_synth(a, b, c, SR, 48), [f0, amp, dist])
    assert_gradcheck(lambda a, b, c: harmonic_synth(a, b, c, SR, 50, "linear"), [f0, amp, dist])


def test_harmonic_module_state_and_device(device: torch.device) -> None:
    synth = Harmonic(SR, 640).to(device)
    f0 = torch.full((2, 10), 220.0, device=device)
    y = synth(f0, torch.zeros(2, 10, device=device), torch.zeros(2, 10, 5, device=device))
    assert y.shape == (2, 640) and y.device.type == device.type and y.dtype == torch.float32
    assert Harmonic(SR, 640).load_state_dict(synth.state_dict()) is not None


def test_harmonic_synth_bad_input() -> None:
    dist = torch.ones(1, 4, 3)
    with pytest.raises(ValueError, match="f0 must lie in"):
        harmonic_synth(torch.zeros(1, 4), torch.ones(1, 4), dist, SR, 64)
    with pytest.raises(ValueError, match="f0 must lie in"):
        harmonic_synth(torch.full((1, 4), 9000.0), torch.ones(1, 4), dist, SR, 64)
    with pytest.raises(ValueError, match="frame count"):
        harmonic_synth(torch.full((1, 5), 100.0), torch.ones(1, 5), dist, SR, 64)
    with pytest.raises(ValueError, match="harmonic_distribution must have 3"):
        harmonic_synth(torch.full((1, 4), 100.0), torch.ones(1, 4), torch.ones(1, 4), SR, 64)


@pytest.mark.parametrize("taps", [15, 31, 63])
def test_fir_design_equals_scipy_firwin2(taps: int) -> None:
    mags = torch.rand(3, 65, dtype=torch.float64)
    ir = frequency_impulse_response(mags, taps)
    for b in range(3):
        ref = ss.firwin2(taps, np.linspace(0, 1, 65), mags[b].numpy(), nfreqs=65, window="hann")
        np.testing.assert_allclose(ir[b].numpy(), ref, atol=1e-12)


def test_fir_is_linear_phase_and_close_to_target() -> None:
    # A smooth target is matched closely by the windowed design at its own frequency grid.
    f = np.linspace(0, 1, 129)
    target = torch.tensor(0.2 + np.exp(-(((f - 0.3) / 0.1) ** 2)), dtype=torch.float64)
    ir = frequency_impulse_response(target[None])[0].numpy()
    np.testing.assert_allclose(ir, ir[::-1], atol=1e-14)  # symmetric: linear phase
    _, h = ss.freqz(ir, worN=129, include_nyquist=True)
    np.testing.assert_allclose(np.abs(h), target.numpy(), atol=0.02)


@given(st.integers(10, 300), st.integers(1, 40))
def test_fft_convolve_equals_scipy(n: int, w: int) -> None:
    rng = np.random.default_rng(n * 100 + w)
    a, h = rng.standard_normal((2, n)), rng.standard_normal((2, w))
    ta, th = torch.from_numpy(a), torch.from_numpy(h)
    full = fft_convolve(ta, th, padding="valid").numpy()
    same = fft_convolve(ta, th, padding="same").numpy()
    causal = fft_convolve(ta, th, padding="same", delay_compensation=0).numpy()
    for b in range(2):
        np.testing.assert_allclose(full[b], ss.fftconvolve(a[b], h[b]), atol=1e-10)
        np.testing.assert_allclose(same[b], ss.fftconvolve(a[b], h[b], mode="same"), atol=1e-10)
        np.testing.assert_allclose(causal[b], ss.lfilter(h[b], [1.0], a[b]), atol=1e-10)


def test_time_varying_fft_convolve_is_blockwise_lfilter(device: torch.device) -> None:
    n, frames, w = 1000, 5, 31
    a = torch.randn(2, n, dtype=torch.float64, device=device)
    irs = torch.randn(2, frames, w, dtype=torch.float64, device=device)
    out = fft_convolve(a, irs, padding="same", delay_compensation=0).cpu().numpy()
    an, irn = a.cpu().numpy(), irs.cpu().numpy()
    hop = n // frames
    for b in range(2):
        ref = np.zeros(n)
        for i in range(frames):
            block = np.zeros(n)
            block[i * hop : (i + 1) * hop] = an[b, i * hop : (i + 1) * hop]
            ref += ss.lfilter(irn[b, i], [1.0], block)
        np.testing.assert_allclose(out[b], ref, atol=1e-10)


def test_fft_convolve_bad_input() -> None:
    with pytest.raises(ValueError, match="batch size"):
        fft_convolve(torch.randn(2, 100), torch.randn(3, 5))
    with pytest.raises(ValueError, match="blocks"):
        fft_convolve(torch.randn(1, 9), torch.randn(1, 4, 3))
    with pytest.raises(ValueError, match="padding"):
        fft_convolve(torch.randn(1, 9), torch.randn(1, 3), padding="full")


def test_filtered_noise_follows_designed_response() -> None:
    # Average magnitude response of the filtered noise (Welch) == |H|^2 of the FIR x noise power.
    m = 65
    f = np.linspace(0, 1, m)
    target = 0.05 + np.exp(-(((f - 0.25) / 0.08) ** 2)) + 0.5 * np.exp(-(((f - 0.7) / 0.05) ** 2))
    mags = torch.tensor(target, dtype=torch.float64)[None]
    gen = torch.Generator().manual_seed(0)
    y = filtered_noise(mags, 2**17, generator=gen)[0].numpy()
    freqs, psd = ss.welch(y, fs=1.0, nperseg=256)
    _, h = ss.freqz(frequency_impulse_response(mags)[0].numpy(), worN=freqs * 2 * np.pi)
    expected = 2.0 * (1.0 / 3.0) * np.abs(h) ** 2  # one-sided PSD of uniform[-1, 1] noise
    inner = slice(2, -2)
    db_err = 10 * np.log10(psd[inner] / expected[inner])
    assert np.median(np.abs(db_err)) < 0.5
    # ... and the designed response follows the requested magnitudes.
    requested = np.interp(freqs * 2, f, target)
    assert np.median(np.abs(20 * np.log10(np.abs(h[inner]) / requested[inner]))) < 0.5


def test_filtered_noise_time_varying_and_seeded(device: torch.device) -> None:
    mags = torch.zeros(1, 4, 33, device=device)
    mags[:, 2] = 1.0  # only the third block passes noise
    gen = torch.Generator(device=device.type).manual_seed(3)
    y = filtered_noise(mags, 800, generator=gen)
    energy = y.reshape(4, 200).pow(2).mean(-1).cpu()
    assert energy[2] > 0.1 and energy[0] == 0.0
    gen.manual_seed(3)
    torch.testing.assert_close(filtered_noise(mags, 800, generator=gen), y)
    module = FilteredNoise(800).to(device)
    assert module(torch.zeros(2, 4, 33, device=device)).shape == (2, 800)


def test_filtered_noise_gradcheck() -> None:
    mags = torch.rand(1, 2, 9, dtype=torch.float64, requires_grad=True)

    def fn(m: torch.Tensor) -> torch.Tensor:
        return filtered_noise(m, 40, generator=torch.Generator().manual_seed(0))

    assert_gradcheck(fn, [mags])


def test_fir_bad_input() -> None:
    with pytest.raises(ValueError, match="window_size must be odd"):
        frequency_impulse_response(torch.rand(1, 65), 64)
    with pytest.raises(ValueError, match="window_size must be odd"):
        frequency_impulse_response(torch.rand(1, 65), 129)
    with pytest.raises(ValueError, match="at least 3"):
        frequency_impulse_response(torch.rand(1, 2))


def test_reverb_is_dry_plus_causal_convolution(device: torch.device) -> None:
    reverb = Reverb(64).to(device=device, dtype=torch.float64)
    with torch.no_grad():
        reverb.ir.copy_(torch.randn(64, dtype=torch.float64))
    a = torch.randn(2, 500, dtype=torch.float64, device=device)
    out = reverb(a).detach().cpu().numpy()
    h = reverb.ir.detach().cpu().numpy().copy()
    h[0] = 0.0
    for b in range(2):
        ref = a[b].cpu().numpy() + ss.lfilter(h, [1.0], a[b].cpu().numpy())
        np.testing.assert_allclose(out[b], ref, atol=1e-10)
    reverb2 = Reverb(64).to(device=device, dtype=torch.float64)
    reverb2.load_state_dict(reverb.state_dict())
    torch.testing.assert_close(reverb2(a), reverb(a))


def test_exp_decay_reverb_response_and_gradients() -> None:
    reverb = ExpDecayReverb(1000, initial_gain=0.0, initial_decay=1.0)
    h = reverb.impulse_response().detach()
    envelope = h.abs() / reverb.noise.abs().clamp(min=1e-12)
    t = torch.linspace(0, 1, 1000)
    decay = torch.exp(-(2 + np.e) * t)
    expected = (2 * 0.5 ** np.log(10) + 1e-7) * decay
    torch.testing.assert_close(
        envelope, expected + 1e-7 * torch.exp(-(2 + np.e) * t), rtol=1e-4, atol=1e-6
    )
    out = reverb(torch.randn(1, 2000))
    out.pow(2).sum().backward()
    assert reverb.gain.grad is not None and reverb.decay.grad is not None
    assert float(reverb.decay.grad.abs()) > 0
    clone = ExpDecayReverb(1000)
    clone.load_state_dict(reverb.state_dict())
    torch.testing.assert_close(clone.impulse_response(), reverb.impulse_response())


def _table(weights: list[float], size: int = 2048) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float64) / size
    return sum(w * torch.sin(2 * np.pi * (k + 1) * t) for k, w in enumerate(weights))


@pytest.mark.parametrize("method", ["linear", "window"])
def test_wavetable_equals_additive_synth(method: str) -> None:
    # A table holding sum_k c_k sin(2 pi k t) is the harmonic synth with weights c_k (up to the
    # table's linear-interpolation error), and time-varying tables crossfade like envelopes.
    frames, n = 10, 640
    f0 = torch.full((2, frames), 330.0, dtype=torch.float64)
    amp = torch.full((2, frames), 0.8, dtype=torch.float64)
    w_a, w_b = [1.0, 0.0, 0.5], [0.2, 0.7, 0.0]
    tables = torch.stack([_table(w_a) if j < 5 else _table(w_b) for j in range(frames)])
    y = wavetable_synth(f0, amp, tables.expand(2, -1, -1), SR, n, amp_resample=method)
    dist = torch.tensor([w_a if j < 5 else w_b for j in range(frames)], dtype=torch.float64)
    ref = harmonic_synth(f0, amp, dist.expand(2, -1, -1), SR, n, method, normalize=False)
    torch.testing.assert_close(y, ref, atol=2e-5, rtol=0)
    single = wavetable_synth(f0, amp, _table(w_a).expand(2, -1), SR, n, method)
    ref1 = harmonic_synth(f0, amp, torch.tensor(w_a).double().expand(2, frames, 3), SR, n,
                          method, normalize=False)  # fmt: skip
    torch.testing.assert_close(single, ref1, atol=2e-5, rtol=0)


def test_wavetable_gradcheck_and_module(device: torch.device) -> None:
    f0 = torch.tensor([[300.0, 310.0, 305.0]], dtype=torch.float64, requires_grad=True)
    amp = torch.rand(1, 3, dtype=torch.float64, requires_grad=True)
    table = torch.randn(1, 3, 16, dtype=torch.float64, requires_grad=True)
    assert_gradcheck(lambda a, b, c: wavetable_synth(a, b, c, SR, 48), [f0, amp, table])
    synth = Wavetable(SR, 640, size=64).to(device)
    y = synth(torch.full((2, 10), 200.0, device=device), torch.zeros(2, 10, device=device))
    assert y.shape == (2, 640) and y.device.type == device.type
    y.sum().backward()
    assert synth.table.grad is not None
    with pytest.raises(ValueError, match="f0 must lie in"):
        wavetable_synth(torch.zeros(1, 3), torch.ones(1, 3), torch.ones(1, 8), SR, 48)
    with pytest.raises(ValueError, match="frames"):
        wavetable_synth(torch.ones(1, 3), torch.ones(1, 3), torch.ones(1, 4, 8), SR, 48)
