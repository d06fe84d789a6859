"""Multi-step LIF forward+backward: torchloom vs snnTorch ``Leaky`` vs SpikingJelly ``LIFNode``.

    python packages/snn/benchmarks/bench_lif.py [--quick] [--out DIR] [--device cpu|cuda]

Cases (same equations and surrogate everywhere: hard reset to zero with the reset detached,
λ = 0.5, θ = 1, arctan surrogate α = 2 — the convention all three libraries share, see
``tests/test_neurons.py``):

- ``lif``: one multi-step LIF layer on ``(T, B, N) = (16, 64, 4096)``;
- ``mlp``: a 3-layer spiking MLP 784-1024-1024-10 on ``T = 16, B = 64``.

Each runs in one process on identical inputs; spikes are checked equal before timing. Writes
``DIR/snn_lif.json`` with rows ``{case, ours, peer, ratio, unit}`` where ``ratio = ours / peer``
of the median time (below 1: torchloom is faster).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import nn

from torchloom.core.autograd import atan
from torchloom.core.bench import bench_parser, compare, median_times, write_report
from torchloom.snn import LIF, SpikingMLP

DECAY, THETA, ALPHA = 0.5, 1.0, 2.0


def ours_lif(backend: str) -> nn.Module:
    return LIF(
        decay=DECAY,
        threshold=THETA,
        reset="hard",
        surrogate=atan(ALPHA),
        detach_reset=True,
        backend=backend,  # type: ignore[arg-type]
    )


class SnnTorchSeq(nn.Module):
    """snnTorch's idiom: a Python loop over time calling ``Leaky`` once per step."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import snntorch

        mems = {
            i: m.init_leaky() for i, m in enumerate(self.layers) if isinstance(m, snntorch.Leaky)
        }
        outs = []
        for t in range(x.shape[0]):
            h = x[t]
            for i, m in enumerate(self.layers):
                if i in mems:
                    h, mems[i] = m(h, mems[i])
                else:
                    h = m(h)
            outs.append(h)
        return torch.stack(outs)


def snntorch_leaky() -> nn.Module:
    import snntorch
    from snntorch import surrogate

    return snntorch.Leaky(
        beta=DECAY,
        threshold=THETA,
        spike_grad=surrogate.atan(alpha=ALPHA),
        reset_mechanism="zero",
    )


def spikingjelly_lif() -> nn.Module:
    from spikingjelly.activation_based import neuron, surrogate

    return neuron.LIFNode(
        tau=1.0 / (1.0 - DECAY),
        decay_input=False,
        v_threshold=THETA,
        v_reset=0.0,
        surrogate_function=surrogate.ATan(alpha=ALPHA),
        detach_reset=True,
        step_mode="m",
    )


def spikingjelly_mlp(sizes: list[int]) -> nn.Module:
    from spikingjelly.activation_based import functional, layer

    mods: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes[:-1]):
        mods += [layer.Linear(a, b), spikingjelly_lif()]
    mods.append(layer.Linear(sizes[-2], sizes[-1]))
    net = nn.Sequential(*mods)
    functional.set_step_mode(net, "m")
    return net


