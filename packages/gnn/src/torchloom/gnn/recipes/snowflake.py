"""Recipe ``gnn.snowflake``: neural snowflake vs Euclidean graph-metric embedding (paper #49)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from torchloom.core.recipes import Claim, Result, RunContext, recipe

__all__ = ["snowflake"]


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
