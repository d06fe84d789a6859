"""LSSL convolutional (FFT + doubling Krylov kernel) vs recurrent mode, and doubling vs naive
kernel construction.

No state-spaces reference is installed in this workspace, so the baselines are this library's
own recurrent mode (``LSSL.forward_recurrent``: the RNN view) and a naive kernel built with L
sequential matrix-vector products. Ratios are ours/baseline (below 1 = faster).

    python packages/ssm/benchmarks/bench_lssl.py [--quick] [--out DIR]
"""

from __future__ import annotations

import torch

from torchloom.core.bench import bench_parser, median_time, write_report
from torchloom.ssm import LSSL, krylov, krylov_kernel


def _naive_kernel(da: torch.Tensor, db: torch.Tensor, length: int) -> torch.Tensor:
    out, x = [], db
    for _ in range(length):
        out.append(x)
        x = torch.einsum("hij,hj->hi", da, x)
    return torch.stack(out, -2)


def main() -> None:
    args = bench_parser(__doc__.splitlines()[0] if __doc__ else "").parse_args()
    torch.manual_seed(0)
    lengths = [256, 1024] if args.quick else [1024, 4096, 16384]
    h, n, batch = 16, 32, 4
    layer = LSSL(h, n, 1).eval()
    rows = []
    repeat = 3 if args.quick else 10
    with torch.no_grad():
        for length in lengths:
            u = torch.randn(batch, length, h)
            conv = median_time(lambda u=u: layer(u), repeat)
            rec = median_time(lambda u=u: layer.forward_recurrent(u), 1)
            err = float((layer(u) - layer.forward_recurrent(u)[0]).abs().max())
            rows.append(
                {
                    "case": f"LSSL forward conv vs recurrent, L={length} (B={batch}, H={h}, "
                    f"N={n}; max|diff|={err:.1e})",
                    "ours": conv,
                    "peer": rec,
                    "ratio": conv / rec,
                    "unit": "s",
                }
            )
            da, db = layer.discrete()
            dbl = median_time(lambda a=da, b=db, n_=length: krylov(a, b, n_), repeat)
            naive = median_time(lambda a=da, b=db, n_=length: _naive_kernel(a, b, n_), 1)
            rows.append(
                {
                    "case": f"Krylov matrix doubling vs naive powers, L={length}",
                    "ours": dbl,
                    "peer": naive,
                    "ratio": dbl / naive,
                    "unit": "s",
                }
            )
            blocked = median_time(
                lambda a=da, b=db, n_=length: krylov_kernel(a, b, layer.C, n_), repeat
            )
            full = median_time(
                lambda a=da, b=db, n_=length: torch.einsum(
                    "mhn,hln->mhl", layer.C, krylov(a, b, n_)
                ),
                repeat,
            )
            rows.append(
                {
                    "case": f"kernel C A^l B: blocked sqrt(L) vs full Krylov matrix, L={length}",
                    "ours": blocked,
                    "peer": full,
                    "ratio": blocked / full,
                    "unit": "s",
                }
            )
    write_report(
        "ssm",
        "lssl",
        "own recurrent mode / naive Krylov (no state-spaces reference installed)",
        rows,
        args.out,
    )


if __name__ == "__main__":
    main()
