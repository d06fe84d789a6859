"""Recipe ``gnn.forward``: ForwardGNN vs backprop GCN (paper #41)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import GCN

from torchloom.core.memory import SavedTensorMeter
from torchloom.core.recipes import Claim, Result, RunContext, recipe
from torchloom.gnn.data import citation_graph
from torchloom.gnn.forward import ForwardGNN

__all__ = ["forward"]


def _acc(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    return float((pred == y)[mask].float().mean())


@recipe(
    name="gnn.forward",
    papers=(41,),
    claims=[
        Claim(
            "acc_gap_vs_backprop",
            "<=",
            0.03,
            paper="ForwardGNN-SF within ~1-3 points of backprop GCN (Table 2)",
        ),
        Claim(
            "memory_ratio",
            "<",
            1.0,
            paper="forward learning holds one layer's activations: less memory (Table 4)",
        ),
    ],
)
def forward(ctx: RunContext) -> Result:
    """ForwardGNN (SF and FF, GCN layers) vs backprop GCN on a generated citation-like graph:
    test accuracy over seeds, and peak bytes saved for backward in one training epoch."""
    seeds = range(ctx.pick(2, 5))
    epochs = ctx.pick(50, 200)
    layers, hidden = 4, 128
    rows: list[dict[str, Any]] = []
    mem: dict[str, int] = {}
    for s in ctx.progress(list(seeds), description="seeds"):
        data = citation_graph(
            n_nodes=ctx.pick(400, 2000),
            homophily=0.7,
            topic_strength=0.3,
            generator=torch.Generator().manual_seed(ctx.seed + s),
        )
        x, ei, y = data.x, data.edge_index, data.y
        tr, te = data.train_mask, data.test_mask
        torch.manual_seed(ctx.seed + s)
        bp = GCN(x.shape[1], hidden, layers, 5, dropout=0.2)
        opt = torch.optim.Adam(bp.parameters(), lr=0.01, weight_decay=5e-4)
        for epoch in range(epochs):
            bp.train()
            with SavedTensorMeter(exclude=[*bp.parameters(), x]) as meter:
                opt.zero_grad()
                nn.functional.cross_entropy(bp(x, ei)[tr], y[tr]).backward()
            opt.step()
            if epoch == 0:
                mem["backprop"] = meter.peak_bytes
        bp.eval()
        with torch.no_grad():
            acc_bp = _acc(bp(x, ei).argmax(1), y, te)
        row = {"seed": s, "backprop_gcn": acc_bp}
        for mode in ("sf", "ff"):
            torch.manual_seed(ctx.seed + s)
            fg = ForwardGNN(x.shape[1], hidden, layers, 5, conv="gcn", mode=mode)  # type: ignore[arg-type]
            opts: list[torch.optim.Optimizer] = [
                torch.optim.Adam(c.parameters(), lr=0.01, weight_decay=5e-4) for c in fg.convs
            ]
            with SavedTensorMeter(exclude=[*fg.parameters(), x]) as meter:
                fg.train()
                fg.layer_losses(x, ei, y, tr, opts=opts)
            mem[mode] = meter.peak_bytes
            fg.fit(x, ei, y, tr, epochs=epochs - 1)
            row[f"forward_{mode}"] = _acc(fg.predict(x, ei), y, te)
        rows.append(row)
        ctx.log(
            f"seed {s}: backprop {acc_bp:.3f}  SF {row['forward_sf']:.3f}  "
            f"FF {row['forward_ff']:.3f}"
        )
    mean = {
        k: float(np.mean([r[k] for r in rows]))
        for k in ("backprop_gcn", "forward_sf", "forward_ff")
    }
    metrics = {
        "acc_backprop": mean["backprop_gcn"],
        "acc_forward_sf": mean["forward_sf"],
        "acc_forward_ff": mean["forward_ff"],
        "acc_gap_vs_backprop": mean["backprop_gcn"] - mean["forward_sf"],
        "memory_ratio": mem["sf"] / mem["backprop"],
        "memory_ratio_ff": mem["ff"] / mem["backprop"],
        "saved_bytes_backprop": float(mem["backprop"]),
        "saved_bytes_forward_sf": float(mem["sf"]),
    }
    fig = _figure(mean, mem)
    return Result(
        metrics=metrics,
        figures=[ctx.savefig(fig, "forward_gnn.png")],
        tables={
            "accuracy": rows,
            "saved_bytes": [{"method": k, "bytes": v} for k, v in mem.items()],
        },
    )


def _figure(acc: dict[str, float], mem: dict[str, int]) -> Any:
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    names = ["backprop_gcn", "forward_sf", "forward_ff"]
    a.bar(names, [acc[n] for n in names])
    a.set_ylabel("test accuracy")
    b.bar(["backprop", "sf", "ff"], [mem[k] / 1024 for k in ("backprop", "sf", "ff")])
    b.set_ylabel("peak KiB saved for backward (1 epoch)")
    fig.suptitle("ForwardGNN vs backprop GCN (4 layers, generated citation graph)")
    return fig
