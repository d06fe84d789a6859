"""SSVI vs dense mean-field VI (the paper's baseline, torchloom.bayes.vi): training cost per step.

    python packages/bayes/benchmarks/bench_ssvi.py [--quick] [--out DIR]

Writes ``DIR/bayes_ssvi.json`` (DIR defaults to ``$TORCHLOOM_BENCH_DIR`` or
``benchmarks/results``) with ratios ours/peer and prints a table. Both models have the same
architecture and see identical batches in this process. Rows:

- analytic training FLOPs per step (sparse products over the active weights, plus the dense
  growth gradient amortised over ΔT) — what a sparse kernel would spend;
- stored variational parameters and bytes (values + int32 indices of the active weights);
- measured wall time per training step. The library runs SSVI with masked *dense* kernels, so
  this ratio shows the bookkeeping overhead (masking, subspace updates), not a speed-up.

The peer is the paper's own baseline; there is no third-party SSVI implementation to compare.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import torch
from torch import nn

from torchloom.bayes import (
    SSVI,
    TrainingFlopCounter,
    VariationalConv2d,
    VariationalLinear,
    kl_divergence,
    negative_elbo,
    storage,
)
from torchloom.core.bench import bench_parser, compare, write_report


def _mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        VariationalLinear(64, 256),
        nn.ReLU(),
        VariationalLinear(256, 256),
        nn.ReLU(),
        VariationalLinear(256, 10),
    )


def _cnn() -> nn.Module:
    return nn.Sequential(
        VariationalConv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        VariationalConv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        VariationalConv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        VariationalLinear(64 * 8 * 8, 128),
        nn.ReLU(),
        VariationalLinear(128, 10),
    )


def _run(
    build: Any, x: torch.Tensor, y: torch.Tensor, steps: int, density: float | None
) -> dict[str, float]:
    torch.manual_seed(0)
    model = build()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    if density is None:
        counter = TrainingFlopCounter(model)
        ssvi = None
    else:
        ssvi = SSVI(
            model,
            opt,
            density=density,
            total_steps=4 * steps,
            update_interval=10,
            generator=torch.Generator().manual_seed(0),
        )
        counter = ssvi.flops
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        negative_elbo(model(x), y, kl_divergence(model), 10_000).backward()
        if ssvi is None:
            opt.step()
        else:
            ssvi.step()
        times.append(time.perf_counter() - start)
    st = storage(model)
    return {
        "flops": counter.training_flops / steps,
        "params": float(st["params"]),
        "bytes": float(st["bytes"]),
        # median over steps, the first few dropped as warm-up; update steps stay in the sample
        "seconds": statistics.median(times[3:]),
    }


def main() -> int:
    args = bench_parser(__doc__.splitlines()[0]).parse_args()
    steps = 23 if args.quick else 103
    density = 0.1
    cases = [
        ("MLP 64-256-256-10, batch 128", _mlp, torch.rand(128, 64)),
        ("CNN 3x32x32 (32-64-64 conv, 2 fc), batch 32", _cnn, torch.rand(32, 3, 32, 32)),
    ]
    rows: list[dict[str, Any]] = []
    for label, build, x in cases:
        y = torch.randint(0, 10, (x.shape[0],))
        peer = _run(build, x, y, steps, None)
        ours = _run(build, x, y, steps, density)
        for key, what, unit in (
            ("flops", "training FLOPs / step", "FLOPs"),
            ("params", "variational params", "count"),
            ("bytes", "storage", "bytes"),
            ("seconds", "wall time / step (masked dense kernels)", "s"),
        ):
            rows.append(compare(f"{label}: {what}, density {density}", ours[key], peer[key], unit))
    write_report(
        "bayes",
        "ssvi",
        "dense mean-field VI (torchloom.bayes.vi, the paper's baseline)",
        rows,
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
