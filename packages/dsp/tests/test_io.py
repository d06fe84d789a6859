"""torchloom.dsp.io: WAV round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from torchloom.dsp.io import read_wav, write_wav


def test_pcm16_round_trip_within_one_lsb(tmp_path: Path) -> None:
    x = torch.rand(2, 1000, dtype=torch.float64) * 1.8 - 0.9
    path = write_wav(tmp_path / "a.wav", x, 16000)
    y, sr = read_wav(path, dtype=torch.float64)
    assert sr == 16000 and y.shape == (2, 1000)
    assert float((y - x).abs().max()) <= 0.5 / 32768 + 1e-12


def test_float_round_trip_exact_and_mono(tmp_path: Path) -> None:
    x = torch.randn(500) * 0.3
    y, sr = read_wav(write_wav(tmp_path / "b.wav", x, 22050, subtype="FLOAT"))
    assert sr == 22050
    torch.testing.assert_close(y, x)


def test_pcm16_clips(tmp_path: Path) -> None:
    y, _ = read_wav(write_wav(tmp_path / "c.wav", torch.tensor([2.0, -2.0, 0.0]), 8000))
    np.testing.assert_allclose(y.numpy(), [1.0 - 1 / 32768, -1.0, 0.0])


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NaN"):
        write_wav(tmp_path / "d.wav", torch.tensor([float("nan"), 0.0]), 8000)
    with pytest.raises(ValueError, match="subtype"):
        write_wav(tmp_path / "d.wav", torch.zeros(4), 8000, subtype="PCM_24")
    with pytest.raises(ValueError, match="sample_rate"):
        write_wav(tmp_path / "d.wav", torch.zeros(4), 0)
    with pytest.raises(ValueError, match="audio must have 1 or 2"):
        write_wav(tmp_path / "d.wav", torch.zeros(1, 1, 4), 8000)
