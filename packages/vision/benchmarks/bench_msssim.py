"""SSIM / MS-SSIM forward+backward time: torchloom.vision vs pytorch-msssim (and piq's SSIM).

    python packages/vision/benchmarks/bench_msssim.py [--quick] [--out DIR]

Writes ``DIR/vision_msssim.json`` with ratios ours/peer (< 1 means ours is faster) and prints a
table. Both run in this process on identical inputs; times are medians of repeated runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.utils.benchmark as tb

from torchloom.vision.msssim import ms_ssim, ssim


def _time(fn: Callable[[], torch.Tensor], x: torch.Tensor, min_run_time: float) -> float:
    def step() -> None:
        x.grad = None
        fn().backward()

    step()  # warm-up
    t = tb.Timer(stmt="step()", globals={"step": step}).blocked_autorange(min_run_time=min_run_time)
    return float(t.median)


Case = tuple[str, Callable[[], torch.Tensor], Callable[[], torch.Tensor], str]


def _cases(tag: str, x: torch.Tensor, y: torch.Tensor, win: int, pm: Any, piq: Any) -> list[Case]:
    cases: list[Case] = [
        (
            f"ssim_{tag}",
            lambda: ssim(x, y, 1.0, win_size=win),
            lambda: pm.ssim(x, y, data_range=1.0, win_size=win),
            "pytorch-msssim",
        ),
        (
            f"ms_ssim_{tag}",
            lambda: ms_ssim(x, y, 1.0, win_size=win),
            lambda: pm.ms_ssim(x, y, data_range=1.0, win_size=win),
            "pytorch-msssim",
        ),
    ]
    if piq is not None and tag == "2d":
        cases.append(
            (
                f"ssim_{tag}_vs_piq",
                lambda: ssim(x, y, 1.0),
                lambda: piq.ssim(x, y, data_range=1.0, downsample=False),
                "piq",
            )
        )
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small inputs, short timings")
    parser.add_argument("--out", default="benchmarks/results", help="output folder")
    args = parser.parse_args()
    try:
        import pytorch_msssim as pm
    except ImportError:
        print("pytorch-msssim is not installed; skipping (pip install pytorch-msssim)")
        return 0
    try:
        import piq  # type: ignore[import-untyped]
    except ImportError:
        piq = None

    torch.manual_seed(0)
    min_run = 0.3 if args.quick else 2.0
    cases: list[tuple[str, tuple[int, ...]]] = (
        [("2d", (4, 3, 192, 192)), ("3d", (1, 1, 48, 48, 48))]
        if args.quick
        else [("2d", (16, 3, 256, 256)), ("3d", (2, 1, 96, 96, 96))]
    )
    rows: list[dict[str, object]] = []
    for tag, shape in cases:
        x = torch.rand(shape, requires_grad=True)
        y = (x.detach() + 0.1 * torch.randn(shape)).clamp(0, 1)
        win = 11 if tag == "2d" else 3  # 3D MS-SSIM needs sides >= 161 with the 11-tap window
        bench = _cases(tag, x, y, win, pm, piq)
        for case, ours_fn, peer_fn, peer_name in bench:
            torch.testing.assert_close(ours_fn(), peer_fn(), atol=1e-4, rtol=0)
            ours = _time(ours_fn, x, min_run)
            peer = _time(peer_fn, x, min_run)
            rows.append(
                {
                    "case": f"{case} {tuple(shape)} fwd+bwd",
                    "ours": ours,
                    "peer": peer,
                    "ratio": ours / peer,
                    "unit": "s",
                    "peer_name": peer_name,
                }
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"package": "vision", "topic": "msssim", "peer": "pytorch-msssim", "rows": rows}
    (out / "vision_msssim.json").write_text(json.dumps(record, indent=2))
    print(f"{'case':44s} {'ours':>10s} {'peer':>10s} {'ratio':>7s}  peer")
    for r in rows:
        print(
            f"{r['case']!s:44s} {r['ours']:10.4f} {r['peer']:10.4f} {r['ratio']:7.2f}  "
            f"{r['peer_name']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
