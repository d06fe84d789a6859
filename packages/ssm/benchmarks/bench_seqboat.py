"""SeqBoat layer (local GAU on activated tokens) vs the same layer with dense full attention
(window = L) as the length grows: time and FLOPs. Ratios are ours/dense (below 1 = cheaper).

No SeqBoat peer package is installed, so the baseline is this library's dense-attention path.

    python packages/ssm/benchmarks/bench_seqboat.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode

from torchloom.ssm import SeqBoatLayer


def _median(fn, min_run_time: float) -> float:
    t = benchmark.Timer(stmt="fn()", globals={"fn": fn})
    return float(t.blocked_autorange(min_run_time=min_run_time).median)


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as c:
        fn()
    return int(c.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    torch.manual_seed(0)
    d, window = 64, 64
    lengths = [256, 1024] if args.quick else [512, 2048, 8192]
    mrt = 0.05 if args.quick else 0.3
    rows = []
    with torch.no_grad():
        for length in lengths:
            local = SeqBoatLayer(d, window=window).eval()
            dense = SeqBoatLayer(d, window=length).eval()
            dense.load_state_dict(local.state_dict())
            x = torch.randn(1, length, d)
            for mode in ("learned", "all"):

                def ours(m: str = mode, f: SeqBoatLayer = local, u: torch.Tensor = x) -> None:
                    f(u, m)

                def full(f: SeqBoatLayer = dense, u: torch.Tensor = x) -> None:
                    f(u, "all")

                t_ours, t_dense = _median(ours, mrt), _median(full, mrt)
                f_ours, f_dense = _flops(ours), _flops(full)
                ratio = float(local.forward_with_gate(x, mode)[1].float().mean())
                tag = f"L={length}, window={window}, activated={ratio:.2f}"
                rows.append(
                    {
                        "case": f"time, {tag}",
                        "ours": t_ours,
                        "peer": t_dense,
                        "ratio": t_ours / t_dense,
                        "unit": "s",
                    }
                )
                rows.append(
                    {
                        "case": f"FLOPs, {tag}",
                        "ours": f_ours,
                        "peer": f_dense,
                        "ratio": f_ours / f_dense,
                        "unit": "flop",
                    }
                )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "package": "ssm",
        "topic": "seqboat",
        "peer": "torchloom.ssm dense full attention (no SeqBoat peer installed)",
        "rows": rows,
    }
    (out / "ssm_seqboat.json").write_text(json.dumps(record, indent=2))
    print(f"{'case':<60} {'ours':>10} {'peer':>10} {'ratio':>8}")
    for r in rows:
        print(f"{r['case']:<60} {r['ours']:>10.4g} {r['peer']:>10.4g} {r['ratio']:>8.3g}")


if __name__ == "__main__":
    main()
