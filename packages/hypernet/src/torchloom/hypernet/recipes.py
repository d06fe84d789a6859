"""Reproductions of this package's papers, registered under ``torchloom.recipes``."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchloom.core.data import digits
from torchloom.core.recipes import Claim, Result, RunContext, recipe
from torchloom.hypernet.hypernetize import HyperTarget, hypernetize
from torchloom.hypernet.mip import Formulation, MIPHyperNetwork
from torchloom.hypernet.neumeta import (
    NeuMeta,
    fit_neumeta,
    permute_for_smoothness,
    weighted_reconstruction_loss,
)

__all__ = ["mip", "neumeta"]

_WINDOW = 20  # moving-average window for the training-loss curves


def _smooth(curve: torch.Tensor, window: int = _WINDOW) -> torch.Tensor:
    return curve.unfold(0, window, 1).mean(-1)


def _norm_spread(h: MIPHyperNetwork, device: torch.device) -> float:
    """max/min of ‖θ(γ)‖ over γ ∈ [0.01, 1]: 1 means magnitude invariant (the paper's point)."""
    with torch.no_grad():
        g = torch.linspace(0.01, 1.0, 64, device=device).unsqueeze(-1)
        n = h(g).norm(dim=-1)
    return float(n.max() / n.min())


def _smoothness(x_hat: torch.Tensor) -> torch.Tensor:
    """Mean squared spatial gradient of 8×8 images (HyperMorph's ``‖∇φ‖²`` on the output).

    Shapes: ``x_hat`` is ``(..., 64)``; returns ``(...)``.
    """
    im = x_hat.reshape(*x_hat.shape[:-1], 8, 8)
    dx = (im[..., :, 1:] - im[..., :, :-1]).pow(2).mean((-1, -2))
    dy = (im[..., 1:, :] - im[..., :-1, :]).pow(2).mean((-1, -2))
    return dx + dy


def _weighted_loss(x_hat: torch.Tensor, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """HyperMorph-style loss per network, ``(1 − γ)·reconstruction + γ·smoothness``.

    Shapes: ``x_hat`` is ``(k, B, 64)``, ``x`` ``(B, 64)``, ``gamma`` ``(k, 1)``; returns ``(k,)``.
    """
    rec = (x_hat - x).pow(2).mean((-1, -2))
    reg = _smoothness(x_hat).mean(-1)
    g = gamma[:, 0]
    return (1 - g) * rec + g * reg


def _autoencoder() -> nn.Sequential:
    """The primary network: a 64-64-32-64-64 LeakyReLU(0.2) autoencoder of 8×8 digits
    (VoxelMorph/HyperMorph's activation; four predicted layers, 12512 weights)."""
    widths = (64, 64, 32, 64, 64)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers[:-1])


def _train(
    formulation: Formulation,
    seed: int,
    steps: int,
    data: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
    lr: float = 1e-3,
    k: int = 4,
    batch: int = 64,
    own_init: bool = False,
) -> tuple[torch.Tensor, float, float]:
    """Train one hypernetwork over the loss weighting γ; returns (loss curve, init norm
    spread, test loss averaged over a γ grid). ``own_init``: MIP's θ₀ is the autoencoder's
    own (PyTorch default) initialisation, via ``from_existing``, instead of Kaiming."""
    x_tr, x_te = data
    torch.manual_seed(seed)
    init_gen = torch.Generator().manual_seed(seed)
    target: HyperTarget = hypernetize(_autoencoder().to(device))
    if own_init:
        h = MIPHyperNetwork.from_existing(target, 1, hidden=(32, 32), generator=init_gen)
    else:
        h = MIPHyperNetwork(target, 1, hidden=(32, 32), formulation=formulation, generator=init_gen)
    h = h.to(device)
    spread = _norm_spread(h, device)
    opt = torch.optim.Adam(h.parameters(), lr=lr)
    # the same minibatches and γ draws for both formulations: only the parametrization
    # differs between the two curves
    data_gen = torch.Generator().manual_seed(10_000 + seed)
    losses = torch.empty(steps)
    for s in range(steps):
        idx = torch.randint(0, len(x_tr), (batch,), generator=data_gen).to(device)
        gamma = torch.rand(k, 1, generator=data_gen).to(device)  # γ ~ U(0, 1), k per step
        x = x_tr[idx]
        loss = _weighted_loss(target(h(gamma), x), x, gamma).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses[s] = loss.detach().cpu()
    with torch.no_grad():
        g = torch.linspace(0.0, 1.0, 5, device=device).unsqueeze(-1)
        test = float(_weighted_loss(target(h(g), x_te), x_te, g).mean())
    return losses, spread, test


def _train_noise(
    formulation: Formulation,
    seed: int,
    steps: int,
    data: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
    lr: float = 1e-3,
    k: int = 4,
    batch: int = 64,
) -> torch.Tensor:
    """The earlier sessions' task, kept as a reported comparison: a hypernetwork over the
    input-noise std γ of a 64-32-10 digits classifier (γ changes the data, not the loss);
    returns the training-loss curve."""
    x_tr, y_tr = data
    torch.manual_seed(seed)
    init_gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).to(device)
    target: HyperTarget = hypernetize(net)
    h = MIPHyperNetwork(target, 1, hidden=(32, 32), formulation=formulation, generator=init_gen).to(
        device
    )
    opt = torch.optim.Adam(h.parameters(), lr=lr)
    data_gen = torch.Generator().manual_seed(10_000 + seed)
    losses = torch.empty(steps)
    for s in range(steps):
        idx = torch.randint(0, len(x_tr), (batch,), generator=data_gen)
        gamma = torch.rand(k, 1, generator=data_gen)
        noise = torch.randn(k, batch, x_tr.shape[1], generator=data_gen)
        gamma, noise, idx = gamma.to(device), noise.to(device), idx.to(device)
        x = x_tr[idx] + gamma[:, :, None] * noise  # (k, B, 64): γ-strength augmentation
        logits = target(h(gamma), x, batched_inputs=True)
        loss = F.cross_entropy(logits.reshape(-1, 10), y_tr[idx].repeat(k))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses[s] = loss.detach().cpu()
    return losses


