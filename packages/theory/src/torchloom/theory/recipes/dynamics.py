"""Recipes: dynamics (see the package docstring of ``torchloom.theory.recipes``)."""

from __future__ import annotations

import torch

from torchloom.core.recipes import Claim, Result, RunContext, recipe
from torchloom.theory.grokking import (
    ModularMLP,
    modular_accuracy,
    modular_arithmetic,
    plot_grokking,
    prune_neurons,
    train_modular,
)

__all__: list[str] = ["grokking"]


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@recipe(
    name="theory.grokking",
    papers=(45,),
    claims=[
        Claim(
            "test_acc_weight_decay",
            ">=",
            0.95,
            paper="with weight decay the network generalises to 100% test accuracy (Fig. 1, 4)",
        ),
        Claim(
            "corrupted_train_acc_weight_decay",
            "<=",
            0.25,
            paper="weight decay makes the network ignore the corrupted labels: memorisation "
            "falls to ~0 (inversion phase, Fig. 4)",
        ),
        Claim(
            "corrupted_train_acc_no_regularisation",
            ">=",
            0.9,
            paper="without regularisation the corrupted labels are memorised (100%) while "
            "the test accuracy is high (coexistence phase, Fig. 1)",
        ),
        Claim(
            "pruning_corrupted_acc_change",
            "<=",
            -0.5,
            paper="pruning the low-IPR (memorising) neurons lowers the accuracy on corrupted "
            "examples (Fig. 3)",
        ),
        Claim(
            "pruning_test_acc_change",
            ">",
            0.0,
            paper="... and raises it on uncorrupted data (Fig. 3)",
        ),
    ],
)
def grokking(ctx: RunContext) -> Result:
    """Modular addition with corrupted labels: coexistence without regularisation, inversion
    with weight decay, and pruning of memorising (low-IPR) neurons (Doshi et al. 2024)."""
    g = ctx.generator
    p, xi, alpha = ctx.pick(41, 59), 0.15, ctx.pick(0.6, 0.5)
    width = ctx.pick(192, 384)
    steps = ctx.pick(400, 1500)
    every = ctx.pick(50, 100)
    wd = 8.0
    threshold = 0.4
    data = modular_arithmetic(p, "+", train_fraction=alpha, corrupt_fraction=xi, generator=g).to(
        ctx.device
    )
    runs = {"none": {"weight_decay": 0.0}, "weight_decay": {"weight_decay": wd}}
    if not ctx.quick:
        runs["dropout"] = {"weight_decay": 0.0, "dropout": 0.5}
        runs["batchnorm"] = {"weight_decay": 0.0, "batchnorm": True}
    nets: dict[str, ModularMLP] = {}
    hists = {}
    rows = []
    for name, cfg in ctx.progress(list(runs.items()), description="training"):
        net = ModularMLP(
            p,
            width,
            dropout=float(cfg.get("dropout", 0.0)),
            batchnorm=bool(cfg.get("batchnorm", False)),
            generator=g,
        ).to(ctx.device)
        hist = train_modular(
            net, data, steps=steps, weight_decay=float(cfg["weight_decay"]), record_every=every
        )
        nets[name], hists[name] = net, hist
        rows.append({"run": name, **hist.rows[-1]})

    # Prune the low-IPR neurons of the unregularised (coexistence) network.
    base = nets["none"]
    ipr = base.neuron_ipr()
    keep = ipr >= threshold
    before = modular_accuracy(base, data)
    after = modular_accuracy(prune_neurons(base, keep), data)
    prune_rows = [
        {"network": "unpruned", "neurons": base.width, **vars(before)},
        {"network": f"IPR >= {threshold}", "neurons": int(keep.sum()), **vars(after)},
    ]

    plt = _plt()
    n = len(runs)
    fig, axes = plt.subplots(1, n + 1, figsize=(4.2 * (n + 1), 3.6))
    for ax, name in zip(axes, runs):
        plot_grokking(hists[name], ax=ax, title=f"regulariser: {name}")
    ax = axes[-1]
    bins = torch.linspace(0, 1, 26).tolist()
    ax.hist(ipr.cpu().nan_to_num(0).tolist(), bins=bins, alpha=0.6, label="no regularisation")
    ax.hist(
        nets["weight_decay"].neuron_ipr().cpu().nan_to_num(0).tolist(),
        bins=bins,
        alpha=0.6,
        label=f"weight decay {wd}",
    )
    ax.axvline(threshold, color="k", ls="--", label="pruning threshold")
    ax.set_xlabel("per-neuron Fourier IPR")
    ax.set_title(
        f"pruning: corrupted {before.train_corrupted:.2f}->{after.train_corrupted:.2f}, "
        f"test {before.test:.2f}->{after.test:.2f}",
        fontsize=8,
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig_path = ctx.savefig(fig, "grokking.png")
    final = {name: h.rows[-1] for name, h in hists.items()}
    metrics = {
        "test_acc_weight_decay": final["weight_decay"]["test"],
        "corrupted_train_acc_weight_decay": final["weight_decay"]["train_corrupted"],
        "corrupted_true_label_acc_weight_decay": final["weight_decay"]["train_corrupted_true"],
        "test_acc_no_regularisation": final["none"]["test"],
        "corrupted_train_acc_no_regularisation": final["none"]["train_corrupted"],
        "pruning_corrupted_acc_change": after.train_corrupted - before.train_corrupted,
        "pruning_test_acc_change": after.test - before.test,
        "pruning_clean_train_acc_change": after.train_clean - before.train_clean,
        "pruned_fraction": 1.0 - float(keep.double().mean()),
    }
    for name in runs:
        if name not in ("none", "weight_decay"):
            metrics[f"test_acc_{name}"] = final[name]["test"]
            metrics[f"corrupted_train_acc_{name}"] = final[name]["train_corrupted"]
    return Result(
        metrics=metrics,
        figures=[fig_path],
        tables={"final": rows, "pruning": prune_rows},
        notes=[
            f"a + b mod {p}, train fraction {alpha}, {xi:.0%} corrupted labels, quadratic MLP "
            f"of width {width}, full-batch AdamW (lr 1e-2), MSE on one-hot targets, {steps} steps.",
            f"Pruning removes the neurons of the unregularised net with Fourier IPR < {threshold}.",
        ],
    )
