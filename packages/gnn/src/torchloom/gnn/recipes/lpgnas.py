"""Recipe ``gnn.lpgnas``: searched low-precision GNNs vs fixed-precision GCNs (paper #19)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from torchloom.core.recipes import Claim, Result, RunContext, recipe
from torchloom.gnn.data import citation_graph

__all__ = ["lpgnas"]


@recipe(
    name="gnn.lpgnas",
    papers=(19,),
    claims=[
        Claim(
            "size_ratio_vs_gcn4",
            "<",
            1.0,
            paper="LPGNAS finds networks smaller than fixed 4-bit GNNs at equal accuracy "
            "(Table 3: Cora, Citeseer, Pubmed)",
        ),
        Claim(
            "size_ratio_vs_gcn32",
            "<=",
            0.125,
            paper="more than 8x smaller than full precision at matching accuracy (Table 3)",
            quick=False,
        ),
    ],
)
def lpgnas(ctx: RunContext) -> Result:
    """Size–accuracy frontier on a generated citation-like graph: LPGNAS searched with several
    size prices ``γ`` (each derived network retrained from scratch) against fixed GCNs (GCN
    attention, sum aggregation, ReLU, 64 hidden units) whose weights *and* activations are 32,
    8, 4 (and 2) bits. ``size_ratio_vs_gcnB`` is the smallest LPGNAS network whose mean test
    accuracy is within one point of the ``B``-bit GCN's, divided by that GCN's size (infinite
    when none is)."""
    from torchloom.gnn.lpgnas import LPGNAS, LayerChoice, QuantGNN, SearchSpace
    from torchloom.gnn.training import train_node_classifier

    seeds = list(range(ctx.pick(1, 2)))
    gammas = ctx.pick((1.0,), (0.0, 0.3, 1.0, 3.0))
    base_bits = ctx.pick((32, 4), (32, 8, 4, 2))
    space = ctx.pick(
        SearchSpace(
            attention=("constant", "gcn"),
            aggregation=("add", "mean"),
            activation=("relu", "identity"),
            hidden=(16, 64),
            weight_bits=(2, 4, 32),
            act_bits=(4, 32),
        ),
        SearchSpace(),
    )
    rows: list[dict[str, Any]] = []
    for s in ctx.progress(seeds, description="seeds"):
        g = torch.Generator().manual_seed(ctx.seed + s)
        data = citation_graph(
            n_nodes=ctx.pick(250, 400), homophily=0.7, topic_strength=0.25, generator=g
        )
        x, ei, y = data.x, data.edge_index, data.y
        tr, va = data.train_mask, data.val_mask
        n_classes = int(y.max()) + 1

        def evaluate(
            choices: list[LayerChoice], data: Any = data, seed: int = s
        ) -> tuple[float, int]:
            torch.manual_seed(ctx.seed + seed)
            model = QuantGNN(data.num_features, int(data.y.max()) + 1, choices)
            x, ei, y = data.x, data.edge_index, data.y
            train_node_classifier(
                model, x, ei, y, data.train_mask, data.val_mask, ctx.pick(60, 200)
            )
            with torch.no_grad():
                acc = float((model(x, ei).argmax(1) == y)[data.test_mask].float().mean())
            return acc, model.size_bits()

        for b in base_bits:
            acc, size = evaluate([LayerChoice("gcn", "add", "relu", 64, b, b)] * 2)
            rows.append({"seed": s, "method": f"gcn{b}", "acc": acc, "size_bits": size})
        for gamma in gammas:
            torch.manual_seed(ctx.seed + s)
            net = LPGNAS(x.shape[1], n_classes, n_layers=2, space=space)
            epochs = ctx.pick(30, 100)
            net.search(x, ei, y, tr, va, epochs=epochs, size_weight=gamma, warmup=epochs // 3)
            choices = net.derive()
            acc, size = evaluate(choices)
            rows.append(
                {
                    "seed": s,
                    "method": f"lpgnas_g{gamma:g}",
                    "acc": acc,
                    "size_bits": size,
                    "arch": "; ".join(
                        f"{c.attention}/{c.aggregation}/{c.activation}/{c.out_channels}"
                        f"/w{c.weight_bits}a{c.act_bits}"
                        for c in choices
                    ),
                }
            )
        ctx.log(
            f"seed {s}: "
            + "  ".join(
                f"{r['method']} {r['acc']:.3f}@{r['size_bits'] / 8192:.1f}KiB"
                for r in rows
                if r["seed"] == s
            )
        )
    methods = list(dict.fromkeys(r["method"] for r in rows))
    mean = {
        m: (
            float(np.mean([r["acc"] for r in rows if r["method"] == m])),
            float(np.mean([r["size_bits"] for r in rows if r["method"] == m])),
        )
        for m in methods
    }
    metrics: dict[str, float] = {}
    for m, (mean_acc, mean_size) in mean.items():
        metrics[f"acc_{m}"] = mean_acc
        metrics[f"size_kib_{m}"] = mean_size / 8192
    searched = [v for m, v in mean.items() if m.startswith("lpgnas")]
    for b in base_bits:
        acc_b, size_b = mean[f"gcn{b}"]
        ok = [sz for a, sz in searched if a >= acc_b - 0.01]
        metrics[f"size_ratio_vs_gcn{b}"] = min(ok) / size_b if ok else float("inf")
    return Result(
        metrics=metrics,
        figures=[ctx.savefig(_figure(mean), "lpgnas_frontier.png")],
        tables={"runs": rows},
    )


def _figure(mean: dict[str, tuple[float, float]]) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for prefix, marker, label in (("gcn", "s", "fixed-precision GCN"), ("lpgnas", "o", "LPGNAS")):
        pts = sorted(
            (size / 8192, acc, m) for m, (acc, size) in mean.items() if m.startswith(prefix)
        )
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=label)
        for size, acc, m in pts:
            ax.annotate(m.removeprefix(prefix).removeprefix("_"), (size, acc), fontsize=7)
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("model size (KiB, log)")
    ax.set_ylabel("test accuracy")
    ax.legend()
    ax.set_title("Size–accuracy frontier (generated citation graph)")
    return fig
