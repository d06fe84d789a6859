"""Skeletonization time per thinning iteration: Menten et al. (ours) vs the clDice soft skeleton.

    python packages/vision/benchmarks/bench_skeleton.py [--quick] [--out DIR]

Both are pure-PyTorch iterative schemes; one "iteration" is one peeling step (ours: end-point
check + 4/8 subfield deletions; soft skeleton: one erosion + opening). Writes
``DIR/vision_skeleton.json`` with ratios ours/peer (forward + backward, medians) and prints a
table. The soft skeleton is implemented in torchloom.vision as the baseline (clDice's own loss
file is broken), so it always runs; the topology comparison is the vision.skeleton recipe.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch

from torchloom.core.bench import bench_parser, compare, median_times, write_report
from torchloom.vision.skeleton import skeletonize, soft_skeleton


def _fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        x.grad = None
        fn(x).sum().backward()

    return step


def _blobs(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    nd = len(shape) - 2
    noise = torch.rand(shape, generator=g)
    pool = torch.nn.functional.avg_pool2d if nd == 2 else torch.nn.functional.avg_pool3d
    smooth = pool(noise, 7, 1, 3)
    return (smooth > smooth.mean()).float()


def main() -> int:
    args = bench_parser(__doc__.splitlines()[0] if __doc__ else "").parse_args()
    iters = 5
    repeat = 5 if args.quick else 20
    cases = (
        [("2d", (4, 1, 64, 64)), ("3d", (1, 1, 32, 32, 32))]
        if args.quick
        else [("2d", (16, 1, 128, 128)), ("3d", (2, 1, 64, 64, 64))]
    )
    rows: list[dict[str, Any]] = []
    for tag, shape in cases:
        mask = _blobs(shape, 0)
        p = (0.05 + 0.9 * mask).requires_grad_()

        def peer(t: torch.Tensor) -> torch.Tensor:
            return soft_skeleton(t, iters)

        for method in ("boolean", "euler"):

            def ours_m(t: torch.Tensor, method: str = method) -> torch.Tensor:
                g = torch.Generator().manual_seed(0)
                return skeletonize(t, iters, method=method, probabilistic=True, generator=g)  # type: ignore[arg-type]

            t = median_times({"ours": _fwd_bwd(ours_m, p), "peer": _fwd_bwd(peer, p)}, repeat)
            case = f"{tag} {tuple(shape)} {method}, per iteration, fwd+bwd"
            rows.append(compare(case, t["ours"] / iters, t["peer"] / iters))
    write_report("vision", "skeleton", "clDice soft skeleton", rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
