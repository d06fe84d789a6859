"""torchloom.dsp.losses: multi-scale spectral loss against a NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss
import torch
from hypothesis import given, strategies as st

from torchloom.core.testing import assert_gradcheck
from torchloom.dsp.losses import MultiScaleSpectralLoss, multiscale_spectral_loss, stft_magnitude


def _np_stft_mag(x: np.ndarray, size: int, overlap: float) -> np.ndarray:
    """Straightforward reference: frames from sample 0, zero-padded end, periodic Hann."""
    hop = int(size * (1 - overlap))
    n_frames = -(-len(x) // hop)
    x = np.pad(x, (0, (n_frames - 1) * hop + size - len(x)))
    window = ss.get_window("hann", size, fftbins=True)
    frames = np.stack([x[i * hop : i * hop + size] * window for i in range(n_frames)])
    return np.abs(np.fft.rfft(frames, axis=-1))


def _np_loss(a: np.ndarray, b: np.ndarray, sizes, overlap=0.75, eps=1e-5) -> float:
    total = 0.0
    for size in sizes:
        sa = np.stack([_np_stft_mag(x, size, overlap) for x in a])
        sb = np.stack([_np_stft_mag(x, size, overlap) for x in b])
        total += np.abs(sa - sb).mean()
        total += np.abs(np.log(np.maximum(sa, eps)) - np.log(np.maximum(sb, eps))).mean()
    return total


def test_stft_magnitude_matches_reference(device: torch.device) -> None:
    x = torch.randn(2, 1000, dtype=torch.float64, device=device)
    for size in (64, 256):
        ours = stft_magnitude(x, size).cpu().numpy()
        for b in range(2):
            np.testing.assert_allclose(
                ours[b], _np_stft_mag(x[b].cpu().numpy(), size, 0.75), atol=1e-10
            )


def test_loss_matches_reference() -> None:
    a, b = torch.randn(2, 2, 3000, dtype=torch.float64)
    sizes = (2048, 1024, 512, 256, 128, 64)
    ours = MultiScaleSpectralLoss()(a, b).item()
    assert ours == pytest.approx(_np_loss(a.numpy(), b.numpy(), sizes), rel=1e-10)


@given(st.integers(0, 10_000), st.floats(0.0, 2.0), st.floats(0.0, 2.0))
def test_loss_zero_iff_equal_and_symmetric(seed: int, wm: float, wl: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(1, 300, generator=gen, dtype=torch.float64)
    b = torch.randn(1, 300, generator=gen, dtype=torch.float64)
    fn = MultiScaleSpectralLoss(fft_sizes=(128, 64, 32), mag_weight=wm, logmag_weight=wl)
    assert fn(a, a).item() == 0.0
    assert fn(a, b).item() == pytest.approx(fn(b, a).item(), rel=1e-12)
    if wm + wl > 0.01:
        assert fn(a, b).item() > 0.0


def test_loss_is_blind_to_phase_but_not_to_magnitude() -> None:
    # A sinusoid and the same sinusoid shifted by a quarter period have (nearly) equal STFT
    # magnitudes, unlike a sample-wise loss; a changed amplitude is penalised.
    n = np.arange(4096)
    a = torch.tensor(np.sin(2 * np.pi * 500 * n / 16000))[None]
    b = torch.tensor(np.cos(2 * np.pi * 500 * n / 16000))[None]
    fn = MultiScaleSpectralLoss(fft_sizes=(1024, 512, 256), logmag_weight=0.0)
    assert fn(a, b).item() < 0.2 * fn(a, 0.5 * a).item()


def test_loss_gradcheck() -> None:
    a = torch.randn(1, 64, dtype=torch.float64)
    b = torch.randn(1, 64, dtype=torch.float64, requires_grad=True)
    assert_gradcheck(lambda t: multiscale_spectral_loss(a, t, fft_sizes=(32, 16)), [b])


def test_loss_device_dtype(device: torch.device) -> None:
    a = torch.randn(2, 4096, device=device)
    out = MultiScaleSpectralLoss()(a, a.flip(-1))
    assert out.shape == () and out.device.type == device.type and out.dtype == torch.float32


def test_loss_bad_input() -> None:
    fn = MultiScaleSpectralLoss()
    with pytest.raises(ValueError, match="larger than the signal"):
        fn(torch.randn(1, 1000), torch.randn(1, 1000))
    with pytest.raises(ValueError, match="same shape"):
        MultiScaleSpectralLoss(fft_sizes=(64,))(torch.randn(1, 100), torch.randn(1, 101))
    with pytest.raises(ValueError, match="integer hop"):
        MultiScaleSpectralLoss(fft_sizes=(64,), overlap=0.7)
    with pytest.raises(ValueError, match="at least one"):
        MultiScaleSpectralLoss(fft_sizes=())
    with pytest.raises(ValueError, match="target must have 2"):
        fn(torch.randn(4096), torch.randn(4096))
