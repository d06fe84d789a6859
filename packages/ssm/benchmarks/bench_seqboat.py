"""SeqBoat layer (local GAU on activated tokens) vs the same layer with dense full attention
(window = L) as the length grows: time and FLOPs. Ratios are ours/dense (below 1 = cheaper).

No SeqBoat peer package is installed, so the baseline is this library's dense-attention path.

    python packages/ssm/benchmarks/bench_seqboat.py [--quick] [--out DIR]
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from torchloom.core.bench import bench_parser, median_time, write_report
from torchloom.ssm import SeqBoatLayer


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as c:
        fn()
    return int(c.get_total_flops())


def main() -> None:
    args = bench_parser(__doc__.splitlines()[0] if __doc__ else "").parse_args()
    torch.manual_seed(0)
    d, window = 64, 64
    lengths = [256, 1024] if args.quick else [512, 2048, 8192]
    repeat = 3 if args.quick else 10
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

                t_ours, t_dense = median_time(ours, repeat), median_time(full, repeat)
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
    write_report(
        "ssm",
        "seqboat",
        "torchloom.ssm dense full attention (no SeqBoat peer installed)",
        rows,
        args.out,
    )


if __name__ == "__main__":
    main()
