"""Reproductions of this package's papers, registered under ``torchloom.recipes``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from torchloom.core.recipes import Claim, Result, RunContext, pyplot, recipe
from torchloom.explain.counterfactual import (
    dice_counterfactuals,
    nearest_counterfactual,
    stability,
    trex,
)
from torchloom.explain.prototype import PrototypeLoss, PrototypeNetwork
from torchloom.explain.tell import TELLClustering

__all__ = ["counterfactual", "modes", "prototype", "tell"]


def cluster_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Best accuracy over one-to-one maps of clusters to labels (Hungarian matching)."""
    from scipy.optimize import linear_sum_assignment

    k = int(max(y.max(), pred.max())) + 1
    table = np.zeros((k, k), dtype=np.int64)
    np.add.at(table, (pred, y), 1)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(y))


@recipe(
    name="explain.tell",
    papers=(1,),
    claims=[
        Claim(
            "nmi_gap_vs_kmeans",
            "<=",
            0.02,
            paper="TELL matches or beats k-means NMI (Table 3); mean over blobs, digits",
        ),
        Claim(
            "acc_gap_vs_kmeans",
            "<=",
            0.02,
            paper="TELL matches or beats k-means ACC (Table 3); mean over blobs, digits",
        ),
        Claim(
            "online_gap",
            "<=",
            0.03,
            paper="online (mini-batch) TELL close to full-batch (Section 5.4)",
        ),
    ],
)
def tell(ctx: RunContext) -> Result:
    """TELL vs scikit-learn KMeans on blobs and digits (NMI, ACC), online vs full-batch TELL,
    and the digits cluster centres decoded into readable prototype images."""
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_digits, make_blobs
    from sklearn.metrics import normalized_mutual_info_score as nmi

    xb, yb = make_blobs(
        n_samples=ctx.pick(600, 3000), centers=5, cluster_std=1.0, random_state=ctx.seed
    )
    xd, yd = load_digits(return_X_y=True)
    sets = {
        "blobs": (xb.astype(np.float32), yb, {"autoencoder": False}),
        "digits": (
            (xd / 16).astype(np.float32),
            yd,
            {"autoencoder": True, "pretrain_epochs": ctx.pick(12, 60), "epochs": ctx.pick(6, 30)},
        ),
    }
    rows: list[dict[str, Any]] = []
    models = {}
    for name in ctx.progress(list(sets), description="datasets"):
        x, y, kw = sets[name]
        k = len(np.unique(y))
        km = KMeans(k, n_init=10, random_state=ctx.seed).fit(x)
        full = TELLClustering(k, random_state=ctx.seed, **kw).fit(x)  # type: ignore[arg-type]
        models[name] = full
        # online: the autoencoder is pretrained, then centres and network learn only from a
        # stream of mini-batches through partial_fit (the first batch initialises the centres)
        online = TELLClustering(k, random_state=ctx.seed, **kw)  # type: ignore[arg-type]
        online.pretrain(x)
        rng = np.random.default_rng(ctx.seed)
        for _ in range(ctx.pick(3, 10)):
            for idx in np.array_split(rng.permutation(len(x)), max(1, len(x) // 128)):
                online.partial_fit(x[idx])
        preds = {"kmeans": km.labels_, "tell": full.predict(x), "tell_online": online.predict(x)}
        row: dict[str, Any] = {"dataset": name}
        for m, p in preds.items():
            row[f"{m}_nmi"] = float(nmi(y, p))
            row[f"{m}_acc"] = cluster_accuracy(y, p)
        rows.append(row)
        ctx.log(
            f"{name}: NMI kmeans {row['kmeans_nmi']:.3f} TELL {row['tell_nmi']:.3f} "
            f"online {row['tell_online_nmi']:.3f}"
        )
    metrics = {
        "nmi_gap_vs_kmeans": float(np.mean([r["kmeans_nmi"] - r["tell_nmi"] for r in rows])),
        "acc_gap_vs_kmeans": float(np.mean([r["kmeans_acc"] - r["tell_acc"] for r in rows])),
        "online_gap": float(np.mean([r["tell_nmi"] - r["tell_online_nmi"] for r in rows])),
        "digits_nmi_tell": rows[1]["tell_nmi"],
        "digits_nmi_kmeans": rows[1]["kmeans_nmi"],
    }
    figures = [ctx.savefig(_prototype_figure(models["digits"].prototypes_), "tell_prototypes.png")]
    return Result(metrics=metrics, figures=figures, tables={"clustering": rows})


def _prototype_figure(protos: np.ndarray) -> Any:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(protos), figsize=(1.2 * len(protos), 1.5))
    for i, (ax, p) in enumerate(zip(np.atleast_1d(axes), protos)):
        ax.imshow(p.reshape(8, 8), cmap="gray_r")
        ax.set_title(f"c{i}", fontsize=8)
        ax.axis("off")
    fig.suptitle("TELL centres decoded to input space (digits)")
    return fig


@recipe(
    name="explain.prototype",
    papers=(40,),
    claims=[
        Claim(
            "acc_gap_vs_cnn",
            "<=",
            0.03,
            paper="prototype network within ~1 point of a plain CNN on MNIST (Section 4.1)",
        ),
    ],
)
def prototype(ctx: RunContext) -> Result:
    """Prototype network vs a plain CNN with the same encoder on digits; decoded prototypes."""
    import torch
    from torch import nn

    from torchloom.core.data import digits

    data = digits(seed=ctx.seed)
    xtr, ytr, xte, yte = data.x_train, data.y_train, data.x_test, data.y_test
    epochs = ctx.pick(15, 150)
    torch.manual_seed(ctx.seed)
    proto = PrototypeNetwork(10, n_prototypes=15, image_size=8, code=16)
    cnn_base = PrototypeNetwork(10, n_prototypes=15, image_size=8, code=16)
    cnn = nn.Sequential(cnn_base.encoder, nn.Sigmoid(), nn.Linear(16, 10))
    loss_fn = PrototypeLoss()
    opt_p = torch.optim.Adam(proto.parameters(), lr=3e-3)
    opt_c = torch.optim.Adam(cnn.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(ctx.seed)
    history: list[dict[str, Any]] = []
    for epoch in ctx.progress(range(epochs), description="epochs"):
        for idx in torch.randperm(len(xtr), generator=g).split(64):
            opt_p.zero_grad()
            loss, parts = loss_fn(proto, xtr[idx], ytr[idx])
            loss.backward()
            opt_p.step()
            opt_c.zero_grad()
            nn.functional.cross_entropy(cnn(xtr[idx]), ytr[idx]).backward()
            opt_c.step()
        history.append({"epoch": epoch, **parts})
    with torch.no_grad():
        acc_p = float((proto(xte).argmax(1) == yte).float().mean())
        acc_c = float((cnn(xte).argmax(1) == yte).float().mean())
    ctx.log(f"prototype network {acc_p:.3f}  plain CNN {acc_c:.3f}")
    figures = [ctx.savefig(_decoded_figure(proto), "prototypes_decoded.png")]
    return Result(
        metrics={
            "acc_prototype": acc_p,
            "acc_cnn": acc_c,
            "acc_gap_vs_cnn": acc_c - acc_p,
            "final_r1": history[-1]["r1"],
            "final_r2": history[-1]["r2"],
        },
        figures=figures,
        tables={
            "accuracy": [
                {"model": "prototype network", "acc": acc_p},
                {"model": "plain CNN", "acc": acc_c},
            ],
            "training": history,
        },
    )


def _decoded_figure(model: PrototypeNetwork) -> Any:
    import matplotlib.pyplot as plt

    protos = model.decode_prototypes()
    w = model.classifier.weight.detach()
    fig, axes = plt.subplots(1, len(protos), figsize=(1.1 * len(protos), 1.6))
    for j, ax in enumerate(np.atleast_1d(axes)):
        ax.imshow(protos[j, 0].numpy(), cmap="gray_r")
        ax.set_title(f"p{j}→{int(w[:, j].argmax())}", fontsize=7)
        ax.axis("off")
    fig.suptitle("decoded prototypes (→ class whose weight on −distance is largest)")
    return fig


def _mlp_prob(x: Any, y: Any, hidden: int, seed: int, epochs: int) -> Any:
    """A small MLP classifier; returns ``m(x) = P(class 1 | x)`` as a frozen function."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(net(x)[:, 0], y).backward()
        opt.step()
    for prm in net.parameters():
        prm.requires_grad_(False)
    return lambda z: torch.sigmoid(net(z)[:, 0])


@recipe(
    name="explain.counterfactual",
    papers=(8,),
    claims=[
        Claim(
            "validity_gain",
            ">=",
            0.20,
            paper="T-Rex keeps counterfactuals valid under model changes far more often than "
            "plain ones (Tables 1-2)",
        ),
        Claim("distance_ratio", "<=", 3.0, paper="at a modest increase in distance (Tables 1-2)"),
        Claim("trex_reached_tau", ">=", 0.95, paper="T-Rex reaches the stability threshold"),
    ],
)
def counterfactual(ctx: RunContext) -> Result:
    """Nearest (minimum-distance, Wachter-path) counterfactuals vs T-Rex robust counterfactuals
    on breast-cancer data: validity under retrained models (new seeds, bootstrap resamples, other
    widths) and distance cost; DiCE (genetic, when ``dice-ml`` is installed) side by side on the
    same model, data and queries (time, validity, distance; reported, not checked)."""
    import torch
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    xn, yn = load_breast_cancer(return_X_y=True)
    x = torch.tensor(StandardScaler().fit_transform(xn), dtype=torch.float32)
    y = torch.tensor(yn, dtype=torch.float32)
    epochs = ctx.pick(150, 400)
    base = _mlp_prob(x, y, 32, ctx.seed, epochs)
    with torch.no_grad():
        neg = torch.nonzero(base(x) < 0.5).squeeze(1)[: ctx.pick(40, 200)]
    x0 = x[neg]
    sigma, tau = 0.3, 0.7
    t_start = time.perf_counter()
    # Wachter's (m - 1)^2 has no gradient where the MLP is saturated (m ~ 1e-19 for most
    # queries): only 16 % of them got a counterfactual. -log m keeps the path finding them.
    cf, valid = nearest_counterfactual(base, x0, steps=ctx.pick(100, 300), prediction_loss="log")
    res = trex(base, cf, tau=tau, sigma=sigma, k=ctx.pick(64, 256), generator=ctx.generator)
    trex_seconds = (time.perf_counter() - t_start) / len(x0)
    # DiCE (optional peer, genetic method), same model and data: in quick mode on the first 5
    # queries that have a nearest / T-Rex counterfactual, in full mode on every query
    order = torch.cat([torch.nonzero(valid).squeeze(1), torch.nonzero(~valid).squeeze(1)])
    dice_idx = order[: ctx.pick(5, len(x0))]
    n_dice = len(dice_idx)
    dice = None
    try:
        dice = dice_counterfactuals(base, x, x0[dice_idx], method="genetic", seed=ctx.seed)
    except ImportError:
        ctx.log("dice-ml is not installed: the DiCE side-by-side rows are missing")
    g = torch.Generator().manual_seed(ctx.seed + 1)
    rows: list[dict[str, Any]] = []
    changes = [
        ("seed", 32),
        ("seed", 32),
        ("bootstrap", 32),
        ("bootstrap", 32),
        ("width", 16),
        ("width", 64),
    ]
    with torch.no_grad():
        # DiCE counterfactuals that are valid on the model they were computed for
        dice_ok = dice.found & (base(dice.x) > 0.5) if dice is not None else None
        # the queries both methods answered: the side-by-side subset
        both = dice_ok & valid[dice_idx] if dice_ok is not None else None
    for i, (kind, hidden) in enumerate(ctx.progress(changes, description="retrained models")):
        if kind == "bootstrap":
            idx = torch.randint(0, len(x), (len(x),), generator=g)
            m = _mlp_prob(x[idx], y[idx], hidden, ctx.seed + 100 + i, epochs)
        else:
            m = _mlp_prob(x, y, hidden, ctx.seed + 100 + i, epochs)
        with torch.no_grad():
            row: dict[str, Any] = {
                "model": f"{kind}-{i}",
                "hidden": hidden,
                "valid_nearest": float((m(cf[valid]) > 0.5).float().mean()),
                "valid_trex": float((m(res.x[valid]) > 0.5).float().mean()),
            }
            if dice is not None and both is not None and bool(both.any()):
                trex_sub = res.x[dice_idx][both]
                row["valid_trex_dice_queries"] = float((m(trex_sub) > 0.5).float().mean())
                row["valid_dice"] = float((m(dice.x[both]) > 0.5).float().mean())
                row["valid_dice_all"] = float((m(dice.x[dice_ok]) > 0.5).float().mean())
            rows.append(row)
    d_n = (cf[valid] - x0[valid]).norm(dim=1).mean()
    d_t = (res.x[valid] - x0[valid]).norm(dim=1).mean()
    with torch.no_grad():
        stab_n = stability(base, cf[valid], sigma, 256, generator=ctx.generator).mean()
    metrics = {
        "validity_nearest": float(np.mean([r["valid_nearest"] for r in rows])),
        "validity_trex": float(np.mean([r["valid_trex"] for r in rows])),
        "distance_nearest": float(d_n),
        "distance_trex": float(d_t),
        "distance_ratio": float(d_t / d_n),
        "stability_nearest": float(stab_n),
        "trex_reached_tau": float(res.reached[valid].float().mean()),
        "wachter_found": float(valid.float().mean()),
    }
    metrics["validity_gain"] = metrics["validity_trex"] - metrics["validity_nearest"]
    metrics["trex_seconds_per_instance"] = trex_seconds
    if dice is not None and dice_ok is not None and both is not None and n_dice > 0:
        # reported only (never a checked claim): dice-ml is an optional peer
        dice_seconds = dice.seconds / n_dice
        metrics["dice_seconds_per_instance"] = dice_seconds
        metrics["time_ratio_dice_over_trex"] = dice_seconds / trex_seconds
        # validity on the original model over the same queries (T-Rex needs a nearest one first)
        metrics["dice_validity_original"] = float(dice_ok.float().mean())
        with torch.no_grad():
            trex_ok = valid[dice_idx] & (base(res.x[dice_idx]) > 0.5)
        metrics["trex_validity_original_dice_queries"] = float(trex_ok.float().mean())
        metrics["dice_queries"] = float(n_dice)
        metrics["both_answered"] = float(both.sum())
        if bool(both.any()):
            xq = x0[dice_idx][both]
            d_d = (dice.x[both] - xq).norm(dim=1).mean()
            d_tq = (res.x[dice_idx][both] - xq).norm(dim=1).mean()
            metrics["dice_validity_retrained"] = float(np.mean([r["valid_dice"] for r in rows]))
            metrics["dice_validity_retrained_all"] = float(
                np.mean([r["valid_dice_all"] for r in rows])
            )
            metrics["trex_validity_retrained_dice_queries"] = float(
                np.mean([r["valid_trex_dice_queries"] for r in rows])
            )
            metrics["dice_distance"] = float(d_d)
            metrics["trex_distance_dice_queries"] = float(d_tq)
            metrics["distance_ratio_dice_over_trex"] = float(d_d / d_tq)
        ctx.log(
            f"DiCE (genetic) on {n_dice} queries: valid {metrics['dice_validity_original']:.2f} "
            f"(T-Rex {metrics['trex_validity_original_dice_queries']:.2f}); on the "
            f"{int(both.sum())} both answered, under retraining "
            f"{metrics.get('dice_validity_retrained', float('nan')):.2f} "
            f"(T-Rex {metrics.get('trex_validity_retrained_dice_queries', float('nan')):.2f}), "
            f"distance ×{metrics.get('distance_ratio_dice_over_trex', float('nan')):.2f} of "
            f"T-Rex's, {dice_seconds:.3f} s/instance (T-Rex {trex_seconds:.4f} s, batched)"
        )
    ctx.log(
        f"validity under retraining: nearest {metrics['validity_nearest']:.2f}, "
        f"T-Rex {metrics['validity_trex']:.2f}; distance ×{metrics['distance_ratio']:.2f}"
    )
    fig = _validity_figure(rows)
    return Result(
        metrics=metrics,
        figures=[ctx.savefig(fig, "counterfactual_validity.png")],
        tables={"validity": rows},
        notes=[
            "The plain baseline is the minimum-distance counterfactual on Wachter et al.'s path, "
            "same model. DiCE (dice-ml, genetic method through a predict_proba wrapper of the "
            "same model) is reported side by side on the first queries when it is installed "
            "(metrics dice_*; reported only, not checked). T-Rex time is per instance of a "
            "batched run (nearest counterfactual + T-Rex), DiCE time per instance of its loop."
        ],
    )


def _validity_figure(rows: list[dict[str, Any]]) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    pos = np.arange(len(rows))
    has_dice = all("valid_dice" in r for r in rows)
    w = 0.27 if has_dice else 0.4
    ax.bar(
        pos - w / 2 * (2 if has_dice else 1), [r["valid_nearest"] for r in rows], w, label="nearest"
    )
    ax.bar(pos + (0 if has_dice else w / 2), [r["valid_trex"] for r in rows], w, label="T-Rex")
    if has_dice:
        ax.bar(pos + w, [r["valid_dice"] for r in rows], w, label="DiCE (genetic)")
    ax.set_xticks(pos, [r["model"] for r in rows], rotation=30, fontsize=7)
    ax.set_ylabel("validity under retrained model")
    ax.legend()
    return fig


@recipe(
    name="explain.modes",
    papers=(2,),
    claims=[
        Claim(
            "grounding_accuracy",
            ">=",
            0.85,
            paper="GLiDE (Wang et al. 2024): mode classifiers learned from a few demonstrations "
            "and counterfactual perturbations ground the plan's modes without dense labels "
            "(issue: accuracy >= 0.85)",
        ),
        Claim(
            "accuracy_gain_vs_demos_only",
            ">",
            0.0,
            paper="GLiDE ablation: without the perturbed (counterfactual) replays the mode "
            "boundaries are not identified",
        ),
        Claim(
            "policy_success_gain_vs_bc",
            ">",
            0.0,
            paper="GLiDE: the mode-based reactive policy recovers from perturbations more often "
            "than behaviour cloning",
            quick=False,
        ),
    ],
)
def modes(ctx: RunContext) -> Result:
    """GLiDE on a 2D four-mode navigation task: grounding accuracy and perturbed policy success."""
    from torchloom.explain.modes import (
        ModePolicy,
        ModeWorld,
        NearestNeighbourBC,
        Trajectories,
        fit_modes,
        rollout,
    )

    world = ModeWorld(seed=ctx.seed, step=0.05)
    g = torch.Generator().manual_seed(ctx.seed)
    demos = world.demonstrations(4, g)
    n_pert, steps, restarts = ctx.pick(200, 600), ctx.pick(150, 600), ctx.pick(1, 3)
    pert = world.perturb(demos, n_pert, g, sigma=0.2)
    demo_batch = world.as_batch(demos)
    data = Trajectories.cat([demo_batch, pert])
    models = {}
    for name, train in (("glide", data), ("demos_only", demo_batch)):
        fit_gen = torch.Generator().manual_seed(ctx.seed + 1)
        models[name], _ = fit_modes(
            train, world.feasible, 0, 3, steps=steps, restarts=restarts, generator=fit_gen
        )
        ctx.log(f"trained {name} on {len(train)} trajectories")

    # grounding accuracy on held-out perturbed replays (states around the demonstrations) and
    # on a grid over the whole square
    held = world.perturb(demos, 200, torch.Generator().manual_seed(ctx.seed + 2), sigma=0.2)
    near = held.states[held.mask]
    xs = torch.linspace(0.01, 0.99, 50)
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), dim=-1).reshape(-1, 2)
    metrics: dict[str, float] = {"perturbation_success_rate": float(pert.success.float().mean())}
    with torch.no_grad():
        for name, m in models.items():
            metrics[f"accuracy_{name}"] = float(
                (m(near).argmax(-1) == world.modes(near)).float().mean()
            )
            metrics[f"grid_accuracy_{name}"] = float(
                (m(grid).argmax(-1) == world.modes(grid)).float().mean()
            )
    metrics["grounding_accuracy"] = metrics["accuracy_glide"]
    metrics["accuracy_gain_vs_demos_only"] = (
        metrics["accuracy_glide"] - metrics["accuracy_demos_only"]
    )

    # reactive policy from the grounded modes vs nearest-neighbour behaviour cloning, each run
    # pushed once at a random step
    goal = torch.stack([d[-1] for d in demos]).mean(0)
    policies: dict[str, Callable[[Tensor], Tensor]] = {
        "modes": ModePolicy(models["glide"], demos, world.plan, world.step),
        "bc": NearestNeighbourBC(demos),
    }
    n_runs = ctx.pick(30, 200)
    pg = torch.Generator().manual_seed(ctx.seed + 3)
    runs = []
    for _ in range(n_runs):
        start = demos[int(torch.randint(0, len(demos), (1,), generator=pg))][0]
        push_at = int(torch.randint(2, 30, (1,), generator=pg))
        push = 0.2 * torch.randn(2, generator=pg)
        runs.append((start, push_at, push))
    paths: dict[str, list[Tensor]] = {}
    for name, policy in policies.items():
        paths[name] = [rollout(policy, s, goal, t, p, max_steps=120) for s, t, p in runs]
        ok = [world.succeeds(tr) and float((tr[-1] - goal).norm()) <= 0.05 for tr in paths[name]]
        metrics[f"policy_success_{name}"] = sum(ok) / n_runs
    metrics["policy_success_gain_vs_bc"] = (
        metrics["policy_success_modes"] - metrics["policy_success_bc"]
    )
    ctx.log(
        f"grounding accuracy: GLiDE {metrics['accuracy_glide']:.3f}, demos only "
        f"{metrics['accuracy_demos_only']:.3f}; policy success under pushes: modes "
        f"{metrics['policy_success_modes']:.2f}, BC {metrics['policy_success_bc']:.2f}"
    )

    plt = pyplot()

    fig, axes = plt.subplots(1, 4, figsize=(16, 4.2))
    with torch.no_grad():
        panels = [
            ("true modes", world.modes(grid)),
            ("GLiDE (demos + counterfactuals)", models["glide"](grid).argmax(-1)),
            ("demonstrations only", models["demos_only"](grid).argmax(-1)),
        ]
    for ax, (title, lab) in zip(axes, panels):
        ax.scatter(grid[:, 0], grid[:, 1], c=lab, cmap="tab10", vmin=0, vmax=9, s=6)
        for d in demos:
            ax.plot(d[:, 0], d[:, 1], "k-", lw=0.8)
        ax.set_title(title)
    for i in range(min(len(pert), 80)):
        tr = pert.states[i][pert.mask[i]]
        axes[3].plot(tr[:, 0], tr[:, 1], "g-" if pert.success[i] else "r-", lw=0.5)
    axes[3].set_title("perturbed replays (green success, red failure)")
    for ax in axes:
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
    figure = ctx.savefig(fig, "modes_grounding.png")
    rows: list[dict[str, float | str]] = [
        {
            "classifier": name,
            "accuracy_near_demos": metrics[f"accuracy_{name}"],
            "accuracy_grid": metrics[f"grid_accuracy_{name}"],
        }
        for name in models
    ]
    return Result(
        metrics=metrics,
        figures=[figure],
        tables={"grounding": rows},
        notes=[
            f"4 demonstrations, {n_pert} perturbed replays (sigma 0.2) labelled only by success",
            f"{restarts} restart(s) x {steps} Adam steps after a 100-step equal-time-segment "
            "warm-up (the same for both classifiers)",
            f"policies: {n_runs} runs from demo starts, one N(0, 0.2^2) push at step 2-29",
        ],
    )
