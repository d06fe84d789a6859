"""Search-step cost of each strategy relative to second-order DARTS, on one supernet.

    python packages/nas/benchmarks/bench_search_step.py [--quick] [--out DIR]

The peer is second-order DARTS (the DARTS paper's unrolled step with the finite-difference
Hessian-vector product, as NNI's ``DartsTrainer(unrolled=True)`` implements it; NNI itself is
not installed here). ``ours`` is the median wall time of one full search step (architecture and
weight updates) of first-order DARTS, RARTS (half-width second network), SD-DARTS (two
teachers) and sharpDARTS; the ratio is the cost relative to second-order DARTS. Repeats run
round-robin so that machine load hits every strategy alike. Writes ``DIR/nas_search_step.json``.
"""

from __future__ import annotations

from typing import Any

import torch

from torchloom.core.bench import bench_parser, compare, median_times, write_report
from torchloom.nas.darts import DARTS
from torchloom.nas.rarts import RARTS
from torchloom.nas.sd_darts import SDDARTS
from torchloom.nas.sharpdarts import SharpDARTS
from torchloom.nas.space import PRIMITIVES
from torchloom.nas.supernet import Supernet


def main() -> None:
    args = bench_parser(__doc__.splitlines()[0] if __doc__ else "").parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    C = 8 if args.quick else 16
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 64, 1, 8, 8, generator=g).to(dev)
    y = torch.randint(0, 10, (2, 64), generator=g).to(dev)
    train, val = (x[0], y[0]), (x[1], y[1])

    def net(width: int) -> Supernet:
        torch.manual_seed(0)
        return Supernet(C=width, layers=3, steps=3, ops=PRIMITIVES).to(dev)

    strategies: dict[str, Any] = {
        "darts-2nd": DARTS(order=2),
        "darts-1st": DARTS(order=1),
        "rarts": RARTS(net(C // 2)),
        "sd-darts": SDDARTS(num_teachers=2, snapshot_every=1),
        "sharpdarts": SharpDARTS(),
    }
    fns = {}
    for name, s in strategies.items():
        model = net(C)
        s.setup(model, 1)
        s.on_epoch_start(model, 0)
        fns[name] = lambda s=s, model=model: s.step(model, train, val, 0)
    times = median_times(fns, repeat=3 if args.quick else 10, warmup=2)
    rows = [
        compare(name, times[name], times["darts-2nd"], "s")
        for name in strategies
        if name != "darts-2nd"
    ]
    write_report("nas", "search_step", "second-order DARTS", rows, args.out, device=dev, C=C)


if __name__ == "__main__":
    main()
