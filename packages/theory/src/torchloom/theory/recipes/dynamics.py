"""Recipes: dynamics (see the package docstring of ``torchloom.theory.recipes``)."""

from __future__ import annotations

import torch

from torchloom.core.data import digits
from torchloom.core.recipes import Claim, Result, RunContext, pyplot, recipe
from torchloom.theory.grokking import (
    ModularMLP,
    modular_accuracy,
    modular_arithmetic,
    plot_grokking,
    prune_neurons,
    train_modular,
)
from torchloom.theory.opposing_signals import (
    LossTracker,
    TwoLayerLinear,
    find_opposing_groups,
    gradient_cosine,
    group_loss_correlation,
    opposing_signals_toy,
    sharpness,
)

__all__: list[str] = ["grokking", "opposing_signals"]


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
    steps = ctx.pick(400, 1000)
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

    plt = pyplot()
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
            "Full mode also trains with dropout 0.5 and with BatchNorm after the quadratic "
            "activation (test_acc_*/corrupted_train_acc_* metrics, unclaimed): dropout inverts "
            "the corrupted labels as in the paper; this BatchNorm placement did not.",
        ],
    )


def _purity(found_a: torch.Tensor, found_b: torch.Tensor, true_a: torch.Tensor) -> float:
    """Fraction of the found examples assigned consistently with the true groups (best of
    the two labellings)."""
    a = set(found_a.tolist())
    b = set(found_b.tolist())
    t = set(true_a.tolist())
    n = len(a) + len(b)
    same = len(a & t) + len(b - t)
    return max(same, n - same) / n


