"""Benchmark: DDSP synthesis and spectral loss in torchloom.dsp vs NumPy/SciPy references.

The issue names torchaudio as the STFT peer; it is not installed in this workspace, so the
classical reference is NumPy/SciPy (``scipy.signal.fftconvolve``, NumPy framing + ``rfft``)
and a naive per-harmonic NumPy oscillator loop. Both sides run in one process on identical
inputs; outputs are checked to agree before anything is timed.

    python packages/dsp/benchmarks/bench_synth.py [--quick] [--out DIR]

Writes ``DIR/dsp_synth.json`` (rows: case, ours, peer, ratio = ours / peer, unit).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch

from torchloom.core.bench import bench_parser, compare, median_time, write_report

SR = 16000
HOP = 64


def numpy_harmonic_synth(
    f0: np.ndarray, amp: np.ndarray, dist: np.ndarray, n_samples: int
) -> np.ndarray:
    """Naive reference: one oscillator at a time, linear envelopes, Nyquist masking."""
    batch, frames, n_harm = dist.shape
    pos = np.arange(n_samples) * frames / n_samples
    grid = np.arange(frames)
    out = np.zeros((batch, n_samples))
    for b in range(batch):
        d = dist[b] * (f0[b, :, None] * np.arange(1, n_harm + 1) < SR / 2)
        d = d / np.maximum(d.sum(-1, keepdims=True), 1e-7)
        f0_env = np.interp(pos, grid, f0[b])
        phase1 = np.mod(np.cumsum(2 * np.pi * f0_env / SR), 2 * np.pi)
        for k in range(1, n_harm + 1):
            a_env = np.interp(pos, grid, amp[b] * d[:, k - 1])
            a_env = a_env * (k * f0_env < SR / 2)
            out[b] += a_env * np.sin(k * phase1)
    return out


def numpy_spectral_loss(a: np.ndarray, b: np.ndarray, sizes: tuple[int, ...]) -> float:
    """Reference multi-scale spectral loss: NumPy framing, periodic Hann, rfft."""
    from numpy.lib.stride_tricks import sliding_window_view

    total = 0.0
    for size in sizes:
        hop = size // 4
        n_frames = -(-a.shape[-1] // hop)
        pad = (n_frames - 1) * hop + size - a.shape[-1]
        window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(size) / size)
        mags = []
        for x in (a, b):
            xp = np.pad(x, ((0, 0), (0, pad)))
            frames = sliding_window_view(xp, size, axis=-1)[:, ::hop]
            mags.append(np.abs(np.fft.rfft(frames * window, axis=-1)))
        total += np.abs(mags[0] - mags[1]).mean()
        total += np.abs(
            np.log(np.maximum(mags[0], 1e-5)) - np.log(np.maximum(mags[1], 1e-5))
        ).mean()
    return total


def main() -> int:
    parser = bench_parser(__doc__.splitlines()[0] if __doc__ else "")
    args = parser.parse_args()
    try:
        import scipy.signal as ss
    except ImportError:
        print("scipy is not installed; skipping the dsp benchmark")
        return 0
    from torchloom.dsp import (
        MultiScaleSpectralLoss,
        fft_convolve,
        frequency_impulse_response,
        harmonic_synth,
    )

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    repeats = 3 if args.quick else 10
    seconds = 1.0 if args.quick else 4.0
    batch = 4
    n_samples = int(seconds * SR)
    frames = n_samples // HOP
    n_harm = 60
    rows: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []

    f0 = 100.0 + 400.0 * rng.random((batch, 1)) * np.ones((1, frames))
    f0 = f0 * (1 + 0.01 * np.sin(np.linspace(0, 20, frames)))
    amp = rng.random((batch, frames))
    dist = rng.random((batch, frames, n_harm))
    tf0, tamp, tdist = (torch.from_numpy(x).float() for x in (f0, amp, dist))

    # --- harmonic synthesis (linear amplitude envelopes on both sides) ---
    ours_audio = harmonic_synth(tf0, tamp, tdist, SR, n_samples, amp_resample="linear")
    ref_audio = numpy_harmonic_synth(f0, amp, dist, n_samples)
    checks.append(
        {
            "case": "harmonic_synth max |ours - numpy|",
            "value": float(np.abs(ours_audio.numpy() - ref_audio).max()),
        }
    )
    t_ours = median_time(
        lambda: harmonic_synth(tf0, tamp, tdist, SR, n_samples, amp_resample="linear"), repeats
    )
    t_peer = median_time(lambda: numpy_harmonic_synth(f0, amp, dist, n_samples), repeats)
    audio_seconds = batch * seconds
    rows.append(
        {
            "case": f"harmonic synth, {batch}x{seconds:g}s, {n_harm} harmonics (s)",
            "ours": t_ours,
            "peer": t_peer,
            "ratio": t_ours / t_peer,
            "unit": "s",
        }
    )
    rows.append(
        {
            "case": "harmonic synth throughput (audio s per s)",
            "ours": audio_seconds / t_ours,
            "peer": audio_seconds / t_peer,
            "ratio": t_peer / t_ours,
            "unit": "audio s / s",
        }
    )

    # --- multi-scale spectral loss ---
    sizes = (2048, 1024, 512, 256, 128, 64)
    a = rng.standard_normal((batch, n_samples))
    b = rng.standard_normal((batch, n_samples))
    ta, tb = torch.from_numpy(a).float(), torch.from_numpy(b).float()
    loss_fn = MultiScaleSpectralLoss(sizes)
    checks.append(
        {
            "case": "spectral loss |ours - numpy| / numpy",
            "value": abs(loss_fn(ta, tb).item() / numpy_spectral_loss(a, b, sizes) - 1.0),
        }
    )
    t_ours = median_time(lambda: loss_fn(ta, tb), repeats)
    t_peer = median_time(lambda: numpy_spectral_loss(a, b, sizes), repeats)
    rows.append(
        {
            "case": f"multi-scale spectral loss, {batch}x{seconds:g}s (s)",
            "ours": t_ours,
            "peer": t_peer,
            "ratio": t_ours / t_peer,
            "unit": "s",
        }
    )
    tb.requires_grad_(True)

    def ours_fwd_bwd() -> None:
        loss_fn(ta, tb).backward()

    rows.append(
        compare(
            "spectral loss forward+backward vs numpy forward only (s)",
            median_time(ours_fwd_bwd, repeats),
            t_peer,
        )
    )

    # --- FIR filtering: one long filter, and time-varying filters ---
    mags = torch.rand(batch, 65)
    ir = frequency_impulse_response(mags)
    irn = ir.numpy()
    same = fft_convolve(ta, ir, padding="same").numpy()
    ref = np.stack([ss.fftconvolve(a[i], irn[i], mode="same") for i in range(batch)])
    checks.append(
        {"case": "fft_convolve vs fftconvolve max abs", "value": float(np.abs(same - ref).max())}
    )
    t_ours = median_time(lambda: fft_convolve(ta, ir, padding="same"), repeats)
    t_peer = median_time(
        lambda: [ss.fftconvolve(a[i], irn[i], mode="same") for i in range(batch)], repeats
    )
    rows.append(
        {
            "case": "FIR filter (127 taps), one filter per signal (s)",
            "ours": t_ours,
            "peer": t_peer,
            "ratio": t_ours / t_peer,
            "unit": "s",
        }
    )
    tv_mags = torch.rand(batch, frames, 65)
    tv_ir = frequency_impulse_response(tv_mags)
    tv_irn = tv_ir.numpy()

    def scipy_time_varying() -> np.ndarray:
        out = np.zeros((batch, n_samples + tv_irn.shape[-1] - 1))
        for i in range(batch):
            for j in range(frames):
                seg = a[i, j * HOP : (j + 1) * HOP]
                out[i, j * HOP : j * HOP + HOP + tv_irn.shape[-1] - 1] += ss.fftconvolve(
                    seg, tv_irn[i, j]
                )
        return out

    ours_tv = fft_convolve(ta, tv_ir, padding="valid").numpy()
    checks.append(
        {
            "case": "time-varying fft_convolve vs blockwise fftconvolve max abs",
            "value": float(np.abs(ours_tv - scipy_time_varying()).max()),
        }
    )
    t_ours = median_time(lambda: fft_convolve(ta, tv_ir, padding="valid"), repeats)
    t_peer = median_time(scipy_time_varying, max(1, repeats // 3), warmup=1)
    rows.append(
        {
            "case": f"time-varying FIR ({frames} frames x 127 taps) (s)",
            "ours": t_ours,
            "peer": t_peer,
            "ratio": t_ours / t_peer,
            "unit": "s",
        }
    )

    path = write_report(
        "dsp",
        "synth",
        "numpy/scipy reference (torchaudio not installed)",
        rows,
        args.out,
        torch_threads=torch.get_num_threads(),
        checks=checks,
    )
    for c in checks:
        print(f"check: {c['case']} = {c['value']:.3g}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