def _mean(v: list[float]) -> float:
    return float(sum(v) / len(v))


def _curve_metrics(
    curves: dict[tuple[float, str], list[torch.Tensor]], lrs: tuple[float, ...]
) -> dict[str, float]:
    """Convergence and variance metrics of MIP vs default training-loss curves.

    ``curves[(lr, formulation)]`` holds one ``(steps,)`` curve per seed, seeds in the same
    order for both formulations; the first learning rate is the main one.
    """
    ratios, final_ratios, rough, early = [], [], [], []
    for a, b in zip(curves[(lrs[0], "mip")], curves[(lrs[0], "default")]):
        sa, sb = _smooth(a), _smooth(b)
        at = max(len(a) // 6 - _WINDOW, 0)
        early.append(float(sa[at] / sb[at]))
        hit = (sa <= sb[-1]).nonzero()
        # steps (counting the window) MIP needs to reach the default's final smoothed loss
        ratios.append((int(hit[0]) + _WINDOW) / len(a) if len(hit) else float("inf"))
        final_ratios.append(float(sa[-1] / sb[-1]))
        # curve roughness: spread of step-to-step changes over the second half
        half = len(a) // 2
        rough.append(float(a[half:].diff().std() / b[half:].diff().std()))

    def seed_std(lr: float, form: str) -> float:
        """Across-seed std of the smoothed training-loss curve, averaged over the steps
        (the paper's shaded band around its mean curves)."""
        return float(torch.stack([_smooth(c) for c in curves[(lr, form)]]).std(0).mean())

    def seed_cv(lr: float, form: str) -> float:
        """Across-seed std of the smoothed curve over its across-seed mean, step-averaged."""
        sm = torch.stack([_smooth(c) for c in curves[(lr, form)]])
        return float((sm.std(0) / sm.mean(0)).mean())

    def lr_spread(form: str, final: bool = False) -> float:
        """Std over learning rates of the seed-averaged mean (or final smoothed) training
        loss: how much the convergence depends on the learning rate."""
        per_lr = [
            _mean([float(_smooth(c)[-1] if final else c.mean()) for c in curves[(lr, form)]])
            for lr in lrs
        ]
        return float(torch.tensor(per_lr).std())

    m = {
        "steps_ratio": _mean(ratios),
        "steps_ratio_worst": max(ratios),
        "final_loss_ratio": _mean(final_ratios),
        "early_loss_ratio": _mean(early),
        "roughness_ratio": _mean(rough),
        "seed_std_mip": seed_std(lrs[0], "mip"),
        "seed_std_default": seed_std(lrs[0], "default"),
        "seed_std_ratio": seed_std(lrs[0], "mip") / seed_std(lrs[0], "default"),
        "seed_cv_ratio": seed_cv(lrs[0], "mip") / seed_cv(lrs[0], "default"),
    }
    if len(lrs) > 1:
        m["seed_std_ratio_all_lr"] = _mean(
            [seed_std(lr, "mip") / seed_std(lr, "default") for lr in lrs]
        )
        m["lr_spread_mip"] = lr_spread("mip")
        m["lr_spread_default"] = lr_spread("default")
        m["lr_spread_ratio"] = lr_spread("mip") / lr_spread("default")
        m["lr_spread_final_ratio"] = lr_spread("mip", final=True) / lr_spread("default", final=True)
        for lr in lrs:
            for form in ("mip", "default"):
                runs = curves[(lr, form)]
                m[f"mean_loss_{form}_lr{lr:g}"] = _mean([float(c.mean()) for c in runs])
                m[f"final_loss_{form}_lr{lr:g}"] = _mean([float(_smooth(c)[-1]) for c in runs])
    return m


@recipe(
    name="hypernet.mip",
    papers=(30,),
    claims=[
        Claim(
            "norm_spread_mip",
            "<=",
            1.1,
            paper="MIP removes the proportionality ‖θ(γ)‖ ∝ ‖γ‖ (Sec. 4, Fig. 2)",
        ),
        Claim(
            "norm_spread_ratio",
            "<",
            1.0,
            paper="the default formulation's weight magnitude follows its input (Sec. 3)",
        ),
        Claim(
            "final_loss_ratio",
            "<=",
            1.02,
            paper="MIP ends at equal or lower training loss (Fig. 4)",
            quick=False,
        ),
        Claim(
            "test_loss_ratio",
            "<=",
            1.02,
            paper="MIP models generalise at least as well (Sec. 5)",
            quick=False,
        ),
        Claim(
            "steps_ratio",
            "<=",
            0.6,
            paper="MIP converges faster: it reaches the default's final training loss in "
            "<= 0.6x the steps, mean over 3 seeds (Fig. 4; issue #9)",
            quick=False,
        ),
        Claim(
            "lr_spread_ratio",
            "<",
            1.0,
            paper="MIP's convergence is less sensitive to the learning rate than the default's "
            "(abstract: default hypernetworks' convergence is 'very sensitive to hyperparameter "
            "choices'); std over lr in {3e-4, 1e-3, 3e-3} of the seed-mean training loss, "
            "MIP/default",
            quick=False,
        ),
        Claim(
            "seed_std_ratio",
            "<",
            1.0,
            paper="MIP's training loss curve has lower variance (Fig. 4; issue #9): mean over "
            "steps of the across-seed std of the smoothed training loss, MIP/default, lr 1e-3",
            quick=False,
        ),
    ],
)
def mip(ctx: RunContext) -> Result:
    """MIP vs the default hypernetwork on a loss-weighted digits autoencoder.

    A hypernetwork maps the loss weighting γ ∈ [0, 1] to all 12512 weights of a
    64-64-32-64-64 LeakyReLU autoencoder trained with HyperMorph's loss
    ``(1 − γ)·‖x̂ − x‖² + γ·‖∇x̂‖²`` (reconstruction vs smoothness of the 8×8 output),
    γ ~ U(0, 1), 4 draws per step; both formulations see the same minibatches and γ draws, per
    seed. Measured: the initial weight-norm spread over γ, smoothed training-loss curves, the
    fraction of the default's steps MIP needs to reach the default's final loss
    (``steps_ratio``, worst seed ``steps_ratio_worst``), final-loss and test-loss ratios (test:
    the loss on held-out digits over γ ∈ {0, .25, .5, .75, 1}).

    The default is the paper's (and HyperLight's) default hypernetwork: raw input, Kaiming
    fan-out weights and zero biases, so its weight norm is exactly proportional to γ at
    initialisation (``norm_spread_default`` = 100 over γ ∈ [0.01, 1]).

    Variance, measured two ways side by side: across seeds (``seed_std_ratio``: the mean over
    steps of the across-seed std of the smoothed curves, MIP/default, at lr 1e-3;
    ``seed_cv_ratio`` the same std divided by the across-seed mean curve;
    ``seed_std_ratio_all_lr`` averages the std ratio over the learning rates) and across
    learning rates (full mode repeats the runs at lr 3e-4 and 3e-3; ``lr_spread_ratio``: std
    over the three learning rates of the seed-mean training loss, MIP/default;
    ``lr_spread_final_ratio`` the same on the final smoothed loss).

    Full mode also reruns the earlier task — γ the input-noise std of a 64-32-10 digits
    classifier, where γ changes the data, not the loss — with the same seeds, steps and
    learning rates, reported with the prefix ``noise_``, and an ablation of MIP's θ₀
    initialisation — the autoencoder's own PyTorch init (``from_existing``) instead of
    Kaiming — against the same default runs, prefixed ``own_init_``.
    """
    import matplotlib.pyplot as plt

    split = digits(flatten=True, seed=ctx.seed)
    dev = ctx.device
    data = (split.x_train.to(dev), split.x_test.to(dev))
    seeds = [ctx.seed + i for i in range(ctx.pick(2, 3))]
    steps = ctx.pick(60, 600)
    # the claims' runs are at lr 1e-3; full mode repeats them at two more learning rates to
    # measure the sensitivity to this hyperparameter (the paper's "unstable" training)
    lrs = ctx.pick((1e-3,), (1e-3, 3e-4, 3e-3))
    curves: dict[tuple[float, str], list[torch.Tensor]] = {}
    spreads: dict[str, list[float]] = {"mip": [], "default": []}
    tests: dict[str, list[float]] = {"mip": [], "default": []}
    rows = []
    jobs = [(lr, s, f) for lr in lrs for s in seeds for f in ("mip", "default")]
    for lr, seed, form in ctx.progress(jobs, total=len(jobs), description="hypernet.mip"):
        curve, spread, test = _train(form, seed, steps, data, dev, lr=lr)  # type: ignore[arg-type]
        curves.setdefault((lr, form), []).append(curve)
        if lr == lrs[0]:
            spreads[form].append(spread)
            tests[form].append(test)
        rows.append(
            {
                "lr": lr,
                "seed": seed,
                "formulation": form,
                "init_norm_spread": spread,
                "mean_train_loss": float(curve.mean()),
                "final_train_loss": float(_smooth(curve)[-1]),
                "test_loss": test,
            }
        )

    metrics = {
        "norm_spread_mip": _mean(spreads["mip"]),
        "norm_spread_default": _mean(spreads["default"]),
        "norm_spread_ratio": _mean(spreads["mip"]) / _mean(spreads["default"]),
        **_curve_metrics(curves, lrs),
        "test_loss_ratio": _mean(tests["mip"]) / _mean(tests["default"]),
        "test_loss_mip": _mean(tests["mip"]),
        "test_loss_default": _mean(tests["default"]),
        "steps": float(steps),
        "seeds": float(len(seeds)),
    }
    ctx.log(f"autoencoder task: {metrics}")
    if not ctx.quick:
        # the earlier sessions' task (γ = input-noise std of a classifier), reported side by
        # side with the same seeds, steps and learning rates; prefixed ``noise_``
        noise_curves: dict[tuple[float, str], list[torch.Tensor]] = {}
        noise_data = (split.x_train.to(dev), split.y_train.to(dev))
        for lr, seed, form in ctx.progress(jobs, total=len(jobs), description="noise task"):
            noise_curves.setdefault((lr, form), []).append(
                _train_noise(form, seed, steps, noise_data, dev, lr=lr)  # type: ignore[arg-type]
            )
        noise = _curve_metrics(noise_curves, lrs)
        ctx.log(f"noise-classifier task: {noise}")
        metrics.update({f"noise_{k}": v for k, v in noise.items()})
        # ablation (reported, not claimed): MIP with θ₀ set to the autoencoder's own PyTorch
        # initialisation (``from_existing``) against the same default runs
        own: dict[tuple[float, str], list[torch.Tensor]] = {
            key: runs for key, runs in curves.items() if key[1] == "default"
        }
        own_tests = []
        mip_jobs = [(lr, s) for lr in lrs for s in seeds]
        for lr, seed in ctx.progress(mip_jobs, total=len(mip_jobs), description="own init"):
            curve, _, test = _train("mip", seed, steps, data, dev, lr=lr, own_init=True)
            own.setdefault((lr, "mip"), []).append(curve)
            if lr == lrs[0]:
                own_tests.append(test)
        own_metrics = _curve_metrics(own, lrs)
        own_metrics["test_loss_ratio"] = _mean(own_tests) / _mean(tests["default"])
        ctx.log(f"MIP with the module's own init: {own_metrics}")
        metrics.update({f"own_init_{k}": v for k, v in own_metrics.items()})

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    for form, color in (("mip", "tab:blue"), ("default", "tab:orange")):
        for i, c in enumerate(curves[(lrs[0], form)]):
            x = torch.arange(_WINDOW, len(c) + 1)
            label = f"{form} (seed {seeds[i]})"
            ax.plot(x, _smooth(c), color=color, alpha=0.4 + 0.6 / (i + 1), label=label)
        # mean ± across-seed std per learning rate (the paper's presentation)
        for j, lr in enumerate(lrs):
            sm = torch.stack([_smooth(c) for c in curves[(lr, form)]])
            mu, sd = sm.mean(0), sm.std(0)
            x = torch.arange(_WINDOW, sm.shape[1] + _WINDOW)
            style = ("-", "--", ":")[j % 3]
            bx.plot(x, mu, style, color=color, label=f"{form}, lr {lr:g}")
            bx.fill_between(x, mu - sd, mu + sd, color=color, alpha=0.15)
    ax.set_xlabel("step")
    ax.set_ylabel(f"training loss ({_WINDOW}-step mean)")
    ax.set_title(f"lr {lrs[0]:g}, one curve per seed")
    ax.legend(fontsize=7)
    bx.set_xlabel("step")
    bx.set_title(f"mean ± std over {len(seeds)} seeds")
    bx.legend(fontsize=7)
    fig.suptitle("MIP vs default hypernetwork, digits autoencoder, γ = loss weighting")
    path = ctx.savefig(fig, "mip_vs_default.png")
    plt.close(fig)
    notes = [
        "default = the paper's default hypernetwork init (Kaiming fan-out, zero biases): "
        "weight norm proportional to gamma at init",
        "task: HyperMorph-style loss weighting (1 - gamma) * reconstruction + gamma * "
        "smoothness of a 4-layer digits autoencoder; steps_ratio is the first crossing of "
        "the default's final smoothed loss",
    ]
    return Result(metrics=metrics, figures=[path], tables={"runs": rows}, notes=notes)


def _train_mlp(
    width: int, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int
) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(x.shape[1], width), nn.ReLU(), nn.Linear(width, 10)).to(x.device)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=g).to(x.device)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def _accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((net(x).argmax(-1) == y).float().mean())


