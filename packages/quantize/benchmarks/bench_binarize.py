"""BiPer vs the sign+STE baseline, and the quantisation-error closed form vs scipy quadrature.

    python packages/quantize/benchmarks/bench_binarize.py [--quick] [--out DIR]

Writes ``DIR/quantize_binarize.json`` (DIR defaults to ``$TORCHLOOM_BENCH_DIR`` or
``benchmarks/results``) and prints a table of ratios ours/peer. Rows:

- forward+backward wall time of ``BiPerConv2d`` / ``BiPerLinear`` (stage 2) against
  ``SignSTEConv2d`` / ``SignSTELinear`` of the same shape on identical inputs — the cost of the
  periodic binariser over a plain sign;
- test accuracy on 8×8 digits of the same binary CNN (width 8) trained with BiPer and with
  sign+STE on the same batches with the ``quantize.biper`` recipe's schedule (ratio > 1: BiPer
  better);
- bit-packed XNOR-popcount products (``xnor_popcount_matmul``, torch int64-word SWAR path,
  cache-blocked, in place) vs the float32 matmul of the same ±1 matrices at batch 1 and batched,
  and the weight storage of both;
- evaluating ``quantization_error`` (closed form) against ``scipy.integrate.quad`` over a grid
  of ω₀: the absolute error and the time ratio.

Brevitas, the issue's named peer, has no BiPer quantiser; the sign+STE layers here are the
binarisation it (and Larq) would use. The 4-bit QAT comparison with Brevitas layers is
``bench_qat.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from scipy import integrate
from torch import nn

from torchloom.core.bench import bench_parser, compare, median_time, write_report
from torchloom.core.data import digits
from torchloom.quantize import (
    BiPerConv2d,
    BiPerLinear,
    SignSTEConv2d,
    SignSTELinear,
    binarize_model,
    biper_regularizer,
    pack_signs,
    quantization_error,
    set_biper_stage,
    xnor_popcount_matmul,
)
from torchloom.quantize.recipes import _binary_cnn  # the recipe's network, benchmarked as is


def _fwd_bwd(layer: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        layer.zero_grad(set_to_none=True)
        layer(x).sum().backward()

    return run


def _layer_rows(quick: bool) -> list[dict[str, Any]]:
    repeats = 5 if quick else 20
    rows = []
    conv_shapes = [(32, 64, 16)] if quick else [(32, 64, 16), (64, 128, 16)]
    for b, c, hw in conv_shapes:
        torch.manual_seed(0)
        ours = BiPerConv2d(c, c, 3, padding=1, stage=2)
        peer = SignSTEConv2d(c, c, 3, padding=1, clip=1.0)
        peer.load_state_dict(ours.state_dict())
        x = torch.randn(b, c, hw, hw)
        t_ours, t_peer = (
            median_time(_fwd_bwd(ours, x), repeats),
            median_time(_fwd_bwd(peer, x), repeats),
        )
        rows.append(compare(f"conv {c}->{c} 3x3, ({b},{c},{hw},{hw}) fwd+bwd", t_ours, t_peer, "s"))
    lin_shapes = [(256, 1024)] if quick else [(256, 1024), (512, 4096)]
    for b, n in lin_shapes:
        torch.manual_seed(0)
        ours_l = BiPerLinear(n, n, stage=2)
        peer_l = SignSTELinear(n, n, clip=1.0)
        peer_l.load_state_dict(ours_l.state_dict())
        x = torch.randn(b, n)
        t_ours, t_peer = (
            median_time(_fwd_bwd(ours_l, x), repeats),
            median_time(_fwd_bwd(peer_l, x), repeats),
        )
        rows.append(compare(f"linear {n}x{n}, batch {b} fwd+bwd", t_ours, t_peer, "s"))
    return rows


def _packed_rows(quick: bool) -> list[dict[str, Any]]:
    """The issue's packed-inference row: XNOR-popcount on packed bytes vs float32 ±1 matmul."""
    rows = []
    # batch 1 (matrix-vector, memory bound: the packed weights are 32x smaller) and batched
    # (compute bound: BLAS sgemm against elementwise int64 torch ops)
    shapes = (
        [(1, 1024, 1024), (64, 1024, 1024)]
        if quick
        else [(1, 1024, 1024), (1, 4096, 4096), (64, 1024, 1024), (256, 4096, 4096)]
    )
    for b, n, o in shapes:
        x, w = torch.randn(b, n), torch.randn(o, n)
        xs, ws = torch.where(x >= 0, 1.0, -1.0), torch.where(w >= 0, 1.0, -1.0)
        xp, wp = pack_signs(x), pack_signs(w)
        t_ours = median_time(lambda xp=xp, wp=wp, n=n: xnor_popcount_matmul(xp, wp, n), 5)
        t_peer = median_time(lambda xs=xs, ws=ws: xs @ ws.T, 5)
        rows.append(
            compare(
                f"packed xnor-popcount ({b}x{n})·({o}x{n})ᵀ vs float32 ±1 matmul",
                t_ours,
                t_peer,
                "s",
            )
        )
        rows.append(
            compare(
                f"weight storage {o}x{n}: packed bytes vs float32 bytes",
                float(wp.numel()),
                float(ws.numel() * 4),
                "bytes",
            )
        )
    return rows


