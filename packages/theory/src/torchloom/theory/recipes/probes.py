"""Recipes: probes of learned representations — representational geometry (#50), the
information plane (#51) and convergent learning (#36)."""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

import torch
from torch import nn

from torchloom.core.recipes import Claim, Result, RunContext, recipe
from torchloom.theory.geometry import (
    aligned_cluster_task,
    linear_cka,
    rsa,
    task_alignment,
    train_one_hidden_layer,
)
from torchloom.theory.info_plane import InfoPlaneTracker, plot_info_plane, twelve_bit_task

__all__: list[str] = ["geometry", "info_plane"]


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@recipe(
    name="theory.geometry",
    papers=(50,),
    claims=[
        Claim(
            "target_alignment_gap",
            ">",
            0.0,
            paper="tanh hidden layers reflect the target structure more than ReLU ones "
            "(Alleman et al. 2024, Figs. 1-2): mean over alpha of CKA(h, y)[tanh] - [relu]",
        ),
        Claim(
            "input_alignment_gap",
            ">",
            0.0,
            paper="ReLU hidden layers retain more of the input structure: mean over alpha of "
            "CKA(h, x)[relu] - [tanh]",
        ),
        Claim(
            "frac_alpha_both_signs",
            ">=",
            0.75,
            paper="the ordering holds across the family of input/label alignments",
        ),
    ],
)
def geometry(ctx: RunContext) -> Result:
    """One-hidden-layer tanh vs ReLU nets on :func:`aligned_cluster_task` across the alignment
    ``alpha``: linear CKA of the trained hidden layer with the targets and with the inputs
    (same tasks and seeds for both nonlinearities; logistic loss, no biases)."""
    alphas = ctx.pick([0.0, 0.1, 0.2], [0.0, 0.05, 0.1, 0.2, 0.3, 0.5])
    seeds = ctx.pick(2, 6)
    steps = ctx.pick(1000, 2000)
    acts: tuple[Literal["tanh", "relu"], ...] = ("tanh", "relu")
    ta: dict[str, list[float]] = {a: [] for a in acts}
    ia: dict[str, list[float]] = {a: [] for a in acts}
    rsa_t: dict[str, list[float]] = {a: [] for a in acts}
    task_cka: list[float] = []
    rows = []
    for alpha in ctx.progress(alphas, description="alignment alpha"):
        sums = {a: [0.0, 0.0, 0.0] for a in acts}
        for s in range(seeds):
            task = aligned_cluster_task(alpha, 8, 30, 5, 0.05, generator=ctx.generator)
            for a in acts:
                net = train_one_hidden_layer(
                    task,
                    a,
                    width=100,
                    steps=steps,
                    lr=0.5,
                    seed=s,
                    loss="bce",
                    bias=False,  # type: ignore[arg-type]
                )
                t_al, i_al = task_alignment(net.hidden, task)
                sums[a][0] += t_al / seeds
                sums[a][1] += i_al / seeds
                sums[a][2] += rsa(net.hidden, task.y, method="pearson") / seeds
        task_cka.append(linear_cka(task.x, task.y))
        for a in acts:
            ta[a].append(sums[a][0])
            ia[a].append(sums[a][1])
            rsa_t[a].append(sums[a][2])
        rows.append(
            {
                "alpha": alpha,
                "task_input_target_cka": task_cka[-1],
                **{f"target_cka_{a}": sums[a][0] for a in acts},
                **{f"input_cka_{a}": sums[a][1] for a in acts},
                **{f"target_rsa_{a}": sums[a][2] for a in acts},
            }
        )
        ctx.log(str(rows[-1]))
    n = len(alphas)
    t_gap = [ta["tanh"][i] - ta["relu"][i] for i in range(n)]
    i_gap = [ia["relu"][i] - ia["tanh"][i] for i in range(n)]
    both = sum(1 for i in range(n) if t_gap[i] > 0 and i_gap[i] > 0) / n

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for a, c in (("tanh", "C0"), ("relu", "C3")):
        axes[0].plot(alphas, ta[a], "o-", color=c, label=a)
        axes[1].plot(alphas, ia[a], "o-", color=c, label=a)
    axes[1].plot(alphas, task_cka, "k--", label="CKA(x, y) of the task")
    axes[0].set(xlabel="input/label alignment alpha", ylabel="CKA(hidden, targets)")
    axes[1].set(xlabel="input/label alignment alpha", ylabel="CKA(hidden, inputs)")
    axes[0].legend()
    axes[1].legend()
    fig.suptitle("one hidden layer, logistic loss: tanh mirrors targets, ReLU keeps inputs")
    fig.tight_layout()
    return Result(
        metrics={
            "target_alignment_gap": sum(t_gap) / n,
            "input_alignment_gap": sum(i_gap) / n,
            "frac_alpha_both_signs": both,
            "target_rsa_gap": sum(rsa_t["tanh"][i] - rsa_t["relu"][i] for i in range(n)) / n,
        },
        figures=[ctx.savefig(fig, "geometry.png")],
        tables={"per_alpha": rows},
    )


