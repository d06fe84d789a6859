"""Reproductions of this package's papers, registered under ``torchloom.recipes``."""

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

__all__ = ["forward", "snowflake"]


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


def _graph_metric(kind: str, size: int) -> torch.Tensor:
    import networkx as nx
    from torch_geometric.utils import from_networkx

    from torchloom.gnn.snowflake import graph_distances

    g = nx.balanced_tree(2, size) if kind == "tree" else nx.grid_2d_graph(size, size)
    g = nx.convert_node_labels_to_integers(g)
    return graph_distances(from_networkx(g).edge_index, g.number_of_nodes())


@recipe(
    name="gnn.snowflake",
    papers=(49,),
    claims=[
        Claim(
            "tree_distortion_ratio",
            "<",
            1.0,
            paper="snowflake latent geometry embeds trees with lower distortion than Euclidean "
            "space of the same dimension (Thm 3.3, Sec. 5)",
        ),
    ],
)
def snowflake(ctx: RunContext) -> Result:
    """Neural snowflake vs Euclidean embedding (MLP encoder on one-hot nodes, 2-d latent) of a
    binary tree's and a square grid's shortest-path metrics: average distortion
    ``mean|d_learned/d_true - 1|`` and worst-case ratio (max/min of ``d_learned/d_true``) after the
    same number of Adam steps on the squared log-ratio loss."""
    from torchloom.gnn.snowflake import fit_graph_embedding

    dim = 2
    steps = ctx.pick(300, 2000)
    seeds = list(range(ctx.pick(2, 3)))
    graphs = {"tree": ctx.pick(4, 6), "grid": ctx.pick(6, 10)}
    rows: list[dict[str, Any]] = []
    curves: dict[str, list[float]] = {}
    for kind, size in graphs.items():
        dist = _graph_metric(kind, size)
        for s in seeds:
            for metric in ("snowflake", "euclidean"):
                torch.manual_seed(ctx.seed + s)
                fit = fit_graph_embedding(dist, dim=dim, metric=metric, steps=steps)  # type: ignore[arg-type]
                rows.append(
                    {
                        "graph": kind,
                        "nodes": dist.shape[0],
                        "seed": s,
                        "metric": metric,
                        "avg_distortion": fit.distortion["avg"],
                        "worst_ratio": fit.distortion["ratio"],
                        "final_loss": fit.losses[-1],
                    }
                )
                if s == seeds[0]:
                    curves[f"{kind}/{metric}"] = fit.losses
        last = rows[-2:]
        ctx.log(f"{kind}: " + "  ".join(f"{r['metric']} {r['avg_distortion']:.3f}" for r in last))

    def mean(kind: str, metric: str, key: str) -> float:
        vals = [r[key] for r in rows if r["graph"] == kind and r["metric"] == metric]
        return float(np.mean(vals))

    metrics: dict[str, float] = {}
    for kind in graphs:
        for metric in ("snowflake", "euclidean"):
            metrics[f"{kind}_avg_distortion_{metric}"] = mean(kind, metric, "avg_distortion")
            metrics[f"{kind}_worst_ratio_{metric}"] = mean(kind, metric, "worst_ratio")
        sf, eu = (metrics[f"{kind}_avg_distortion_{m}"] for m in ("snowflake", "euclidean"))
        metrics[f"{kind}_distortion_ratio"] = sf / eu
    return Result(
        metrics=metrics,
        figures=[ctx.savefig(_snowflake_figure(curves, metrics, list(graphs)), "snowflake.png")],
        tables={"distortion": rows},
    )


def _snowflake_figure(
    curves: dict[str, list[float]], metrics: dict[str, float], kinds: list[str]
) -> Any:
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3))
    for name, c in curves.items():
        a.plot(c, label=name, linestyle="-" if name.endswith("snowflake") else "--")
    a.set_yscale("log")
    a.set_xlabel("Adam step")
    a.set_ylabel("mean log-ratio^2")
    a.legend(fontsize=7)
    xs = np.arange(len(kinds))
    for i, metric in enumerate(("snowflake", "euclidean")):
        vals = [metrics[f"{k}_avg_distortion_{metric}"] for k in kinds]
        b.bar(xs + (i - 0.5) * 0.35, vals, width=0.35, label=metric)
    b.set_xticks(xs, kinds)
    b.set_ylabel("avg distortion |d_hat/d - 1|")
    b.legend(fontsize=7)
    fig.suptitle("Neural snowflake vs Euclidean graph embedding (2-d latent)")
    return fig