def _accuracycompare(quick: bool) -> dict[str, Any]:
    """The ``quantize.biper`` recipe's schedule (the BiPer authors'): SGD, two cosine stages."""
    data = digits()
    stage_epochs = 2 if quick else 15
    lrs, decays, taus = (0.05, 0.01), (5e-4, 5e-5), (0.037, 0.0468)
    accs = {}
    for method in ("biper", "ste"):
        torch.manual_seed(0)
        model = binarize_model(_binary_cnn(8), method=method, freq=20.0, exclude=["0", "9"])
        g_alpha = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for m in model.modules():
                alpha = getattr(m, "alpha", None)
                if isinstance(alpha, nn.Parameter):
                    alpha.copy_(torch.rand(alpha.shape, generator=g_alpha))
        for stage in (1, 2):
            if method == "biper":
                set_biper_stage(model, stage)
            opt = torch.optim.SGD(
                model.parameters(), lr=lrs[stage - 1], momentum=0.9, weight_decay=decays[stage - 1]
            )
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, stage_epochs)
            g = torch.Generator().manual_seed(stage)
            for _ in range(stage_epochs):
                model.train()
                perm = torch.randperm(data.x_train.shape[0], generator=g)
                for i in range(0, perm.numel(), 64):
                    idx = perm[i : i + 64]
                    loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
                    if method == "biper":
                        loss = loss + biper_regularizer(model, taus[stage - 1])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                sched.step()
        model.eval()
        with torch.no_grad():
            accs[method] = float((model(data.x_test).argmax(1) == data.y_test).float().mean())
    return compare(
        f"digits test accuracy, same binary CNN, {2 * stage_epochs} epochs",
        accs["biper"],
        accs["ste"],
        "accuracy",
    )


def _qe_rows(quick: bool) -> list[dict[str, Any]]:
    freqs = [0.5, 5.0, 20.0, 80.0] if quick else [0.5, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0]
    b = 0.05

    def quad(freq: float) -> float:
        def f(w: float) -> float:
            s = math.sin(freq * w)
            return abs(s - math.copysign(1.0, s)) * math.exp(-w / b) / b

        period, total, k = math.pi / freq, 0.0, 0
        while k * period < 60 * b:
            total += integrate.quad(f, k * period, (k + 1) * period)[0]
            k += 1
        return total

    ref = [quad(f) for f in freqs]
    ours = quantization_error(torch.tensor(freqs, dtype=torch.float64), b).tolist()
    err = max(abs(o - r) for o, r in zip(ours, ref))
    t_ours = median_time(
        lambda: quantization_error(torch.tensor(freqs, dtype=torch.float64), b), 20
    )
    t_peer = median_time(lambda: [quad(f) for f in freqs], 2)
    case = f"QE(ω₀) Laplace b={b}, {len(freqs)} ω₀ values: closed form vs quad"
    return [
        compare(case, t_ours, t_peer, "s"),
        {
            "case": "QE closed form max |error| vs quad",
            "ours": err,
            "peer": 0.0,
            "ratio": None,
            "unit": "abs error",
        },
    ]


def main() -> None:
    args = bench_parser(__doc__.splitlines()[0] if __doc__ else "").parse_args()
    torch.set_num_threads(1)
    rows = [
        *_layer_rows(args.quick),
        *_packed_rows(args.quick),
        _accuracycompare(args.quick),
        *_qe_rows(args.quick),
    ]
    path = write_report(
        "quantize",
        "binarize",
        "sign+STE layers (Brevitas/Larq-style binarisation), scipy.integrate.quad",
        rows,
        args.out,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
