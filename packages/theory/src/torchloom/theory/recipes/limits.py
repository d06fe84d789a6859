"""Recipes: limits (see the package docstring of ``torchloom.theory.recipes``)."""

from __future__ import annotations

import torch

from torchloom.core.recipes import Claim, Result, RunContext, recipe
from torchloom.theory.wide_deep import (
    HermiteActivation,
    hermite_coefficients,
    koenigs_kernel,
    limit_classifier,
    majority_vote_classifier,
    nearest_neighbor_classifier,
    ntk_classifier,
    singular_activation,
    singular_kernel_classifier,
)

__all__: list[str] = ["wide_deep"]


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _sphere_data(
    n: int, dim: int, threshold: float, flip: float, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    y = (x[:, 0] > threshold).long()
    flipped = torch.rand(n, generator=g, dtype=torch.float64) < flip
    return x, torch.where(flipped, 1 - y, y)


def _acc(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a == b).double().mean())


@recipe(
    name="theory.wide-deep",
    papers=(21,),
    claims=[
        Claim(
            "agreement_majority_vote",
            ">=",
            0.95,
            paper="k(0) != 0: the infinitely deep NTK classifier is majority vote (Thm. 1)",
        ),
        Claim(
            "agreement_nearest_neighbor",
            ">=",
            0.95,
            paper="k(0) = k'(0) = 0: the infinitely deep NTK classifier is 1-NN (Thm. 1)",
        ),
        Claim(
            "agreement_singular_kernel",
            ">=",
            0.9,
            paper="0 < k'(0) < 1: a singular-kernel classifier (Thm. 1)",
        ),
        Claim(
            "min_agreement_gain_with_depth",
            ">=",
            0.2,
            paper="the classifiers are depth limits: agreement grows from depth 1 to deep",
        ),
        Claim(
            "singular_minus_1nn_accuracy",
            ">",
            0.03,
            paper="the explicit singular activation beats 1-NN on noisy labels "
            "(1-NN is not consistent; the singular kernel is, Sec. 4)",
        ),
        Claim(
            "singular_excess_error_drop",
            ">",
            0.0,
            paper="its excess error over the Bayes classifier shrinks as n grows",
            quick=False,
        ),
    ],
)
def wide_deep(ctx: RunContext) -> Result:
    """Taxonomy of infinitely wide and deep networks (majority vote / 1-NN / singular kernel)
    and the consistency of the explicit singular activation (Radhakrishnan et al. 2023)."""
    g = ctx.generator
    # ---- taxonomy: the depth-L NTK classifier approaches its predicted limit classifier.
    xtr, ytr = _sphere_data(ctx.pick(150, 300), 3, 0.3, 0.2, g)
    xte, yte = _sphere_data(ctx.pick(200, 500), 3, 0.3, 0.2, g)
    acts: dict[str, tuple[HermiteActivation, list[int]]] = {
        "majority_vote": (HermiteActivation.from_coefficients([0.5, 0.0, 1.0]), [1, 5, 20, 50]),
        "nearest_neighbor": (
            HermiteActivation.from_coefficients([0.0, 0.0, 1.0, 0.5]),
            [1, 3, 6, 9],
        ),
        "singular_kernel": (
            singular_activation(2.0),
            ctx.pick([1, 10, 50, 200], [1, 10, 50, 200, 400]),
        ),
    }
    rows = []
    curves: dict[str, tuple[list[int], list[float]]] = {}
    agreement: dict[str, float] = {}
    gains = []
    for name, (act, depths) in ctx.progress(list(acts.items()), description="taxonomy"):
        if act.limit_class != name:
            raise RuntimeError(f"{name}: activation classified as {act.limit_class}")
        lim = limit_classifier(xtr, ytr, xte, act)
        agr = []
        for depth in depths:
            pred = ntk_classifier(xtr, ytr, xte, activation=act, depth=depth)
            agr.append(_acc(pred, lim))
            rows.append(
                {
                    "class": name,
                    "depth": depth,
                    "agreement_with_limit": agr[-1],
                    "test_accuracy": _acc(pred, yte),
                }
            )
        curves[name] = (depths, agr)
        agreement[name] = agr[-1]
        gains.append(agr[-1] - agr[0])
    relu = hermite_coefficients(torch.relu, degree=30)
    relu_pred = ntk_classifier(xtr, ytr, xte, activation=relu, depth=50)
    relu_vs_majority = _acc(relu_pred, majority_vote_classifier(ytr, xte.shape[0]))

    # ---- optimality: on the circle (intrinsic dimension 1) with 20% label noise the Bayes
    # accuracy is 0.8; the explicit activation with singular kernel ||x - x'||^{-1} vs 1-NN.
    act = singular_activation(1.0)
    x_eval, y_eval = _sphere_data(ctx.pick(400, 1000), 2, 0.3, 0.2, g)
    sizes = ctx.pick([50, 500], [50, 200, 1000, 3000])
    opt_rows = []
    for n in ctx.progress(sizes, description="optimality"):
        xs, ys = _sphere_data(n, 2, 0.3, 0.2, g)
        s = singular_kernel_classifier(xs, ys, x_eval, lambda xi: koenigs_kernel(xi, act))
        nn1 = nearest_neighbor_classifier(xs, ys, x_eval)
        mv = majority_vote_classifier(ys, x_eval.shape[0])
        opt_rows.append(
            {
                "n": n,
                "singular": _acc(s, y_eval),
                "nearest_neighbor": _acc(nn1, y_eval),
                "majority_vote": _acc(mv, y_eval),
            }
        )
    bayes = 0.8
    first, last = opt_rows[0], opt_rows[-1]

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    for name, (depths, agr) in curves.items():
        ax.plot(depths, agr, "o-", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("depth L")
    ax.set_ylabel("agreement with the predicted limit")
    ax.set_title("infinite-width NTK classifier vs its depth limit")
    ax.legend()
    ax = axes[1]
    ns = [r["n"] for r in opt_rows]
    for key in ("singular", "nearest_neighbor", "majority_vote"):
        ax.plot(ns, [r[key] for r in opt_rows], "o-", label=key)
    ax.axhline(bayes, color="k", ls="--", label="Bayes")
    ax.set_xscale("log")
    ax.set_xlabel("training points")
    ax.set_ylabel("test accuracy")
    ax.set_title("circle, 20% label noise")
    ax.legend()
    fig.tight_layout()
    fig_path = ctx.savefig(fig, "wide_deep.png")
    return Result(
        metrics={
            "agreement_majority_vote": agreement["majority_vote"],
            "agreement_nearest_neighbor": agreement["nearest_neighbor"],
            "agreement_singular_kernel": agreement["singular_kernel"],
            "min_agreement_gain_with_depth": min(gains),
            "singular_accuracy": last["singular"],
            "nearest_neighbor_accuracy": last["nearest_neighbor"],
            "singular_minus_1nn_accuracy": last["singular"] - last["nearest_neighbor"],
            "singular_excess_error_drop": (bayes - first["singular"]) - (bayes - last["singular"]),
            "relu_depth50_agreement_with_majority": relu_vs_majority,
        },
        figures=[fig_path],
        tables={"taxonomy": rows, "optimality": opt_rows},
        notes=[
            "Activations (normalised Hermite coefficients): majority vote c = (0.5, 0, 1), "
            "1-NN c = (0, 0, 1, 0.5), singular: singular_activation(exponent) = sqrt(a) He_1 + "
            "sqrt(1-a) He_m/sqrt(m!).",
            "Taxonomy data: S^2, label 1{x_0 > 0.3} with 20% flips. Optimality data: the circle "
            "(intrinsic dimension 1, so the Hilbert-kernel exponent is 1); Bayes accuracy 0.8.",
            "Normalised ReLU has k(0) != 0 but k'(1) = 1 ('marginal'): no limit is asserted; "
            "relu_depth50_agreement_with_majority is reported for reference.",
        ],
    )
