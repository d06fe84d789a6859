"""Empirical-NTK speed and analytic-kernel agreement: torchloom.theory vs neural-tangents.

    python packages/theory/benchmarks/bench_ntk.py [--quick] [--out DIR]

neural-tangents (JAX) is the named peer. When it is not installed the script says so and
compares against a per-example ``torch.autograd`` loop instead (the baseline every PyTorch
user would otherwise write), labelled as such in the JSON. Writes
``DIR/theory_ntk.json`` = {"package", "topic", "peer", "rows": [{"case", "ours", "peer",
"ratio", "unit"}]}; ratios are ours / peer.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from torchloom.core.bench import bench_parser, compare, median_time, write_report
from torchloom.theory import NTKMLP, empirical_ntk, infinite_width_kernels


class SmallCNN(nn.Module):
    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.fc = nn.Linear(channels * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(h.flatten(1))


def _autograd_ntk(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(x.shape[0]):
        out = model(x[i : i + 1]).reshape(-1)
        for a in range(out.numel()):
            g = torch.autograd.grad(out[a], params, retain_graph=True)
            rows.append(torch.cat([t.reshape(-1) for t in g]))
    j = torch.stack(rows).reshape(x.shape[0], -1, rows[0].numel())
    return torch.einsum("iaP,jbP->ijab", j, j)


def main() -> None:
    args = bench_parser(__doc__.splitlines()[0] if __doc__ else "").parse_args()
    torch.manual_seed(0)
    n = 8 if args.quick else 32
    repeats = 3 if args.quick else 10
    mlp = NTKMLP(16, 256 if args.quick else 1024, 2, 10)
    cnn = SmallCNN().eval()
    cases: list[tuple[str, nn.Module, torch.Tensor]] = [
        ("mlp", mlp, torch.randn(n, 16)),
        ("cnn", cnn, torch.randn(n, 1, 8, 8)),
    ]
    try:
        import jax  # noqa: F401
        import neural_tangents as nt  # noqa: F401

        have_nt = True
    except ImportError:
        have_nt = False
        print(
            "neural-tangents is not installed: comparing against a per-example torch.autograd "
            "loop instead (install the bench group with neural-tangents for the peer rows)."
        )
    rows = []
    for name, model, x in cases:
        for mode in ("jacobian", "ntk_vp"):
            ours = median_time(
                lambda m=model, xx=x, md=mode: empirical_ntk(m, xx, mode=md), repeats
            )
            base = median_time(lambda m=model, xx=x: _autograd_ntk(m, xx), max(1, repeats // 2))
            rows.append(
                compare(f"empirical NTK {name} N={n} mode={mode} vs autograd loop", ours, base)
            )
    if have_nt:
        rows += _neural_tangents_rows(n, repeats)
    peer = "neural-tangents" if have_nt else "torch.autograd loop (neural-tangents not installed)"
    write_report("theory", "ntk", peer, rows, args.out)


def _neural_tangents_rows(n: int, repeats: int) -> list[dict[str, object]]:
    """Analytic kernels and empirical NTK against neural-tangents' stax on the same nets."""
    import jax

    jax.config.update("jax_enable_x64", True)  # compare kernels in float64
    import jax.numpy as jnp
    import neural_tangents as nt
    from neural_tangents import stax

    rows: list[dict[str, object]] = []
    x = np.random.default_rng(0).standard_normal((n, 16))
    sw2, sb2, depth = 2.0, 0.1, 3
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(512, W_std=sw2**0.5, b_std=sb2**0.5), stax.Relu()]
    layers.append(stax.Dense(1, W_std=sw2**0.5, b_std=sb2**0.5))
    init_fn, apply_fn, kernel_fn = stax.serial(*layers)
    ref = kernel_fn(jnp.asarray(x), None, ("nngp", "ntk"))
    ours = infinite_width_kernels(torch.from_numpy(x), depth=depth, sigma_w2=sw2, sigma_b2=sb2)
    for kind, a, b in (("nngp", ours.nngp, ref.nngp), ("ntk", ours.ntk, ref.ntk)):
        err = float(np.abs(a.numpy() - np.asarray(b)).max() / np.abs(np.asarray(b)).max())
        rows.append(
            {
                "case": f"analytic {kind} ReLU depth {depth} max rel diff",
                "ours": err,
                "peer": 0.0,
                "ratio": float("nan"),
                "unit": "rel",
            }
        )
    # Empirical NTK of the same MLP in both libraries (timing only; weights differ).
    _, params = init_fn(jax.random.PRNGKey(0), x.shape)
    ntk_fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0))
    xj = jnp.asarray(x, dtype=jnp.float32)
    peer = median_time(lambda: ntk_fn(xj, None, params).block_until_ready(), repeats)
    mlp = NTKMLP(16, 512, depth, 1, sigma_w2=sw2, sigma_b2=sb2)
    xt = torch.from_numpy(x).float()
    ours_t = median_time(lambda: empirical_ntk(mlp, xt), repeats)
    rows.append(compare(f"empirical NTK ReLU MLP depth {depth} width 512 N={n}", ours_t, peer))
    return rows


if __name__ == "__main__":
    main()