@recipe(
    name="theory.info-plane",
    papers=(51,),
    claims=[
        Claim(
            "fitting_bits",
            ">",
            0.5,
            paper="fitting phase: I(X;T) of the last hidden layer first rises "
            "(Shwartz-Ziv & Tishby 2017, Fig. 3)",
        ),
        Claim(
            "compression_bits",
            ">",
            0.2,
            paper="compression phase: I(X;T) of the last hidden layer then falls while "
            "I(T;Y) keeps rising (Fig. 3, main result (i))",
        ),
        Claim(
            "label_info_gain_bits",
            ">",
            0.5,
            paper="the layers gain information about the label, I(T;Y) -> H(Y)",
        ),
        Claim(
            "peak_epoch_fraction",
            "<",
            0.5,
            paper="most training epochs are spent in the compression phase (result (i))",
        ),
    ],
)
def info_plane(ctx: RunContext) -> Result:
    """The paper's 12-10-7-5-4-3-2 tanh net on the 12-bit task (85% of the 4096 patterns for
    training, cross-entropy, Adam on minibatches); I(X;T) and I(T;Y) of every hidden layer by
    binning each unit into 30 bins of [-1, 1], on all 4096 patterns, at log-spaced epochs."""
    x, y = twelve_bit_task()
    x, y = x.to(ctx.device), y.to(ctx.device)
    epochs = ctx.pick(150, 1000)
    batch = ctx.pick(512, 256)
    lr = ctx.pick(3e-3, 1e-3)
    seeds = ctx.pick(1, 2)
    n_rec = ctx.pick(18, 30)
    sizes = [12, 10, 7, 5, 4, 3]
    record_at = sorted({int(v) for v in torch.logspace(0, math.log10(epochs), n_rec)} | {epochs})
    g = ctx.generator
    per_seed: list[dict[str, float]] = []
    history: list[dict[str, Any]] = []
    for seed in range(seeds):
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), nn.Tanh()]
        model = nn.Sequential(*layers, nn.Linear(sizes[-1], 2)).to(ctx.device)
        with torch.no_grad():
            for m in model:
                if isinstance(m, nn.Linear):
                    # PyTorch's default uniform init, drawn from the run's generator.
                    bound = 1.0 / math.sqrt(m.in_features)
                    m.weight.copy_((torch.rand(m.weight.shape, generator=g) * 2 - 1) * bound)
                    m.bias.copy_((torch.rand(m.bias.shape, generator=g) * 2 - 1) * bound)
        tanhs = [m for m in model if isinstance(m, nn.Tanh)]
        names = [f"T{i + 1} ({sizes[i + 1]})" for i in range(len(tanhs))]
        train = torch.randperm(x.shape[0], generator=g)[: int(0.85 * x.shape[0])].to(ctx.device)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        with InfoPlaneTracker(
            model, dict(zip(names, tanhs, strict=True)), x, y, bin_range=(-1.0, 1.0)
        ) as trk:
            trk.record(0)
            for ep in ctx.progress(range(1, epochs + 1), description=f"seed {seed}: epochs"):
                order = train[torch.randperm(train.shape[0], generator=g).to(ctx.device)]
                for i in range(0, order.shape[0], batch):
                    idx = order[i : i + batch]
                    opt.zero_grad()
                    nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                    opt.step()
                if ep in record_at:
                    trk.record(ep)
            e, ixt, ity = trk.trajectory(names[-1])
            with torch.no_grad():
                acc = float((model(x).argmax(1) == y).double().mean())
            peak = int(ixt.argmax())
            per_seed.append(
                {
                    "fitting_bits": float(ixt[peak] - ixt[0]),
                    "compression_bits": float(ixt[peak] - ixt[-1]),
                    "label_info_gain_bits": float(ity[-1] - ity[0]),
                    "peak_epoch_fraction": float(e[peak] / e[-1]),
                    "accuracy": acc,
                }
            )
            ctx.log(f"seed {seed}: {per_seed[-1]}")
            if seed == 0:
                history = list(trk.history)
                last = (e, ixt, ity, names[-1])

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    plot_info_plane(history, ax=axes[0])
    e, ixt, ity, name = last
    axes[1].semilogx(e.clamp_min(0.5), ixt, "o-", label=f"I(X;T), {name}")
    axes[1].semilogx(e.clamp_min(0.5), ity, "s-", label=f"I(T;Y), {name}")
    axes[1].set(xlabel="epoch", ylabel="bits", title="last hidden layer: fitting, then compression")
    axes[1].legend()
    fig.tight_layout()
    metrics = {k: sum(r[k] for r in per_seed) / seeds for k in per_seed[0]}
    return Result(
        metrics=metrics,
        figures=[ctx.savefig(fig, "info_plane.png")],
        tables={"per_seed": [dict(r) for r in per_seed], "history_seed0": history},
    )
