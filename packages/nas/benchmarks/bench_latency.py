"""Latency lookup table: predicted (sum of per-op entries) vs measured end-to-end latency.

    python packages/nas/benchmarks/bench_latency.py [--quick] [--out DIR]

FBNet and ProxylessNAS assume a network's latency is the sum of its layers' latencies. For
random architectures of the layer-wise MBConv space, this compares the table's prediction
(``ours``) with the measured latency of the built network (``peer``, same device, same
estimator as the table: minimum over repeats, single-threaded, on the CPU the thread's CPU
clock); the ratio is the prediction error (the stem, transitions and head, fixed in every
architecture, are not in the table, so ratios < 1 are expected). Writes
``DIR/nas_latency.json``.
"""

from __future__ import annotations

import torch

from torchloom.core.bench import bench_parser, compare, times, write_report
from torchloom.nas.blocks import PROXYLESS_OPS, ChainSupernet, build_chain
from torchloom.nas.latency import measure_latency_table


def main() -> None:
    args = bench_parser(__doc__.splitlines()[0] if __doc__ else "").parse_args()
    g = torch.Generator().manual_seed(0)
    stages = ((8, 2, 1), (16, 2, 2))
    batch = 32
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    space = ChainSupernet(stem_channels=8, stages=stages).to(dev)
    repeat = 5 if args.quick else 30
    table = measure_latency_table(space, (batch, 1, 8, 8), dev, repeats=repeat, generator=g)
    x = torch.randn(batch, 1, 8, 8).to(dev)
    rows = []
    for i in range(3 if args.quick else 10):
        idx = torch.randint(0, len(PROXYLESS_OPS), (space.num_layers,), generator=g).tolist()
        choice = [PROXYLESS_OPS[j] for j in idx]
        net = build_chain(choice, stem_channels=8, stages=stages).to(dev).eval()
        clock = "cpu" if dev == "cpu" else "wall"
        with torch.no_grad():
            fns = {"net": lambda net=net: net(x)}
            secs = times(fns, repeat, 2, statistic="min", threads=1, clock=clock)
            measured = secs["net"] * 1e6
        predicted = table.total(dict(zip(space.edge_names(), choice)))
        rows.append(compare(f"arch {i}: {','.join(choice)}", predicted, measured, "us"))
    write_report("nas", "latency", "measured end-to-end latency", rows, args.out, device=dev)


if __name__ == "__main__":
    main()
