"""Recipes: limits (see the package docstring of ``torchloom.theory.recipes``)."""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from torchloom.core.recipes import Claim, Result, RunContext, pyplot, recipe
from torchloom.theory.it_bounds import gaussian_mixture_kl, layerwise_bounds, sdpi_gaussian
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

__all__: list[str] = ["it_bounds", "wide_deep"]


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

    plt = pyplot()
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


class _NoisyTanhMLP(nn.Module):
    """tanh MLP with Gaussian noise injected after every hidden layer (train and test)."""

    def __init__(self, d: int, width: int, depth: int, std: float) -> None:
        super().__init__()
        sizes = [d] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.head = nn.Linear(width, 2)
        self.std = std

    def centre(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """Noiseless output of hidden layer ``layer`` (1-based) given noisy earlier layers."""
        h = x
        for i, lin in enumerate(self.hidden, start=1):
            h = torch.tanh(lin(h))
            if i == layer:
                return h
            h = h + self.std * torch.randn_like(h)
        raise ValueError(f"layer must be in 1..{len(self.hidden)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for lin in self.hidden:
            h = torch.tanh(lin(h))
            h = h + self.std * torch.randn_like(h)
        out: torch.Tensor = self.head(h)
        return out


def _gaussian_task(
    n: int, d: int, mean: float, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, d, generator=g)
    x[:, 0] += mean * (2 * y - 1).float()
    return x, y


@recipe(
    name="theory.it-bounds",
    papers=(35,),
    claims=[
        Claim(
            "wasserstein_bound_minus_gap_min",
            ">=",
            0.0,
            paper="|gen| <= rho_k W_1(train_k, test_k) at every layer (Thm. 2)",
        ),
        Claim(
            "w1_funnel_is_interior",
            "==",
            1.0,
            paper="the W_1 distance is minimal at an intermediate 'generalisation funnel' "
            "layer (Sec. 3)",
        ),
        Claim(
            "funnel_bound_over_input_bound",
            "<",
            1.0,
            paper="bounds at deeper representations are tighter than at the input",
        ),
        Claim(
            "kl_bound_minus_gap_min",
            ">=",
            0.0,
            paper="|gen| <= sqrt(2 sigma^2 D_KL(train_k || test_k)), contracting with depth "
            "by the SDPI coefficient of a noisy layer (Thm. 1, Sec. 5)",
        ),
    ],
)
def it_bounds(ctx: RunContext) -> Result:
    """Layer-wise Wasserstein and KL generalisation bounds of small tanh networks on binary
    Gaussian classification, against the measured gap (He & Goldfeld 2024)."""
    g = ctx.generator
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
    d, depth, width = 20, 4, ctx.pick(32, 64)
    n_train, n_test = ctx.pick(100, 200), ctx.pick(2000, 5000)
    xtr, ytr = _gaussian_task(n_train, d, 0.5, g)
    xte, yte = _gaussian_task(n_test, d, 0.5, g)
    xtr, ytr, xte, yte = (t.to(ctx.device) for t in (xtr, ytr, xte, yte))
    steps = ctx.pick(500, 1500)

    # ---- deterministic tanh MLP: Wasserstein bound at every layer.
    mods: list[nn.Module] = []
    a = d
    for _ in range(depth):
        mods += [nn.Linear(a, width), nn.Tanh()]
        a = width
    mods.append(nn.Linear(a, 2))
    net = nn.Sequential(*mods).to(ctx.device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in ctx.progress(range(steps), description="deterministic net"):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xtr), ytr).backward()
        opt.step()
    b = layerwise_bounds(net, xtr, ytr, xte, yte, test_repeats=ctx.pick(3, 10), generator=g)
    w1_arg = min(range(len(b.w1)), key=lambda i: b.w1[i])
    interior = 1.0 if 0 < w1_arg < len(b.w1) - 1 else 0.0

    # ---- noise-injected net: KL bound via the first noisy layer and the SDPI chain.
    std = 1.0
    noisy_width = 16
    noisy = _NoisyTanhMLP(d, noisy_width, depth, std).to(ctx.device)
    opt = torch.optim.Adam(noisy.parameters(), lr=1e-3)
    for _ in ctx.progress(range(steps), description="noisy net"):
        opt.zero_grad()
        nn.functional.cross_entropy(noisy(xtr), ytr).backward()
        opt.step()
    reps = ctx.pick(20, 50)
    with torch.no_grad():
        err_tr = sum(float((noisy(xtr).argmax(1) != ytr).double().mean()) for _ in range(reps))
        err_te = sum(float((noisy(xte).argmax(1) != yte).double().mean()) for _ in range(reps))
        gap01 = (err_te - err_tr) / reps
        pi_tr = torch.bincount(ytr, minlength=2).double() / n_train
        pi_te = torch.bincount(yte, minlength=2).double() / n_test
        d1 = float((pi_tr * (pi_tr / pi_te).log()).sum())
        for c in (0, 1):
            d1 += float(pi_tr[c]) * gaussian_mixture_kl(
                noisy.centre(xtr[ytr == c], 1),
                noisy.centre(xte[yte == c], 1),
                std,
                samples=ctx.pick(2000, 10000),
                generator=g,
            )
    eta = sdpi_gaussian(math.sqrt(noisy_width), std)  # ||tanh(.)|| <= sqrt(width)
    kl_chain = [max(d1, 0.0) * eta**k for k in range(depth)]
    kl_bounds = [math.sqrt(2 * 0.25 * v) for v in kl_chain]  # 0-1 loss: sigma = 1/2

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    ax.semilogy(b.layers, b.wasserstein, "o-", label="rho_k W_1 bound")
    ax.semilogy(b.layers, b.w1, "s--", label="W_1(train_k, test_k)")
    ax.axhline(b.gap, color="k", ls=":", label=f"measured CE gap {b.gap:.2f}")
    ax.set_xlabel("layer index k in the Sequential")
    ax.set_title("Wasserstein bound per layer")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.plot(range(1, depth + 1), kl_bounds, "o-", label=f"KL bound (eta = {eta:.4f})")
    ax.axhline(gap01, color="k", ls=":", label=f"measured 0-1 gap {gap01:.3f}")
    ax.set_xlabel("noisy hidden layer")
    ax.set_ylim(0, None)
    ax.set_title("KL bound, Gaussian-noise network")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig_path = ctx.savefig(fig, "it_bounds.png")
    rows = [
        {"layer": k, "lipschitz": r, "w1": w, "bound": bd}
        for k, r, w, bd in zip(b.layers, b.lipschitz, b.w1, b.wasserstein)
    ]
    return Result(
        metrics={
            "ce_gap": b.gap,
            "wasserstein_bound_minus_gap_min": min(b.wasserstein) - b.gap,
            "funnel_layer": float(b.layers[b.funnel]),
            "w1_argmin_layer": float(b.layers[w1_arg]),
            "w1_funnel_is_interior": interior,
            "funnel_bound_over_input_bound": b.wasserstein[b.funnel] / b.wasserstein[0],
            "noisy_gap01": gap01,
            "kl_first_layer": d1,
            "sdpi_eta": eta,
            "kl_bound_minus_gap_min": min(kl_bounds) - gap01,
        },
        figures=[fig_path],
        tables={
            "wasserstein": rows,
            "kl": [{"layer": i + 1, "bound": v} for i, v in enumerate(kl_bounds)],
        },
        notes=[
            f"Binary Gaussian classification in R^{d} (means +-0.5 e_1), {n_train} training "
            f"points; tanh MLP depth {depth}, Adam, cross-entropy, {steps} steps.",
            "Wasserstein bounds use label-stratified test subsamples of the training size and "
            "exact optimal transport; rho_k = sqrt(2) prod ||W||_2 of the remaining layers.",
            "KL bound: D_KL at the first noisy layer by Monte Carlo on the Gaussian mixtures, "
            "deeper layers by the SDPI chain D_k <= eta^(k-1) D_1; 0-1 loss, sigma = 1/2.",
        ],
    )
