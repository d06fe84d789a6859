"""torchloom neural CDE vs torchcde on the same spline, vector field and solver settings.

    python packages/neural-de/benchmarks/bench_cde.py [--quick] [--out DIR]

Writes ``DIR/neural-de_cde.json`` with ratios ours/peer: spline construction time, forward and
forward+backward time of the CDE solve (midpoint on the knots, dopri5 at 1e-6), NFE and the
largest difference of the outputs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch

from torchloom.core.bench import bench_parser, median_times, write_report
from torchloom.neural_de import NeuralCDE, natural_cubic_path


def _interleaved(
    fa: Callable[[], object], fb: Callable[[], object], repeats: int
) -> tuple[float, float]:
    t = median_times({"ours": fa, "peer": fb}, repeats)
    return t["ours"], t["peer"]


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0] if __doc__ else "")
    args = parser.parse_args(argv)
    try:
        import torchcde
    except ImportError:
        print("torchcde is not installed; skipping the benchmark")
        return 0
    torch.manual_seed(0)
    repeats = 3 if args.quick else 15
    batch, length, channels = (32, 16, 3) if args.quick else (128, 64, 5)
    t = torch.cumsum(0.05 + torch.rand(length), 0)
    x = torch.randn(batch, length, channels)
    model = NeuralCDE(channels, 16, 2, width=64)
    counter = [0]
    model.field.register_forward_hook(lambda *_: counter.__setitem__(0, counter[0] + 1))

    class Func(torch.nn.Module):
        def forward(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            return model.field(z)

    func = Func()
    rows: list[dict[str, object]] = []

    t_ours, t_peer = _interleaved(
        lambda: natural_cubic_path(x, t), lambda: torchcde.natural_cubic_coeffs(x, t=t), repeats
    )
    rows.append(
        {
            "case": "natural cubic spline construction",
            "ours": t_ours,
            "peer": t_peer,
            "ratio": t_ours / t_peer,
            "unit": "s (median)",
        }
    )

    path = natural_cubic_path(x, t)
    spline = torchcde.CubicSpline(torchcde.natural_cubic_coeffs(x, t=t), t=t)

    settings = {
        "midpoint on knots": ({"method": "midpoint"}, {"method": "midpoint"}),
        "dopri5 tol=1e-6": (
            {"method": "dopri5", "rtol": 1e-6, "atol": 1e-6},
            {"method": "dopri5", "rtol": 1e-6, "atol": 1e-6},
        ),
    }
    for case, (kw_ours, kw_peer) in settings.items():

        def ours(kw: dict[str, object] = kw_ours) -> torch.Tensor:
            return model(path, **kw)  # type: ignore[arg-type]

        def peer(kw: dict[str, object] = kw_peer) -> torch.Tensor:
            times = t if kw["method"] == "midpoint" else t[[0, -1]]
            z0 = model.initial(spline.evaluate(t[0]))
            zs = torchcde.cdeint(X=spline, func=func, z0=z0, t=times, **kw)
            return model.readout(zs[:, -1])

        with torch.no_grad():
            diff = float((ours() - peer()).abs().max())
            counter[0] = 0
            ours()
            nfe_ours = counter[0]
            counter[0] = 0
            peer()
            nfe_peer = counter[0]

        def ours_bwd(fn: Callable[[], torch.Tensor] = ours) -> None:
            model.zero_grad()
            fn().sum().backward()

        def peer_bwd(fn: Callable[[], torch.Tensor] = peer) -> None:
            model.zero_grad()
            fn().sum().backward()

        with torch.no_grad():
            tf_o, tf_p = _interleaved(ours, peer, repeats)
        tb_o, tb_p = _interleaved(ours_bwd, peer_bwd, repeats)
        rows.append(
            {
                "case": f"{case} forward",
                "ours": tf_o,
                "peer": tf_p,
                "ratio": tf_o / tf_p,
                "unit": "s (median)",
            }
        )
        rows.append(
            {
                "case": f"{case} forward+backward",
                "ours": tb_o,
                "peer": tb_p,
                "ratio": tb_o / tb_p,
                "unit": "s (median)",
            }
        )
        rows.append(
            {
                "case": f"{case} max |output difference|",
                "ours": diff,
                "peer": 0.0,
                "ratio": float("nan"),
                "unit": "abs",
            }
        )
        rows.append(
            {
                "case": f"{case} NFE",
                "ours": nfe_ours,
                "peer": nfe_peer,
                "ratio": nfe_ours / nfe_peer,
                "unit": "evaluations",
            }
        )

    write_report("neural-de", "cde", "torchcde", rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
