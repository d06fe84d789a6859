"""Empirical-NTK speed and analytic-kernel agreement: torchloom.theory vs neural-tangents.

    python packages/theory/benchmarks/bench_ntk.py [--quick] [--out DIR]

neural-tangents (JAX) is the named peer. It cannot share an environment or a process with
torch, so it runs in a subprocess (``neural_tangents_reference.py`` via ``nt_crosscheck.py``):
with ``$TORCHLOOM_NT_PYTHON`` (a python that has neural-tangents) if set, else with
``uv run --script`` when uv is on PATH (its first run downloads jax and TensorFlow into uv's
cache; ``TORCHLOOM_NT_PYTHON=skip`` opts out). The peer rows are analytic NNGP/NTK for ReLU and
erf at depths 1-4 with biases (max relative difference in float64), the empirical NTK of one MLP
with identical weights (agreement, and time ours / neural-tangents' jitted function). Without
a runner the script says the peer rows are skipped and compares against a per-example
``torch.autograd`` loop only (the baseline every PyTorch user would otherwise write). Writes
``DIR/theory_ntk.json`` = {"package", "topic", "peer", "rows": [{"case", "ours", "peer",
"ratio", "unit"}]}; ratios are ours / peer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from torchloom.core.bench import bench_parser, compare, median_time, write_report
from torchloom.theory import NTKMLP, empirical_ntk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nt_crosscheck import ENV_VAR, crosscheck, find_runner


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
    runner = find_runner()
    if runner is None:
        print(
            f"neural-tangents peer rows SKIPPED: neither ${ENV_VAR} (a python with "
            "neural-tangents) nor uv is available. Rows below compare against a per-example "
            "torch.autograd loop only."
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
    peer = "torch.autograd loop (neural-tangents skipped: no $TORCHLOOM_NT_PYTHON / uv)"
    if runner is not None:
        print(f"running the neural-tangents reference in a subprocess: {' '.join(runner)}")
        rows += _neural_tangents_rows(runner, n, 256 if args.quick else 1024, repeats)
        peer = "neural-tangents (subprocess) and torch.autograd loop"
    write_report("theory", "ntk", peer, rows, args.out)


def _neural_tangents_rows(
    runner: list[str], n: int, width: int, repeats: int
) -> list[dict[str, object]]:
    """Analytic NNGP/NTK (ReLU, erf; depths 1-4; biases; float64) and the empirical NTK of one
    MLP with the same weights, against neural-tangents run in a subprocess."""
    analytic, emp, versions = crosscheck(
        runner, n=max(n, 4), width=width, emp_depth=3, repeats=repeats
    )
    print(f"neural-tangents reference: {versions}")
    rows: list[dict[str, object]] = []
    for r in analytic:
        print(
            f"  analytic {r['kind']:>4} {r['case']:<12} max rel diff {r['rel_diff']:.2e} "
            f"(distinct inputs {r['rel_diff_distinct']:.2e})"
        )
        rows.append(
            {
                "case": f"analytic {r['kind']} {r['case']} max rel diff vs neural-tangents",
                "ours": r["rel_diff"],
                "peer": 0.0,
                "ratio": float("nan"),
                "unit": "rel",
            }
        )
        if r["kind"] == "ntk":
            rows.append(
                compare(f"analytic NNGP+NTK {r['case']} N={n} time", r["ours_s"], r["peer_s"])
            )
    rows.append(
        {
            "case": "empirical NTK same weights (float64) max rel diff vs neural-tangents",
            "ours": emp["rel_diff"],
            "peer": 0.0,
            "ratio": float("nan"),
            "unit": "rel",
        }
    )
    rows.append(
        compare(
            f"empirical NTK ReLU MLP depth 3 width {width} N={n} mode=jacobian vs nt (jit)",
            emp["ours_s"],
            emp["peer_s"],
        )
    )
    rows.append(
        compare(
            f"empirical NTK ReLU MLP depth 3 width {width} N={n} mode=ntk_vp vs nt (jit)",
            emp["ours_vp_s"],
            emp["peer_s"],
        )
    )
    return rows


if __name__ == "__main__":
    main()
