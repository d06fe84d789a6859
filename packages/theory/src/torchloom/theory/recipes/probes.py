"""Recipes: probes of learned representations — representational geometry (#50), the
information plane (#51) and convergent learning (#36)."""

from __future__ import annotations

from typing import Literal

from torchloom.core.recipes import Claim, Result, RunContext, recipe
from torchloom.theory.geometry import (
    aligned_cluster_task,
    linear_cka,
    rsa,
    task_alignment,
    train_one_hidden_layer,
)

__all__: list[str] = ["geometry"]


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
