"""Recipe ``gnn.stable``: STABLE vs GCN under structure poisoning (paper #43)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch_geometric.nn import GCN

from torchloom.core.recipes import Claim, Result, RunContext, recipe
from torchloom.gnn.data import citation_graph

__all__ = ["stable"]


@recipe(
    name="gnn.stable",
    papers=(43,),
    claims=[
        Claim(
            "gain_dice",
            ">=",
            0.05,
            paper="STABLE beats GCN under 20% DICE (Table 2: Cora 20% DICE ~+5 points)",
            quick=False,
        ),
        Claim(
            "gain_pgd",
            ">=",
            0.05,
            paper="STABLE beats GCN under 20% Metattack (Table 2: Cora +~20 points)",
        ),
        Claim(
            "clean_gap",
            "<=",
            0.02,
            paper="clean accuracy on par with GCN (Table 2, 0% rows)",
            quick=False,
        ),
    ],
)
def stable(ctx: RunContext) -> Result:
    """GCN vs STABLE on a generated citation-like graph poisoned with 20% of its edges by
    DICE (our own implementation, checked against DeepRobust's in the tests), by our
    meta-gradient PGD attack (linearised GCN surrogate re-trained through the perturbation)
    and, in full mode, by random insertions; full mode also runs DeepRobust's own Metattack
    (Meta-Self, as in the authors' ``generate_attack.py``) on one smaller graph when DeepRobust
    is installed. Both models are trained on the poisoned graph and selected on validation
    accuracy; test accuracy, mean of seeds, ``gain_* = acc(STABLE) − acc(GCN)``.

    The graph has sub-communities (``n_subtopics=8`` per class, each with its own topic, see
    :func:`~torchloom.gnn.citation_graph`): linked nodes share words beyond their class, as
    citing papers do in Cora, so the authors' Jaccard pre-processing (``jt = 0.03``) keeps
    most clean edges and drops almost every inserted one; an MLP reaches about 0.6 and GCN
    about 0.85 (Cora: about 0.57 and 0.82). STABLE follows the authors' code and their
    per-perturbation-rate settings (README, Cora rows): clean graph ``jt = 0``, ``k = 1``,
    ``α = −0.5``; 20% attacks ``jt = 0.03``, ``k = 7``, ``α = 0.6``. The validation split picks
    the cosine threshold ``t1 ∈ {0.1, 0.3}`` and whether the advanced GCN reads the
    representations or the raw features."""
    from torchloom.gnn.stable import dice_attack, pgd_attack, random_attack

    seeds = list(range(ctx.pick(1, 3)))
    n_nodes = ctx.pick(300, 600)
    attacks = ["clean", "pgd"] if ctx.quick else ["clean", "dice", "pgd", "random"]
    rows: list[dict[str, Any]] = []
    chosen: list[dict[str, Any]] = []
    for s in ctx.progress(seeds, description="seeds"):
        g = torch.Generator().manual_seed(ctx.seed + s)
        data = _graph(n_nodes, ctx.pick(60, 100), g)
        x, ei, y = data.x, data.edge_index, data.y
        tr = data.train_mask
        budget = int(0.2 * ei.shape[1] // 2)
        graphs = {"clean": ei}
        if "dice" in attacks:
            graphs["dice"] = dice_attack(ei, y, budget, generator=g)
        graphs["pgd"] = pgd_attack(
            x, ei, y, tr, budget, steps=ctx.pick(30, 60), inner_steps=ctx.pick(20, 30), generator=g
        )
        if "random" in attacks:
            graphs["random"] = random_attack(ei, n_nodes, budget, "add", generator=g)
        for name in attacks:
            row, pick = _compare(ctx, data, graphs[name], name, ctx.seed + s, g)
            rows.append({"seed": s, **row})
            chosen.append({"seed": s, "attack": name, **pick})
            ctx.log(f"seed {s} {name}: GCN {row['gcn']:.3f}  STABLE {row['stable']:.3f}")
    if not ctx.quick:
        rows += _deeprobust_rows(ctx, chosen)

    def mean(attack: str, method: str) -> float:
        return float(np.mean([r[method] for r in rows if r["attack"] == attack]))

    metrics: dict[str, float] = {}
    present = [a for a in (*attacks, "dr_metattack") if any(r["attack"] == a for r in rows)]
    for a in present:
        metrics[f"acc_gcn_{a}"] = mean(a, "gcn")
        metrics[f"acc_stable_{a}"] = mean(a, "stable")
        if a != "clean":
            metrics[f"gain_{a}"] = mean(a, "stable") - mean(a, "gcn")
    metrics["clean_gap"] = mean("clean", "gcn") - mean("clean", "stable")
    fig = _figure(metrics, present)
    return Result(
        metrics=metrics,
        figures=[ctx.savefig(fig, "stable.png")],
        tables={"accuracy": rows, "chosen": chosen},
    )


def _graph(n_nodes: int, n_val: int, g: torch.Generator) -> Any:
    return citation_graph(
        n_nodes=n_nodes,
        avg_degree=4.0,
        homophily=0.8,
        n_words=1500,
        words_per_node=20,
        topic_size=40,
        topic_strength=0.5,
        n_subtopics=8,
        n_val=n_val,
        generator=g,
    )


def _compare(
    ctx: RunContext, data: Any, e: torch.Tensor, name: str, seed: int, g: torch.Generator
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train GCN and STABLE on the graph ``e``; test accuracies and STABLE's choices."""
    from torchloom.gnn.stable import STABLE
    from torchloom.gnn.training import train_node_classifier

    x, y = data.x, data.y
    tr, va, te = data.train_mask, data.val_mask, data.test_mask
    torch.manual_seed(seed)
    gcn = GCN(x.shape[1], 64, 2, int(y.max()) + 1, dropout=0.5)
    train_node_classifier(gcn, x, e, y, tr, va, ctx.pick(100, 200))
    with torch.no_grad():
        acc_gcn = float((gcn(x, e).argmax(1) == y)[te].float().mean())
    attacked = name != "clean"
    torch.manual_seed(seed)
    model = STABLE(
        jaccard_threshold=0.03 if attacked else 0.0,
        t1=(0.1, 0.3),
        k=7 if attacked else 1,
        alpha=0.6 if attacked else -0.5,
        use_embeddings=(True, False),
        embed_dim=ctx.pick(64, 128),
        embed_epochs=ctx.pick(100, 300),
        epochs=ctx.pick(100, 200),
    ).fit(x, e, y, tr, va, generator=g)
    acc_st = float((model.predict() == y)[te].float().mean())
    return {"attack": name, "gcn": acc_gcn, "stable": acc_st}, dict(model.chosen)


def _deeprobust_rows(ctx: RunContext, chosen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """GCN vs STABLE under DeepRobust's Metattack on one 300-node graph (skipped without
    DeepRobust)."""
    try:
        from torchloom.gnn.peers import deeprobust_metattack, load_deeprobust

        load_deeprobust()
    except ImportError:
        ctx.log("DeepRobust not installed: no Metattack peer row")
        return []
    g = torch.Generator().manual_seed(ctx.seed + 100)
    data = _graph(300, 60, g)
    budget = int(0.2 * data.edge_index.shape[1] // 2)
    e = deeprobust_metattack(
        data.x, data.edge_index, data.y, data.train_mask, budget, train_iters=50, seed=ctx.seed
    )
    row, pick = _compare(ctx, data, e, "dr_metattack", ctx.seed + 100, g)
    chosen.append({"seed": 100, "attack": "dr_metattack", **pick})
    ctx.log(f"DeepRobust Metattack: GCN {row['gcn']:.3f}  STABLE {row['stable']:.3f}")
    return [{"seed": 100, **row}]


def _figure(metrics: dict[str, float], attacks: list[str]) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    xs = np.arange(len(attacks))
    for i, m in enumerate(("gcn", "stable")):
        vals = [metrics[f"acc_{m}_{a}"] for a in attacks]
        ax.bar(xs + (i - 0.5) * 0.35, vals, width=0.35, label=m.upper())
    labels = {"dr_metattack": "DeepRobust\nMetattack 20%"}
    ax.set_xticks(xs, [a if a == "clean" else labels.get(a, f"{a} 20%") for a in attacks])
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.4, 1.08)
    ax.legend(loc="upper left", ncol=2)
    ax.set_title("STABLE vs GCN under structure poisoning (generated citation graph)", fontsize=9)
    return fig
