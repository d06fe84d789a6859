"""LSSL convolutional (FFT + doubling Krylov kernel) vs recurrent mode, and doubling vs naive
kernel construction.

No state-spaces reference is installed in this workspace, so the baselines are this library's
own recurrent mode (``LSSL.forward_recurrent``: the RNN view) and a naive kernel built with L
sequential matrix-vector products. Ratios are ours/baseline (below 1 = faster).

    python packages/ssm/benchmarks/bench_lssl.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils import benchmark

from torchloom.ssm import LSSL, krylov


def _median(fn, min_run_time: float) -> float:
    t = benchmark.Timer(stmt="fn()", globals={"fn": fn})
    return float(t.blocked_autorange(min_run_time=min_run_time).median)


def _naive_kernel(da: torch.Tensor, db: torch.Tensor, length: int) -> torch.Tensor:
    out, x = [], db
    for _ in range(length):
        out.append(x)
        x = torch.einsum("hij,hj->hi", da, x)
    return torch.stack(out, -2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    torch.manual_seed(0)
    lengths = [256, 1024] if args.quick else [1024, 4096, 16384]
    h, n, batch = 16, 32, 4
    layer = LSSL(h, n, 1).eval()
    rows = []
    mrt = 0.05 if args.quick else 0.5
    with torch.no_grad():
        for length in lengths:
            u = torch.randn(batch, length, h)
            conv = _median(lambda u=u: layer(u), mrt)
            rec = _median(lambda u=u: layer.forward_recurrent(u), 0.0)
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
            dbl = _median(lambda a=da, b=db, n_=length: krylov(a, b, n_), mrt)
            naive = _median(lambda a=da, b=db, n_=length: _naive_kernel(a, b, n_), 0.0)
            rows.append(
                {
                    "case": f"Krylov kernel doubling vs naive powers, L={length}",
                    "ours": dbl,
                    "peer": naive,
                    "ratio": dbl / naive,
                    "unit": "s",
                }
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "package": "ssm",
        "topic": "lssl",
        "peer": "own recurrent mode / naive Krylov (no state-spaces reference installed)",
        "rows": rows,
    }
    (out / "ssm_lssl.json").write_text(json.dumps(record, indent=2))
    print(f"{'case':<90} {'ours':>10} {'peer':>10} {'ratio':>8}")
    for r in rows:
        print(f"{r['case']:<90} {r['ours']:>10.4g} {r['peer']:>10.4g} {r['ratio']:>8.3g}")


if __name__ == "__main__":
    main()