def fwd_bwd(
    model: nn.Module, x: torch.Tensor, reset: Callable[[], None] | None
) -> Callable[[], None]:
    def run() -> None:
        if reset is not None:
            reset()
        x.grad = None
        model.zero_grad(set_to_none=True)
        out = model(x)
        out.sum().backward()

    return run


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    try:
        import snntorch  # noqa: F401
        from spikingjelly.activation_based import functional
    except ImportError as err:
        print(f"skipping: peer not installed ({err.name}); pip install snntorch spikingjelly")
        return
    dev = torch.device(args.device)
    torch.manual_seed(0)
    repeats = 3 if args.quick else 10
    t_steps, batch = (8, 32) if args.quick else (16, 64)
    units = 1024 if args.quick else 4096
    rows = []

    # --- one LIF layer -------------------------------------------------------------------------
    x = (torch.randn(t_steps, batch, units, device=dev) * 1.5).requires_grad_()
    sj = spikingjelly_lif().to(dev)
    snn_t = SnnTorchSeq([snntorch_leaky()]).to(dev)
    candidates: dict[str, tuple[nn.Module, Callable[[], None] | None]] = {
        "torchloom (fused)": (ours_lif("fused").to(dev), None),
        "torchloom (loop)": (ours_lif("loop").to(dev), None),
        "snnTorch Leaky": (snn_t, None),
        "SpikingJelly LIFNode": (sj, lambda: functional.reset_net(sj)),
    }
    ours_names = ["torchloom (fused)", "torchloom (loop)"]
    if dev.type == "cuda":
        from torchloom.snn._lif_ops import triton_available

        if triton_available():
            candidates["torchloom (triton)"] = (ours_lif("triton").to(dev), None)
            ours_names.append("torchloom (triton)")
    with torch.no_grad():
        ref = candidates["torchloom (fused)"][0](x)
        for name, (m, reset) in candidates.items():
            if reset is not None:
                reset()
            if not torch.equal(m(x), ref):
                raise RuntimeError(f"{name} spikes differ from torchloom's: not the same equations")
    case = f"LIF T={t_steps} B={batch} N={units} fwd+bwd"
    times = median_times({n: fwd_bwd(m, x, r) for n, (m, r) in candidates.items()}, repeats)
    for peer in ("snnTorch Leaky", "SpikingJelly LIFNode"):
        for ours in ours_names:
            rows.append(compare(f"{case}: {ours} vs {peer}", times[ours], times[peer]))

    # --- 3-layer spiking MLP -------------------------------------------------------------------
    sizes = [784, 1024, 1024, 10] if not args.quick else [196, 256, 256, 10]
    xm = (torch.rand(t_steps, batch, sizes[0], device=dev) * 2).requires_grad_()
    ours_mlp = SpikingMLP(
        sizes[0], sizes[-1], hidden=sizes[1:-1], neuron=lambda: ours_lif("fused")
    ).to(dev)
    sj_mlp = spikingjelly_mlp(sizes).to(dev)
    st_layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes[:-1]):
        st_layers += [nn.Linear(a, b), snntorch_leaky()]
    st_layers.append(nn.Linear(sizes[-2], sizes[-1]))
    st_mlp = SnnTorchSeq(st_layers).to(dev)
    # identical weights in all three
    ours_lin = [m for m in ours_mlp.modules() if isinstance(m, nn.Linear)]
    for other in (sj_mlp, st_mlp):
        for a, b in zip(ours_lin, [m for m in other.modules() if isinstance(m, nn.Linear)]):
            b.load_state_dict(a.state_dict())
    with torch.no_grad():
        ref = ours_mlp(xm)
        functional.reset_net(sj_mlp)
        torch.testing.assert_close(sj_mlp(xm), ref)
        torch.testing.assert_close(st_mlp(xm), ref)
    case = f"3-layer MLP {'-'.join(map(str, sizes))} T={t_steps} B={batch} fwd+bwd"
    mlp_times = median_times(
        {
            "torchloom": fwd_bwd(ours_mlp, xm, None),
            "snnTorch": fwd_bwd(st_mlp, xm, None),
            "SpikingJelly": fwd_bwd(sj_mlp, xm, lambda: functional.reset_net(sj_mlp)),
        },
        repeats,
    )
    for peer in ("snnTorch", "SpikingJelly"):
        rows.append(
            compare(f"{case}: torchloom vs {peer}", mlp_times["torchloom"], mlp_times[peer])
        )

    path = write_report(
        "snn",
        "lif",
        "snnTorch, SpikingJelly",
        rows,
        args.out,
        device=str(dev),
        threads=torch.get_num_threads(),
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
