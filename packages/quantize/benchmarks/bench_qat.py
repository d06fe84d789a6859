"""4-bit weight QAT: our uniform quantiser (STE) vs Brevitas QuantLinear/QuantConv2d.

    python packages/quantize/benchmarks/bench_qat.py [--quick] [--out DIR]

Writes ``DIR/quantize_qat.json`` (DIR defaults to ``$TORCHLOOM_BENCH_DIR`` or
``benchmarks/results``) and prints a table of ratios ours/peer. Skips (exit 0, no report) when
Brevitas is not importable.

The same network is trained with labels only (cross-entropy), 4-bit weights, full-precision
activations and biases, from the same initial weights (copied), with the same optimiser (Adam,
cosine schedule, the ``quantize.distill`` recipe's student schedule), the same mini-batches
(order fixed by the seed) and the same number of epochs, once with our
``UniformQuantizer`` parametrisation (min–max scaling, ``2^4 = 16`` levels, straight-through
gradient ``∂L/∂w = ∂L/∂Q(w)``) and once with Brevitas layers. Networks: the 64-128-10 MLP of the
recipe on flattened 8×8 digits, and a small CNN (three 3×3 convs, one linear layer) on the
images. Every weight layer is quantised.

Scaling pairings (Brevitas quantiser ↔ ours):

- *matched, per tensor*: ``ShiftedUint8WeightPerTensorFloat`` (asymmetric min–max, 16 levels,
  integer zero point) ↔ ``UniformQuantizer(4, bucket_size=None)`` (one min–max bucket per
  tensor);
- *matched, per output channel*: ``ShiftedUint8WeightPerChannelFloat`` ↔
  ``UniformQuantizer(4, bucket_size=fan_in)`` (row-major buckets of ``fan_in`` entries are
  exactly the output channels);
- *Brevitas default*: ``QuantLinear(..., weight_bit_width=4)`` with its default
  ``Int8WeightPerTensorFloat`` (symmetric, max-abs scaling, narrow range: 15 levels −7…7) ↔
  our per-tensor quantiser.

Remaining differences in the matched pairs: Brevitas rounds the zero point to an integer (its
grid contains 0 exactly; ours starts at the minimum) and back-propagates through the
statistics that set the scale and zero point (the min and max entries get an extra gradient);
ours detaches them (pure STE). Rows: mean test accuracy over seeds (``ours_std``/``peer_std``:
standard deviation over seeds; ``diff``/``diff_se``: mean and standard error of the paired
per-seed difference ours − peer, in points) and training wall time per epoch (ratio < 1: ours
faster).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from torchloom.core.bench import bench_parser, compare, write_report
from torchloom.core.data import digits
from torchloom.quantize import UniformQuantizer, freeze_quantization

Factory = Callable[..., nn.Module]
BITS = 4


def _mlp(linear: Factory) -> nn.Sequential:
    return nn.Sequential(linear(64, 128), nn.ReLU(), linear(128, 10))


def _cnn(conv: Factory, linear: Factory) -> nn.Sequential:
    return nn.Sequential(
        conv(1, 16, 3, padding=1),
        nn.ReLU(),
        conv(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        conv(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        linear(32 * 2 * 2, 10),
    )


def _ours(model: nn.Module, per_channel: bool) -> nn.Module:
    """Our 4-bit fake quantisation on every Linear/Conv2d weight (in place)."""
    for mod in list(model.modules()):
        if isinstance(mod, (nn.Linear, nn.Conv2d)):
            fan_in = mod.weight[0].numel()
            q = UniformQuantizer(BITS, fan_in if per_channel else None)
            parametrize.register_parametrization(mod, "weight", q)
    return model


def _latent_weight(mod: nn.Module) -> torch.Tensor:
    """The trained full-precision weight: the shadow tensor of a parametrised layer (its
    ``weight`` property is a fresh quantised tensor, writing into it changes nothing)."""
    if parametrize.is_parametrized(mod, "weight"):
        return mod.parametrizations.weight.original  # type: ignore[union-attr,return-value]
    w = mod.weight
    assert isinstance(w, torch.Tensor)
    return w


def _copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy every weight/bias of ``src`` into the layer at the same position in ``dst`` (and
    check that the copy took)."""
    a = [m for m in src.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    b = [m for m in dst.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if len(a) != len(b):
        raise RuntimeError(f"layer count differs: {len(a)} vs {len(b)}")
    with torch.no_grad():
        for x, y in zip(a, b, strict=True):
            _latent_weight(y).copy_(x.weight)
            if x.bias is not None and y.bias is not None:
                y.bias.copy_(x.bias)
            if not torch.equal(_latent_weight(y), x.weight):
                raise RuntimeError("initial weights were not copied")


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    seed: int,
) -> float:
    """Adam + cosine over shuffled batches of 64 (order from ``seed``); returns s per epoch."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, 64):
            idx = perm[i : i + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return (time.perf_counter() - start) / epochs


def _run_network(
    name: str,
    build: Callable[[Factory, Factory], nn.Module],
    data: Any,
    *,
    seeds: list[int],
    epochs: int,
    lr: float,
) -> list[dict[str, Any]]:
    from brevitas.nn import QuantConv2d, QuantLinear
    from brevitas.quant import (
        Int8WeightPerTensorFloat,
        ShiftedUint8WeightPerChannelFloat,
        ShiftedUint8WeightPerTensorFloat,
    )

    def brevitas(quant: Any) -> Callable[[], nn.Module]:
        def make() -> nn.Module:
            def lin(i: int, o: int) -> nn.Module:
                return QuantLinear(i, o, bias=True, weight_quant=quant, weight_bit_width=BITS)

            def conv(i: int, o: int, k: int, padding: int = 0) -> nn.Module:
                return QuantConv2d(
                    i, o, k, padding=padding, bias=True, weight_quant=quant, weight_bit_width=BITS
                )

            return build(conv, lin)

        return make

    methods: dict[str, Callable[[], nn.Module]] = {
        "fp": lambda: build(nn.Conv2d, nn.Linear),
        "ours_tensor": lambda: _ours(build(nn.Conv2d, nn.Linear), per_channel=False),
        "ours_channel": lambda: _ours(build(nn.Conv2d, nn.Linear), per_channel=True),
        "brevitas_tensor": brevitas(ShiftedUint8WeightPerTensorFloat),
        "brevitas_channel": brevitas(ShiftedUint8WeightPerChannelFloat),
        "brevitas_default": brevitas(Int8WeightPerTensorFloat),
    }
    acc: dict[str, list[float]] = {k: [] for k in methods}
    sec: dict[str, list[float]] = {k: [] for k in methods}
    for seed in seeds:
        torch.manual_seed(seed)
        init = build(nn.Conv2d, nn.Linear)
        for key, make in methods.items():
            model = make()
            _copy_weights(init, model)
            sec[key].append(
                _train(model, data.x_train, data.y_train, epochs=epochs, lr=lr, seed=seed + 100)
            )
            if key.startswith("ours"):
                model = freeze_quantization(model)
            acc[key].append(_accuracy(model, data.x_test, data.y_test))
        print(
            f"  {name} seed {seed}: "
            + ", ".join(f"{k} {100 * v[-1]:.2f}%" for k, v in acc.items()),
            flush=True,
        )

    def sd(v: list[float]) -> float:
        return statistics.stdev(v) if len(v) > 1 else 0.0

    tag = f"{name}, {epochs} ep, {len(seeds)} seeds"
    rows: list[dict[str, Any]] = []
    pairs = [
        ("ours_tensor", "brevitas_tensor", "per-tensor min-max (matched)"),
        ("ours_channel", "brevitas_channel", "per-channel min-max (matched)"),
        ("ours_tensor", "brevitas_default", "ours per-tensor vs Brevitas default int4 narrow"),
    ]
    for ours, peer, what in pairs:
        row = compare(
            f"{tag}: test acc, {what}",
            statistics.fmean(acc[ours]),
            statistics.fmean(acc[peer]),
            "accuracy",
        )
        d = [100 * (a - b) for a, b in zip(acc[ours], acc[peer], strict=True)]
        row.update(
            ours_std=sd(acc[ours]),
            peer_std=sd(acc[peer]),
            diff=statistics.fmean(d),
            diff_se=sd(d) / len(d) ** 0.5,
        )
        rows.append(row)
    for ours, peer, what in pairs[:2]:
        rows.append(
            compare(
                f"{tag}: train time/epoch, {what.split(' (')[0]}",
                statistics.median(sec[ours]),
                statistics.median(sec[peer]),
                "s",
            )
        )
    rows.append(
        {
            "case": f"{tag}: test acc, full precision (reference)",
            "ours": statistics.fmean(acc["fp"]),
            "peer": None,
            "ratio": None,
            "unit": "accuracy",
            "ours_std": sd(acc["fp"]),
        }
    )
    return rows


def main() -> None:
    args = bench_parser(__doc__.splitlines()[0] if __doc__ else "").parse_args()
    try:
        import brevitas  # noqa: F401
    except ImportError:
        print("brevitas is not importable: skipping the QAT benchmark")
        sys.exit(0)
    torch.set_num_threads(1)
    quick = args.quick
    flat, images = digits(flatten=True), digits()
    seeds = [0, 1] if quick else [0, 1, 2, 3, 4]
    rows = _run_network(
        "MLP 64-128-10",
        lambda conv, lin: _mlp(lin),
        flat,
        seeds=seeds,
        epochs=5 if quick else 100,
        lr=1e-2,
    )
    rows += _run_network(
        "CNN 16-32-32",
        _cnn,
        images,
        seeds=seeds[:1] if quick else seeds,
        epochs=2 if quick else 20,
        lr=5e-3,
    )
    path = write_report(
        "quantize",
        "qat",
        "brevitas",
        rows,
        args.out,
        brevitas_version=__import__("brevitas").__version__,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
