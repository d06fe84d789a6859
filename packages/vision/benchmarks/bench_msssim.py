"""SSIM / MS-SSIM forward+backward time: torchloom.vision vs pytorch-msssim (and piq's SSIM).

    python packages/vision/benchmarks/bench_msssim.py [--quick] [--out DIR]

Writes ``DIR/vision_msssim.json`` with ratios ours/peer (< 1 means ours is faster) and prints a
table. Both run in this process on identical inputs; times are medians of repeated runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch

from torchloom.core.bench import bench_parser, compare, median_times, write_report
from torchloom.vision.msssim import ms_ssim, ssim


def _fwd_bwd(fn: Callable[[], torch.Tensor], x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        x.grad = None
        fn().backward()

    return step


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
    args = bench_parser(__doc__.splitlines()[0] if __doc__ else "").parse_args()
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
    repeat = 5 if args.quick else 20
    cases: list[tuple[str, tuple[int, ...]]] = (
        [("2d", (4, 3, 192, 192)), ("3d", (1, 1, 48, 48, 48))]
        if args.quick
        else [("2d", (16, 3, 256, 256)), ("3d", (2, 1, 96, 96, 96))]
    )
    rows: list[dict[str, Any]] = []
    for tag, shape in cases:
        x = torch.rand(shape, requires_grad=True)
        y = (x.detach() + 0.1 * torch.randn(shape)).clamp(0, 1)
        win = 11 if tag == "2d" else 3  # 3D MS-SSIM needs sides >= 161 with the 11-tap window
        bench = _cases(tag, x, y, win, pm, piq)
        for case, ours_fn, peer_fn, peer_name in bench:
            torch.testing.assert_close(ours_fn(), peer_fn(), atol=1e-4, rtol=0)
            t = median_times({"ours": _fwd_bwd(ours_fn, x), "peer": _fwd_bwd(peer_fn, x)}, repeat)
            row = compare(f"{case} {tuple(shape)} fwd+bwd vs {peer_name}", t["ours"], t["peer"])
            rows.append(row)
    write_report("vision", "msssim", "pytorch-msssim, piq", rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
