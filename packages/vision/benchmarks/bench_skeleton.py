"""Skeletonization time per thinning iteration: Menten et al. (ours) vs the clDice soft skeleton.

    python packages/vision/benchmarks/bench_skeleton.py [--quick] [--out DIR]

Both are pure-PyTorch iterative schemes; one "iteration" is one peeling step (ours: end-point
check + 4/8 subfield deletions; soft skeleton: one erosion + opening). Writes
``DIR/vision_skeleton.json`` with ratios ours/peer (forward + backward, medians) and prints a
table. The soft skeleton is implemented in torchloom.vision as the baseline (clDice's own loss
file is broken), so it always runs; the topology comparison is the vision.skeleton recipe.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.utils.benchmark as tb

from torchloom.vision.skeleton import skeletonize, soft_skeleton


def _time(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, min_run: float) -> float:
    def step() -> None:
        x.grad = None
        fn(x).sum().backward()

    step()
    t = tb.Timer(stmt="step()", globals={"step": step}).blocked_autorange(min_run_time=min_run)
    return float(t.median)


def _blobs(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    nd = len(shape) - 2
    noise = torch.rand(shape, generator=g)
    pool = torch.nn.functional.avg_pool2d if nd == 2 else torch.nn.functional.avg_pool3d
    smooth = pool(noise, 7, 1, 3)
    return (smooth > smooth.mean()).float()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    iters = 5
    min_run = 0.3 if args.quick else 2.0
    cases = (
        [("2d", (4, 1, 64, 64)), ("3d", (1, 1, 32, 32, 32))]
        if args.quick
        else [("2d", (16, 1, 128, 128)), ("3d", (2, 1, 64, 64, 64))]
    )
    rows: list[dict[str, object]] = []
    for tag, shape in cases:
        mask = _blobs(shape, 0)
        p = (0.05 + 0.9 * mask).requires_grad_()

        def peer(t: torch.Tensor) -> torch.Tensor:
            return soft_skeleton(t, iters)

        for method in ("boolean", "euler"):

            def ours_m(t: torch.Tensor, method: str = method) -> torch.Tensor:
                g = torch.Generator().manual_seed(0)
                return skeletonize(t, iters, method=method, probabilistic=True, generator=g)  # type: ignore[arg-type]

            a, b = _time(ours_m, p, min_run), _time(peer, p, min_run)
            rows.append(
                {
                    "case": f"{tag} {tuple(shape)} {method}, per iteration, fwd+bwd",
                    "ours": a / iters,
                    "peer": b / iters,
                    "ratio": a / b,
                    "unit": "s",
                }
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "package": "vision",
        "topic": "skeleton",
        "peer": "clDice soft skeleton",
        "rows": rows,
    }
    (out / "vision_skeleton.json").write_text(json.dumps(record, indent=2))
    print(f"{'case':56s} {'ours':>10s} {'peer':>10s} {'ratio':>7s}")
    for r in rows:
        print(f"{r['case']!s:56s} {r['ours']:10.5f} {r['peer']:10.5f} {r['ratio']:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
