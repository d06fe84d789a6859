"""WAV read/write through ``scipy.io.wavfile`` (no extra audio dependency).

Audio tensors are float in ``[-1, 1]``, shaped ``(N,)`` for mono or ``(C, N)`` for ``C`` channels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from torchloom.core.checks import check_finite, check_floating, check_ndim

__all__ = ["read_wav", "write_wav"]

_PCM_SCALE = {np.dtype("int16"): 32768.0, np.dtype("int32"): 2147483648.0}


def write_wav(
    path: str | Path, audio: torch.Tensor, sample_rate: int, subtype: str = "PCM_16"
) -> Path:
    """Write ``audio`` ``(N,)`` or ``(C, N)`` to ``path``.

    ``subtype`` is ``"PCM_16"`` (values clipped to ``[-1, 1]``) or ``"FLOAT"`` (32-bit float).
    """
    check_floating(audio, "audio")
    check_ndim(audio, "audio", (1, 2), "(N,) or (C, N)")
    check_finite(audio, "audio")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    from scipy.io import wavfile

    data = audio.detach().cpu().double().numpy()
    data = data.T if data.ndim == 2 else data
    if subtype == "PCM_16":
        out = np.round(np.clip(data, -1.0, 1.0 - 1.0 / 32768.0) * 32768.0).astype(np.int16)
    elif subtype == "FLOAT":
        out = data.astype(np.float32)
    else:
        raise ValueError(f"subtype must be 'PCM_16' or 'FLOAT', got {subtype!r}")
    path = Path(path)
    wavfile.write(path, sample_rate, out)
    return path


def read_wav(path: str | Path, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, int]:
    """Read a WAV file: returns ``(audio, sample_rate)`` with ``audio`` ``(N,)`` or ``(C, N)``
    scaled to ``[-1, 1]`` (integer PCM is divided by its full scale)."""
    from scipy.io import wavfile

    sample_rate, data = wavfile.read(Path(path))
    if data.dtype in _PCM_SCALE:
        values = data.astype(np.float64) / _PCM_SCALE[data.dtype]
    elif data.dtype == np.uint8:
        values = (data.astype(np.float64) - 128.0) / 128.0
    else:
        values = data.astype(np.float64)
    values = values.T if values.ndim == 2 else values
    return torch.from_numpy(np.ascontiguousarray(values)).to(dtype), int(sample_rate)