def _neumeta_one_seed(
    ctx: RunContext, seed: int, width: int, *, with_raw: bool, all_widths: bool
) -> dict[str, Any]:
    """One NeuMeta run on the digits split of ``seed``: pretrain, permute, fit the INR's
    reconstruction (also to the raw network when ``with_raw``), train it over widths and test
    the sampled networks (every width when ``all_widths``, else 25% only)."""
    split = digits(flatten=True, seed=seed)
    dev = ctx.device
    x_tr, y_tr = split.x_train.to(dev), split.y_train.to(dev)
    x_te, y_te = split.x_test.to(dev), split.y_test.to(dev)
    inr_hidden = ctx.pick(32, 128)
    recon_steps = ctx.pick(200, 600)
    fit_steps = ctx.pick(40, 9000)
    full = _train_mlp(width, x_tr, y_tr, ctx.pick(300, 800), seed)
    perm, _ = permute_for_smoothness(full)
    acc_full = _accuracy(full, x_te, y_te)

    recon: dict[str, float] = {}
    hypers: dict[str, NeuMeta] = {}
    targets = [("permuted", perm), ("raw", full)] if with_raw else [("permuted", perm)]
    for name, target in ctx.progress(targets, total=len(targets), description="INR fit"):
        torch.manual_seed(seed)
        h = NeuMeta(
            64, 10, depth=1, max_width=width, min_width=width // 4, hidden=inr_hidden, num_freqs=7
        ).to(dev)
        fit_neumeta(
            h,
            None,
            None,
            ce_weight=0.0,
            steps=recon_steps,
            pretrained=target,
            lr=3e-3,
            reg_weight=0.0,
            generator=torch.Generator().manual_seed(seed),
        )
        with torch.no_grad():
            recon[name] = float(
                weighted_reconstruction_loss(h.weights(width), dict(h.named_targets(target)))
            )
        hypers[name] = h
        ctx.log(f"seed {seed}: reconstruction loss ({name}): {recon[name]:.3g}")

    h = hypers["permuted"]
    # ablation (not the paper's method): the same pre-fitted INR trained without coordinate
    # noise, same draws of widths and minibatches
    h_clean = copy.deepcopy(h)
    fits: dict[str, list[float]] = {}
    for name, model, noise in (("noise", h, 1.0), ("no_noise", h_clean, 0.0)):
        fits[name] = fit_neumeta(
            model,
            x_tr,
            y_tr,
            steps=fit_steps,
            pretrained=perm,
            lr=1e-3,
            noise=noise,
            warmup=fit_steps // 10,
            ema_decay=ctx.pick(0.9, 0.995),
            generator=torch.Generator().manual_seed(seed + 1),
            progress=lambda n: iter(ctx.progress(range(n), total=n, description="NeuMeta")),
        )
    losses = fits["noise"]
    w25 = width // 4
    acc_no_noise = _accuracy(h_clean.sample(w25), x_te, y_te)
    acc_no_noise_full = _accuracy(h_clean.sample(width), x_te, y_te)
    fractions = ctx.pick((4, 8), (4, 5, 6, 8)) if all_widths else ()  # in eighths of W
    widths = sorted({width * f // 8 for f in (2, *fractions)})
    rows: list[dict[str, float]] = []
    for w in widths:
        # the clean coordinates (K = 1) or the mean of K = 10 noisy draws: chosen per width
        # on the training set, never on the test set
        draws = {
            k: h.sample(w, samples=k, generator=torch.Generator().manual_seed(w)) for k in (1, 10)
        }
        k_best = max(draws, key=lambda k: _accuracy(draws[k], x_tr, y_tr))
        first, last = nn.Linear(64, w).to(dev), nn.Linear(w, 10).to(dev)
        p0, p2 = perm[0], perm[2]
        assert isinstance(p0, nn.Linear) and isinstance(p2, nn.Linear)
        with torch.no_grad():
            first.weight.copy_(p0.weight[:w])
            first.bias.copy_(p0.bias[:w])
            last.weight.copy_(p2.weight[:, :w])
            last.bias.copy_(p2.bias)
        truncated = nn.Sequential(first, nn.ReLU(), last)
        own = _train_mlp(w, x_tr, y_tr, ctx.pick(150, 800), seed)
        rows.append(
            {
                "seed": seed,
                "width": w,
                "neumeta": _accuracy(draws[k_best], x_te, y_te),
                "neumeta_k": k_best,
                "neumeta_k1": _accuracy(draws[1], x_te, y_te),
                "neumeta_k10": _accuracy(draws[10], x_te, y_te),
                "neumeta_train": _accuracy(draws[k_best], x_tr, y_tr),
                "truncated": _accuracy(truncated, x_te, y_te),
                "trained_alone": _accuracy(own, x_te, y_te),
            }
        )
        ctx.log(f"seed {seed}, width {w}: {rows[-1]}")
    r25 = rows[0]
    summary = {
        "seed": float(seed),
        "acc_full": acc_full,
        "acc_25": r25["neumeta"],
        "gap_25": acc_full - r25["neumeta"],
        "acc_25_k1": r25["neumeta_k1"],
        "acc_25_k10": r25["neumeta_k10"],
        "k_25": float(r25["neumeta_k"]),
        "acc_25_train": r25["neumeta_train"],
        "acc_25_truncated": r25["truncated"],
        "acc_25_trained_alone": r25["trained_alone"],
        "final_train_loss": float(sum(losses[-50:]) / len(losses[-50:])),
        "acc_25_no_noise": acc_no_noise,
        "gap_25_no_noise": acc_full - acc_no_noise,
        "acc_25_no_noise_train": _accuracy(h_clean.sample(w25), x_tr, y_tr),
        "acc_full_width_no_noise": acc_no_noise_full,
    }
    return {"recon": recon, "rows": rows, "summary": summary}


@recipe(
    name="hypernet.neumeta",
    papers=(52,),
    claims=[
        Claim(
            "recon_ratio",
            "<",
            1.0,
            paper="permuting channels along a shortest Hamiltonian path makes the weights "
            "easier for the INR to fit (Sec. 4.1, Table 6)",
        ),
        Claim(
            "gap_25",
            "<=",
            0.03,
            paper="at 75% compression NeuMeta stays close to the full network (Table 1); "
            "mean over 3 seeds (data split, pretraining and INR)",
            quick=False,
        ),
    ],
)
def neumeta(ctx: RunContext) -> Result:
    """NeuMeta on digits: one INR gives 64-w-10 MLPs for every width w from 25% to 100%.

    A 64-W-10 ReLU MLP is trained on digits and permuted for smoothness. Two INRs with the
    same initialisation fit its weights by the weighted reconstruction loss alone, one to the
    permuted and one to the raw network (``recon_ratio``: final permuted/raw loss). Then the
    permuted INR is trained by :func:`fit_neumeta` over widths ``[W/4, W]`` (warm-up, cosine
    decay, EMA of the INR) and several widths are sampled — from the clean coordinates or as
    the mean of K = 10 noisy draws, whichever is more accurate on the training set — and
    tested. ``gap_25`` is full-network accuracy minus the accuracy at 25% width, averaged
    over 3 seeds in full mode (each seed its own data split, pretrained network and INR;
    ``gap_25_worst`` and ``gap_25_seed<k>`` report the spread). Baselines at each width: the
    pretrained network truncated to its first ``w`` permuted units (no retraining) and an
    independently trained network of that width. Ablation (reported, not the paper's
    method): the same pre-fitted INR trained without coordinate noise (``gap_25_no_noise``,
    clean coordinates).
    """
    import matplotlib.pyplot as plt

    width = ctx.pick(32, 64)
    seeds = ctx.pick([ctx.seed], [ctx.seed + i for i in range(3)])
    recon: dict[str, float] = {}
    rows: list[dict[str, float]] = []
    per_seed: list[dict[str, float]] = []
    for i, seed in enumerate(seeds):
        first = i == 0
        out = _neumeta_one_seed(ctx, seed, width, with_raw=first, all_widths=first)
        if first:  # the smoothing comparison (permuted vs raw) is run on the first seed
            recon = out["recon"]
        rows += out["rows"]
        per_seed.append(out["summary"])
        ctx.log(f"seed {seed}: {out['summary']}")

    def mean(key: str) -> float:
        return float(sum(r[key] for r in per_seed) / len(per_seed))

    metrics = {
        "recon_permuted": recon["permuted"],
        "recon_raw": recon["raw"],
        "recon_ratio": recon["permuted"] / recon["raw"],
        "acc_full": mean("acc_full"),
        "acc_25": mean("acc_25"),
        "gap_25": mean("gap_25"),
        "gap_25_worst": max(r["gap_25"] for r in per_seed),
        "acc_25_k1": mean("acc_25_k1"),
        "acc_25_k10": mean("acc_25_k10"),
        "acc_25_truncated": mean("acc_25_truncated"),
        "acc_25_trained_alone": mean("acc_25_trained_alone"),
        "final_train_loss": mean("final_train_loss"),
        "acc_25_train": mean("acc_25_train"),
        "gap_25_no_noise": mean("gap_25_no_noise"),
        "acc_25_no_noise_train": mean("acc_25_no_noise_train"),
        "acc_full_width_no_noise": mean("acc_full_width_no_noise"),
        "max_width": float(width),
        "seeds": float(len(seeds)),
    }
    for r in per_seed:
        metrics[f"gap_25_seed{int(r['seed'])}"] = r["gap_25"]
        metrics[f"gap_25_no_noise_seed{int(r['seed'])}"] = r["gap_25_no_noise"]
    first_rows = [r for r in rows if r["seed"] == seeds[0]]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, style in (("neumeta", "o-"), ("truncated", "s--"), ("trained_alone", "^:")):
        ax.plot([r["width"] for r in first_rows], [r[key] for r in first_rows], style, label=key)
    ax.axhline(per_seed[0]["acc_full"], color="gray", lw=0.8, label="full network")
    for r in per_seed[1:]:
        ax.plot([width // 4], [r["acc_25"]], "o", color="tab:blue", alpha=0.5)
    ax.set_xlabel("hidden width")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"NeuMeta: one INR, networks of every width (digits, seed {seeds[0]})")
    ax.legend(fontsize=8)
    path = ctx.savefig(fig, "neumeta_widths.png")
    plt.close(fig)
    return Result(metrics=metrics, figures=[path], tables={"widths": rows, "seeds": per_seed})
