"""torchloom.dsp.autoencoder: shapes, conditioning, gradients, state_dict, bad input."""

from __future__ import annotations

import pytest
import torch

from torchloom.dsp.autoencoder import Autoencoder, Decoder, ZEncoder, hz_to_midi, mlp
from torchloom.dsp.synth import harmonic_synth

SR = 16000


def _notes(batch: int, n: int, f0: float = 220.0) -> torch.Tensor:
    frames = n // 64
    f = torch.full((batch, frames), f0)
    dist = (1.0 / torch.arange(1, 9)).expand(batch, frames, 8)
    return harmonic_synth(f, torch.full((batch, frames), 0.3), dist, SR, n)


def test_hz_to_midi() -> None:
    f = torch.tensor([440.0, 880.0, 261.6256, 0.0], dtype=torch.float64)
    torch.testing.assert_close(hz_to_midi(f), torch.tensor([69.0, 81.0, 60.0, 0.0]).double())


def test_mlp_layers() -> None:
    net = mlp(3, 16, 2)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "LayerNorm", "ReLU"] * 2
    assert net(torch.randn(4, 7, 3)).shape == (4, 7, 16)


def test_autoencoder_shapes_and_conditioning(device: torch.device) -> None:
    n = 2048
    model = Autoencoder(n, n_harmonics=12, n_noise_bands=17, hidden=16, n_layers=1, z_dim=4,
                        reverb_length=64).to(device)  # fmt: skip
    audio = _notes(2, n).to(device)
    out = model(audio, generator=torch.Generator(device=device.type).manual_seed(0))
    assert out["audio"].shape == (2, n) and out["z"].shape == (2, n // 64, 4)
    assert out["f0"].shape == out["loudness"].shape == (2, n // 64)
    # YIN conditioning found the 220 Hz fundamental.
    assert float((out["f0"][:, 4:-4] / 220.0 - 1).abs().max()) < 0.01
    # Given f0 is used as is.
    f0 = torch.full((2, n // 64), 300.0, device=device)
    torch.testing.assert_close(model(audio, f0=f0)["f0"], f0)


def test_autoencoder_gradients_reach_every_parameter() -> None:
    n = 1024
    model = Autoencoder(n, n_harmonics=6, n_noise_bands=9, hidden=8, n_layers=1, z_dim=2,
                        reverb_length=32)  # fmt: skip
    with torch.no_grad():
        model.reverb.ir.normal_()  # a nonzero room so the dry path is not the only one
    out = model(_notes(2, n))
    out["audio"].pow(2).mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_autoencoder_state_dict_round_trip() -> None:
    n = 1024
    kw = dict(n_harmonics=6, n_noise_bands=9, hidden=8, n_layers=1, z_dim=2)
    a, b = Autoencoder(n, **kw), Autoencoder(n, **kw)
    b.load_state_dict(a.state_dict())
    audio = _notes(1, n)
    ya = a(audio, generator=torch.Generator().manual_seed(1))["audio"]
    yb = b(audio, generator=torch.Generator().manual_seed(1))["audio"]
    torch.testing.assert_close(ya, yb)


def test_pitch_only_changes_through_f0() -> None:
    # Decoding with a shifted f0 moves the harmonic part's frequencies; loudness unchanged.
    n = 2048
    model = Autoencoder(n, n_harmonics=6, n_noise_bands=9, hidden=8, n_layers=1, z_dim=None)
    f0 = torch.full((1, n // 64), 200.0)
    ld = torch.full((1, n // 64), -20.0)
    base = model.decode(f0, ld)["harmonic"]
    up = model.decode(2 * f0, ld)["harmonic"]
    window = torch.hann_window(n)
    spec = torch.fft.rfft(base[0] * window).abs(), torch.fft.rfft(up[0] * window).abs()
    freqs = torch.fft.rfftfreq(n, 1 / SR)
    lowest = [freqs[(s > 0.2 * s.max()).nonzero()[0, 0]].item() for s in spec]
    assert lowest[0] == pytest.approx(200.0, abs=SR / n)
    assert lowest[1] == pytest.approx(400.0, abs=SR / n)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="multiple of the hop"):
        Autoencoder(1000)
    model = Autoencoder(1024, n_harmonics=4, n_noise_bands=5, hidden=8, n_layers=1, z_dim=2)
    with pytest.raises(ValueError, match=r"audio must have shape \(B, 1024\)"):
        model(torch.randn(1, 2048))
    with pytest.raises(ValueError, match="expected 16 frames"):
        model.decode(torch.full((1, 8), 100.0), torch.zeros(1, 8), torch.zeros(1, 8, 2))
    dec = Decoder(4, 5, 8, 1, z_dim=2)
    with pytest.raises(ValueError, match="z must have shape"):
        dec(torch.full((1, 8), 100.0), torch.zeros(1, 8))
    with pytest.raises(ValueError, match="same"):
        dec(torch.full((1, 8), 100.0), torch.zeros(1, 9), torch.zeros(1, 8, 2))
    with pytest.raises(ValueError, match="z_dim=None"):
        Decoder(4, 5, 8, 1)(torch.full((1, 8), 100.0), torch.zeros(1, 8), torch.zeros(1, 8, 2))
    with pytest.raises(ValueError, match="mfccs must have 3"):
        ZEncoder(4, 8, 2)(torch.zeros(8, 4))
