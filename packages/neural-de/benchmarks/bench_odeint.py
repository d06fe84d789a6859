"""torchloom odeint vs torchdiffeq on identical problems and tolerances.

    python packages/neural-de/benchmarks/bench_odeint.py [--quick] [--out DIR]

Writes ``DIR/neural-de_odeint.json`` with ratios ours/peer: NFE (forward, adjoint backward),
wall time (median of interleaved repeats) and the error against a DOP853 reference.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from torchloom.core.bench import bench_parser, median_times, write_report
from torchloom.core.memory import SavedTensorMeter
from torchloom.neural_de import SolverStats, odeint


class Field(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))
        self.nfe = 0

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.net(y)


def _interleaved(
    fa: Callable[[], object], fb: Callable[[], object], repeats: int
) -> tuple[float, float]:
    t = median_times({"ours": fa, "peer": fb}, repeats)
    return t["ours"], t["peer"]


def _saved_bytes(fn: Callable[[], torch.Tensor]) -> int:
    """Peak bytes saved for backward while ``fn`` runs (CPU-capable memory measure)."""
    with SavedTensorMeter() as meter:
        fn()
    return meter.peak_bytes


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0] if __doc__ else "")
    args = parser.parse_args(argv)
    try:
        import torchdiffeq
    except ImportError:
        print("torchdiffeq is not installed; skipping the benchmark")
        return 0
    from scipy.integrate import solve_ivp

    torch.manual_seed(0)
    repeats = 3 if args.quick else 15
    batch, dim, hidden = (64, 4, 32) if args.quick else (256, 8, 64)
    field = Field(dim, hidden).double()
    y0 = torch.randn(batch, dim, dtype=torch.float64)
    t = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)
    rows: list[dict[str, object]] = []

    # Reference for the error column: DOP853 on the flattened batch at tight tolerance.
    with torch.no_grad():

        def rhs(_s: float, y: np.ndarray) -> np.ndarray:
            yt = torch.from_numpy(y).view(batch, dim)
            return field.net(yt).reshape(-1).numpy()

        ref = solve_ivp(
            rhs,
            (0.0, 2.0),
            y0.reshape(-1).numpy(),
            method="DOP853",
            t_eval=t.numpy(),
            rtol=1e-12,
            atol=1e-12,
        ).y.T.reshape(len(t), batch, dim)
    ref_t = torch.from_numpy(ref)

    for method, tol in (("dopri5", 1e-6), ("bosh3", 1e-5), ("rk4", None)):
        kw_ours: dict[str, object] = {"method": method}
        kw_peer: dict[str, object] = {"method": method}
        if tol is None:
            kw_ours["step_size"] = 0.05
            kw_peer["options"] = {"step_size": 0.05}
        else:
            kw_ours.update(rtol=tol, atol=tol)
            kw_peer.update(rtol=tol, atol=tol)
        with torch.no_grad():
            field.nfe = 0
            ours = odeint(field, y0, t, **kw_ours)  # type: ignore[arg-type]
            nfe_ours = field.nfe
            field.nfe = 0
            peer = torchdiffeq.odeint(field, y0, t, **kw_peer)
            nfe_peer = field.nfe
            err_ours = float((ours - ref_t).abs().max())
            err_peer = float((peer - ref_t).abs().max())
            t_ours, t_peer = _interleaved(
                lambda kw=kw_ours: odeint(field, y0, t, **kw),  # type: ignore[arg-type]
                lambda kw=kw_peer: torchdiffeq.odeint(field, y0, t, **kw),
                repeats,
            )
        case = f"{method} tol={tol}" if tol else f"{method} h=0.05"
        if tol is not None:
            # Same error: the loosest tolerance at which ours is at least as accurate as the peer.
            matched_nfe, matched_tol = nfe_ours, tol
            for factor in (2, 5, 10, 20, 50, 100, 200, 500):
                field.nfe = 0
                with torch.no_grad():
                    ys = odeint(field, y0, t, method=method, rtol=tol * factor, atol=tol * factor)
                if float((ys - ref_t).abs().max()) > err_peer:
                    break
                matched_nfe, matched_tol = field.nfe, tol * factor
            rows.append(
                {
                    "case": f"{method} NFE at equal error (ours tol={matched_tol:g})",
                    "ours": matched_nfe,
                    "peer": nfe_peer,
                    "ratio": matched_nfe / nfe_peer,
                    "unit": "evaluations",
                }
            )
        rows.append(
            {
                "case": f"{case} forward NFE",
                "ours": nfe_ours,
                "peer": nfe_peer,
                "ratio": nfe_ours / nfe_peer,
                "unit": "evaluations",
            }
        )
        rows.append(
            {
                "case": f"{case} max error vs DOP853",
                "ours": err_ours,
                "peer": err_peer,
                "ratio": err_ours / err_peer,
                "unit": "abs error",
            }
        )
        rows.append(
            {
                "case": f"{case} forward time",
                "ours": t_ours,
                "peer": t_peer,
                "ratio": t_ours / t_peer,
                "unit": "s (median)",
            }
        )

        def fwd_bwd_ours(kw: dict[str, object] = kw_ours) -> None:
            field.zero_grad()
            odeint(field, y0, t, **kw).pow(2).sum().backward()  # type: ignore[arg-type]

        def fwd_bwd_peer(kw: dict[str, object] = kw_peer) -> None:
            field.zero_grad()
            torchdiffeq.odeint(field, y0, t, **kw).pow(2).sum().backward()

        tb_ours, tb_peer = _interleaved(fwd_bwd_ours, fwd_bwd_peer, repeats)
        rows.append(
            {
                "case": f"{case} forward+backward time",
                "ours": tb_ours,
                "peer": tb_peer,
                "ratio": tb_ours / tb_peer,
                "unit": "s (median)",
            }
        )

    # Continuous adjoint, both with the seminorm of Kidger et al. (2021).
    tol = 1e-6
    stats = SolverStats()

    def adj_ours() -> None:
        field.zero_grad()
        odeint(field, y0, t, rtol=tol, atol=tol, sensitivity="adjoint", stats=stats).pow(
            2
        ).sum().backward()

    def adj_peer() -> None:
        field.zero_grad()
        torchdiffeq.odeint_adjoint(
            field, y0, t, rtol=tol, atol=tol, adjoint_options={"norm": "seminorm"}
        ).pow(2).sum().backward()

    stats.nfe_adjoint = 0
    adj_ours()
    nfe_back_ours = stats.nfe_adjoint
    grad_ours = [p.grad.clone() for p in field.parameters()]  # type: ignore[union-attr]
    with torch.no_grad():
        field.nfe = 0
        odeint(field, y0, t, rtol=tol, atol=tol)
        fwd_nfe = field.nfe
        field.nfe = 0
        torchdiffeq.odeint(field, y0, t, rtol=tol, atol=tol)
        fwd_nfe_peer = field.nfe
    field.nfe = 0
    adj_peer()
    nfe_back_peer = field.nfe - fwd_nfe_peer
    grad_peer = [p.grad.clone() for p in field.parameters()]  # type: ignore[union-attr]
    diff = max(float((a - b).abs().max()) for a, b in zip(grad_ours, grad_peer))
    t_ours, t_peer = _interleaved(adj_ours, adj_peer, repeats)
    rows.append(
        {
            "case": "adjoint dopri5 backward NFE",
            "ours": nfe_back_ours,
            "peer": nfe_back_peer,
            "ratio": nfe_back_ours / nfe_back_peer,
            "unit": "evaluations",
        }
    )
    rows.append(
        {
            "case": "adjoint dopri5 forward+backward time",
            "ours": t_ours,
            "peer": t_peer,
            "ratio": t_ours / t_peer,
            "unit": "s (median)",
        }
    )
    rows.append(
        {
            "case": "adjoint gradient max |ours - peer|",
            "ours": diff,
            "peer": 0.0,
            "ratio": float("nan"),
            "unit": "abs difference",
        }
    )
    del fwd_nfe
    mem = {
        "autograd dopri5": (
            lambda: odeint(field, y0, t, rtol=tol, atol=tol),
            lambda: torchdiffeq.odeint(field, y0, t, rtol=tol, atol=tol),
        ),
        "adjoint dopri5": (
            lambda: odeint(field, y0, t, rtol=tol, atol=tol, sensitivity="adjoint"),
            lambda: torchdiffeq.odeint_adjoint(field, y0, t, rtol=tol, atol=tol),
        ),
    }
    for name, (fo, fp) in mem.items():
        mo, mp = _saved_bytes(fo), _saved_bytes(fp)
        rows.append(
            {
                "case": f"{name} bytes saved for backward",
                "ours": mo,
                "peer": mp,
                "ratio": mo / mp,
                "unit": "bytes",
            }
        )

    write_report("neural-de", "odeint", "torchdiffeq", rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
