"""ProxylessNAS architecture step: lazy binary paths vs evaluating every path vs DARTS softmax.

    python packages/nas/benchmarks/bench_proxyless.py [--quick] [--out DIR]

The named peer, NNI's ProxylessNAS, evaluates the outputs of every candidate in the forward
pass to get ``∂L/∂g_j`` (as ``torchloom.nas.space.BinaryPathMixing`` does in one-path mode).
When NNI is not installed that in-repo equivalent is the peer, labelled as such. Rows: time
and peak saved-for-backward bytes of one architecture step (forward + backward to ``α``) on
the layer-wise MBConv space with 7 candidates; ratios are ours / peer. Writes
``DIR/nas_proxyless.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from torchloom.core.bench import bench_parser, compare, median_times, write_report
from torchloom.core.memory import SavedTensorMeter
from torchloom.nas.blocks import ChainSupernet
from torchloom.nas.proxyless import ProxylessMixing


def main() -> None:
    args = bench_parser(__doc__.splitlines()[0] if __doc__ else "").parse_args()
    torch.manual_seed(0)
    batch = 32 if args.quick else 128
    net = ChainSupernet(stem_channels=8, stages=((8, 3, 1), (16, 3, 2)))
    x, y = torch.randn(batch, 1, 8, 8), torch.randint(0, 10, (batch,))
    try:
        import nni  # noqa: F401

        peer = "nni (installed; compared through the all-paths rule it implements)"
    except ImportError:
        peer = "all-paths binary gates (NNI's ProxylessNAS rule; nni not installed)"
    rules: dict[str, Callable[[torch.Tensor], Any]] = {
        "lazy": ProxylessMixing("one", lazy=True, generator=torch.Generator().manual_seed(0)),
        "all_paths": ProxylessMixing("one", lazy=False, generator=torch.Generator().manual_seed(0)),
        "darts": lambda a: a.softmax(-1),
    }

    def step(rule: Callable[[torch.Tensor], Any]) -> None:
        loss = F.cross_entropy(net(x, rule(net.alpha)), y)
        loss.backward(inputs=[net.alpha])

    times = median_times(
        {k: (lambda r=r: step(r)) for k, r in rules.items()}, repeat=3 if args.quick else 10
    )
    mem = {}
    for k, r in rules.items():
        with SavedTensorMeter(exclude=[*net.parameters(), x]) as meter:
            step(r)
        mem[k] = float(meter.peak_bytes)
    rows = [
        compare("arch step time, lazy vs all paths", times["lazy"], times["all_paths"]),
        compare("saved bytes, lazy vs all paths", mem["lazy"], mem["all_paths"], "B"),
        compare("saved bytes, lazy vs DARTS softmax", mem["lazy"], mem["darts"], "B"),
        compare("arch step time, lazy vs DARTS softmax", times["lazy"], times["darts"]),
    ]
    write_report("nas", "proxyless", peer, rows, args.out, batch=batch)


if __name__ == "__main__":
    main()