@recipe(
    name="theory.opposing-signals",
    papers=(39,),
    claims=[
        Claim(
            "toy_group_loss_correlation",
            "<=",
            -0.5,
            paper="the two opposing groups' losses oscillate against each other (Fig. 1, 5)",
        ),
        Claim(
            "toy_loss_spike_ratio",
            ">=",
            1.1,
            paper="... until the overall loss spikes (Fig. 5, toy model Sec. 4)",
        ),
        Claim(
            "toy_outlier_vs_ordinary_loss_range_ratio",
            ">=",
            10.0,
            paper="the oscillation is carried by the outliers; ordinary examples barely move",
        ),
        Claim(
            "toy_detection_purity",
            ">=",
            0.75,
            paper="the groups can be identified from the loss changes alone (Sec. 2)",
        ),
        Claim(
            "image_detected_group_correlation",
            "<",
            0.0,
            paper="on images, the detected paired groups' losses are anti-correlated (Fig. 2)",
        ),
        Claim(
            "image_correlation_gap_vs_random_split",
            ">=",
            0.5,
            paper="random groups of the same examples co-move; the detected ones oppose",
        ),
    ],
)
def opposing_signals(ctx: RunContext) -> Result:
    """Opposing-signal outliers: the two-layer linear toy oscillates between the two groups
    and spikes; on 8x8 digits the detected groups' losses are anti-correlated
    (Rosenfeld & Risteski 2024)."""
    g = ctx.generator
    # ---- toy: two-layer linear net, full-batch GD, MSE.
    lr, steps = 0.3, ctx.pick(250, 400)
    toy = opposing_signals_toy(
        500, 10, alpha=7.0, outlier_fraction=0.1, noise=0.3, signal=0.3, generator=g
    )
    x, y = toy.x.to(ctx.device), toy.y.to(ctx.device)
    net = TwoLayerLinear(11, 50, init_scale=0.1, generator=g).to(ctx.device)
    tracker = LossTracker(net, x, y, "mse")
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    sharp_every = ctx.pick(10, 2)
    sharp_steps, sharp = [], []
    for t in ctx.progress(range(steps), description="toy"):
        tracker.record(t)
        if t % sharp_every == 0:
            sharp_steps.append(t)
            sharp.append(sharpness(net, x, y, "mse", iters=30, generator=g))
        opt.zero_grad()
        (0.5 * (net(x) - y) ** 2).mean().backward()
        opt.step()
    losses = tracker.losses.cpu()
    ga = (toy.group == 1).nonzero()[:, 0]
    gb = (toy.group == 2).nonzero()[:, 0]
    ordinary = (toy.group == 0).nonzero()[:, 0]
    toy_corr = group_loss_correlation(losses, ga, gb)
    total = losses.mean(1)
    runmin = total.cummin(0).values
    spike = float((total[1:] / runmin[:-1]).max())
    half = steps // 4  # after the initial fit

    def loss_range(idx: torch.Tensor) -> float:
        m = losses[half:, idx].mean(1)
        return float(m.max() - m.min())

    range_ratio = min(loss_range(ga), loss_range(gb)) / max(loss_range(ordinary), 1e-12)
    found = find_opposing_groups(losses, 40)
    purity = _purity(found.group_a, found.group_b, ga)

    # ---- small image net: MLP on 8x8 digits, full-batch GD at a large step size.
    split = digits()
    n_img = ctx.pick(700, split.x_train.shape[0])
    xi = split.x_train[:n_img].reshape(n_img, -1).float()
    xi = ((xi - xi.mean(0)) / (xi.std(0) + 1e-6)).to(ctx.device)
    yi = split.y_train[:n_img].to(ctx.device)
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
    mlp = torch.nn.Sequential(
        torch.nn.Linear(64, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    ).to(ctx.device)
    img_tracker = LossTracker(mlp, xi, yi)
    opt = torch.optim.SGD(mlp.parameters(), lr=1.5)
    snapshots = []
    for t in ctx.progress(range(ctx.pick(100, 300)), description="digits MLP"):
        img_tracker.record(t)
        snapshots.append(torch.nn.utils.parameters_to_vector(mlp.parameters()).detach().clone())
        opt.zero_grad()
        torch.nn.functional.cross_entropy(mlp(xi), yi).backward()
        opt.step()
    il = img_tracker.losses.cpu()
    k = 40
    groups = find_opposing_groups(il, k)
    rand = []
    for _ in range(50):
        perm = groups.selected[torch.randperm(k, generator=g)]
        rand.append(group_loss_correlation(il, perm[: k // 2], perm[k // 2 :]))
    rand_corr = sum(rand) / len(rand)
    a, b = groups.group_a.to(ctx.device), groups.group_b.to(ctx.device)
    # "Gradients which point in opposite directions throughout training": the median over
    # the trajectory of the cosine between the two groups' mean gradients.
    cosines = []
    for snap in snapshots[::2]:
        torch.nn.utils.vector_to_parameters(snap, mlp.parameters())
        cosines.append(gradient_cosine(mlp, xi[a], yi[a], xi[b], yi[b]))
    cos = float(torch.tensor(cosines).median())
    frac_negative = float((torch.tensor(cosines) < 0).double().mean())
    norm_sel = float(xi[groups.selected.to(ctx.device)].norm(dim=1).mean())
    norm_all = float(xi.norm(dim=1).mean())

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    ax.plot(losses[:, ga].mean(1), label="outliers, y=+1")
    ax.plot(losses[:, gb].mean(1), label="outliers, y=-1")
    ax.plot(losses[:, ordinary].mean(1), label="ordinary")
    ax.plot(total, "k--", lw=1, label="total")
    ax.set_yscale("log")
    ax.set_xlabel("GD step")
    ax.set_title(f"toy: group corr {toy_corr:.2f}, spike x{spike:.2f}")
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.plot(sharp_steps, sharp, label="sharpness (power iteration)")
    ax.axhline(2 / lr, color="k", ls="--", label="2 / lr")
    ax.set_xlabel("GD step")
    ax.set_title("toy: progressive sharpening to the edge of stability")
    ax.legend(fontsize=7)
    ax = axes[2]
    ax.plot(il[:, groups.group_a].mean(1), label=f"detected group a ({len(groups.group_a)})")
    ax.plot(il[:, groups.group_b].mean(1), label=f"detected group b ({len(groups.group_b)})")
    ax.plot(il.mean(1), "k--", lw=1, label="all")
    ax.set_yscale("log")
    ax.set_xlabel("GD step")
    ax.set_title(f"digits MLP: corr {groups.correlation:.2f} (random split {rand_corr:.2f})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig_path = ctx.savefig(fig, "opposing_signals.png")
    return Result(
        metrics={
            "toy_group_loss_correlation": toy_corr,
            "toy_loss_spike_ratio": spike,
            "toy_outlier_vs_ordinary_loss_range_ratio": range_ratio,
            "toy_detection_purity": purity,
            "toy_detected_group_correlation": found.correlation,
            "toy_max_sharpness_times_lr": max(sharp) * lr,
            "image_detected_group_correlation": groups.correlation,
            "image_random_split_correlation": rand_corr,
            "image_correlation_gap_vs_random_split": rand_corr - groups.correlation,
            "image_group_gradient_cosine_median": cos,
            "image_fraction_steps_opposing_gradients": frac_negative,
            "image_selected_feature_norm_ratio": norm_sel / norm_all,
        },
        figures=[fig_path],
        tables={
            "image_groups": [
                {"group": "a", "labels": sorted(yi[a].tolist())},
                {"group": "b", "labels": sorted(yi[b].tolist())},
            ]
        },
        notes=[
            "Toy: f = v^T W x, width 50, 500 points, 10% carry x_o = 7 independent of the label; "
            f"full-batch GD, lr {lr}, MSE.",
            f"Digits: MLP 64-128-128-10, standardised pixels, {n_img} images, full-batch GD lr "
            "1.5, cross-entropy; the 40 examples with the largest total loss variation are "
            "split by the leading principal component of their loss changes.",
            "Not claimed: the paper's opposing *gradients*. The median cosine between the two "
            "detected groups' mean parameter gradients over training was -0.25 with 700 images "
            "(quick) but +0.01 with all 1348 (full), so it is reported, not asserted.",
        ],
    )
