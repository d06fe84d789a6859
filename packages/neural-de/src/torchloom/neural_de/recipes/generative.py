"""SDE-GAN (paper 26): a neural SDE generator learns the law of an SDE."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import Tensor

from torchloom.core.recipes import Claim, Result, RunContext, pyplot, recipe
from torchloom.neural_de.sde import (
    CDEDiscriminator,
    SDEGenerator,
    marginal_wasserstein,
    sde_gan_step,
)

__all__: list[str] = ["ou_paths", "sde_gan"]


def ou_paths(
    n: int,
    ts: Tensor,
    generator: torch.Generator,
    theta: float = 2.0,
    mu: float = 1.0,
    sigma: float = 0.5,
    x0_std: float = 0.3,
) -> Tensor:
    """Exact samples of the Ornstein-Uhlenbeck process ``dX = θ(μ − X) dt + σ dW``,
    ``X₀ ~ N(0, x0_std²)``, at the times ``ts`` ``(T,)``: ``(n, T, 1)``.

    ``X_{t+Δ} = μ + (X_t − μ)e^{−θΔ} + σ·sqrt((1 − e^{−2θΔ})/(2θ))·ξ`` (no discretisation error).

    Args:
        n: number of paths.
        ts: ``(T,)`` increasing times (the output takes its dtype and device).
        generator: source of the initial values and increments.
        theta: mean-reversion rate ``θ``.
        mu: long-run mean ``μ``.
        sigma: noise level ``σ``.
        x0_std: standard deviation of ``X₀`` (mean 0).

    Returns:
        ``(n, T, 1)`` paths.
    """
    x = x0_std * torch.randn(n, generator=generator)
    out = [x]
    for i in range(ts.shape[0] - 1):
        a = math.exp(-theta * float(ts[i + 1] - ts[i]))
        noise = torch.randn(n, generator=generator)
        x = mu + (x - mu) * a + sigma * math.sqrt((1 - a * a) / (2 * theta)) * noise
        out.append(x)
    return torch.stack(out, 1).unsqueeze(-1).to(ts)


def _path_covariance(y: Tensor) -> Tensor:
    """``(N, T, 1) -> (T, T)`` covariance of the path values across times."""
    v = y.squeeze(-1)
    v = v - v.mean(0)
    return v.T @ v / (v.shape[0] - 1)


def _train_sde_gan(
    ctx: RunContext,
    ts: Tensor,
    iters: int,
    batch: int,
    n_eval: int,
    penalty: float | None,
    seed: int,
) -> tuple[Tensor, Tensor, list[float], float]:
    """Train one SDE-GAN on OU paths; ``(untrained, trained)`` samples ``(n_eval, T, 1)``,
    the critic losses and the training CPU seconds. ``penalty``: WGAN-GP weight, or ``None``
    for the clipped critic; ``seed`` fixes the initialisation, data and noise draws."""
    torch.manual_seed(seed)
    gen = SDEGenerator(1, 4, 4, 16, width=32).to(ctx.device)
    with torch.no_grad():  # the vector fields start small (the authors' example: init_mult2)
        for p in gen.sde.parameters():
            p.mul_(0.5)
    disc = CDEDiscriminator(1, 16, width=32).to(ctx.device)
    if penalty is None:
        disc.clip_weights()

    def sample() -> Tensor:
        with torch.no_grad():
            return gen(ts, n_eval, generator=torch.Generator().manual_seed(seed + 2))

    untrained = sample()
    # full mode: the learning rates of the authors' torchsde example (generator 2e-4, critic
    # 1e-3); the short quick-mode smoke test needs larger steps (5e-4, 2e-3)
    lr_g, lr_d = ctx.pick((5e-4, 2e-3), (2e-4, 1e-3))
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr_g, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr_d, betas=(0.5, 0.9))
    data_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator().manual_seed(seed + 3)

    def step() -> float:
        real = ou_paths(batch, ts, data_gen)
        return sde_gan_step(
            gen, disc, real, ts, opt_g, opt_d, rng=noise_gen, gradient_penalty=penalty
        )

    label = f"sde-gan seed {seed}" + (" (clipped critic)" if penalty is None else "")
    losses, seconds = _train_swa(ctx, gen, step, iters, label)
    return untrained, sample(), losses, seconds


def _train_swa(
    ctx: RunContext, gen: SDEGenerator, step: Callable[[], float], iters: int, label: str
) -> tuple[list[float], float]:
    """Run ``iters`` GAN steps with stochastic weight averaging of the generator over the
    second half (as the authors), then load the average into ``gen``; returns the critic
    losses and the training CPU seconds."""
    averaged = torch.optim.swa_utils.AveragedModel(gen)
    losses = []
    start = time.process_time()
    for it in ctx.progress(range(iters), total=iters, description=label):
        losses.append(step())
        if it >= iters // 2:
            averaged.update_parameters(gen)
    seconds = time.process_time() - start
    gen.load_state_dict(averaged.module.state_dict())
    return losses, seconds


def _train_sde_gan_authors(
    ctx: RunContext,
    ts: Tensor,
    iters: int,
    batch: int,
    n_eval: int,
    seed: int,
    lr_scale: float = 1.0,
) -> tuple[Tensor, Tensor, list[float], float]:
    """The training of the authors' torchsde example (Kidger et al. 2021b,
    ``examples/sde_gan.py``) on the OU paths; returns as :func:`_train_sde_gan` (samples in data
    units).

    Their choices: generator (initial noise 5, Brownian motion 3, hidden 16) and critic
    (hidden 16, one fused field ``(f, g)`` on ``d(t, Y)``) with one-hidden-layer LipSwish MLPs
    of width 16; the generator's initial network ×3 and its vector fields ×0.5 at
    initialisation; data normalised by the mean and std of its ``t = 0`` values (estimated on a
    separate real sample); the sample index as model time (solver step ``dt = 1``); one
    simultaneous update per step with Adadelta (weight decay 0.01; full mode their learning
    rates 2e-4 / 1e-3, quick mode 5e-3 / 2.5e-2) and the weight-clipped critic; SWA of the
    generator over the second half. Deviations: ``iters`` steps at batch ``batch`` (theirs
    10000 at 1024), their OU process replaced by the recipe's. ``lr_scale`` multiplies both
    learning rates (``(10000 / iters)^1.5`` gives fewer steps the authors' displacement budget:
    Adadelta's step from zero state grows like the square root of the step count)."""
    torch.manual_seed(seed)
    gen = SDEGenerator(1, 5, 3, 16, width=16).to(ctx.device)
    disc = CDEDiscriminator(1, 16, width=16, fused=True).to(ctx.device)
    with torch.no_grad():  # init_mult1 = 3, init_mult2 = 0.5
        for p in gen.initial.parameters():
            p.mul_(3.0)
        for p in gen.sde.parameters():
            p.mul_(0.5)
    disc.clip_weights()
    tm = torch.arange(ts.shape[0], device=ts.device, dtype=ts.dtype)
    ref = ou_paths(8192, ts, torch.Generator().manual_seed(seed + 5))
    loc, scale = float(ref[:, 0].mean()), float(ref[:, 0].std())

    def sample() -> Tensor:
        with torch.no_grad():
            y = gen(tm, n_eval, generator=torch.Generator().manual_seed(seed + 2))
        return y * scale + loc

    untrained = sample()
    lr_g, lr_d = ctx.pick((5e-3, 2.5e-2), (2e-4, 1e-3))
    opt_g = torch.optim.Adadelta(gen.parameters(), lr=lr_g * lr_scale, weight_decay=0.01)
    opt_d = torch.optim.Adadelta(disc.parameters(), lr=lr_d * lr_scale, weight_decay=0.01)
    data_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator().manual_seed(seed + 3)

    def step() -> float:
        real = (ou_paths(batch, ts, data_gen) - loc) / scale
        return sde_gan_step(gen, disc, real, tm, opt_g, opt_d, rng=noise_gen)

    losses, seconds = _train_swa(ctx, gen, step, iters, f"sde-gan seed {seed} (authors)")
    return untrained, sample(), losses, seconds


def _sde_gan_seed(
    ctx: RunContext,
    ts: Tensor,
    iters: int,
    batch: int,
    n_eval: int,
    seed: int,
    training: str = "wgan-gp",
    lr_scale: float = 1.0,
) -> tuple[dict[str, float], tuple[Tensor, Tensor, Tensor, list[float]]]:
    """One seed of ``neural-de.sde-gan``: metrics, and (held-out real, untrained, trained paths,
    critic losses) for the figure. ``training``: ``"wgan-gp"`` (the recipe's: WGAN-GP critic and
    Adam, plus the clipped critic beside it in full mode) or ``"authors"``
    (:func:`_train_sde_gan_authors`, the documented option, with ``lr_scale``)."""
    test_real = ou_paths(n_eval, ts, torch.Generator().manual_seed(seed + 1))
    if training == "authors":
        untrained, trained, losses, seconds = _train_sde_gan_authors(
            ctx, ts, iters, batch, n_eval, seed, lr_scale
        )
    elif training == "wgan-gp":
        untrained, trained, losses, seconds = _train_sde_gan(
            ctx, ts, iters, batch, n_eval, 10.0, seed
        )
    else:
        raise ValueError(f"training must be 'wgan-gp' or 'authors', got {training!r}")
    w_before = float(marginal_wasserstein(untrained, test_real))
    w_after = float(marginal_wasserstein(trained, test_real))
    # reference level: two independent real samples of the same size
    w_floor = float(
        marginal_wasserstein(
            ou_paths(n_eval, ts, torch.Generator().manual_seed(seed + 4)), test_real
        )
    )
    cov_real = _path_covariance(test_real)

    def cov_err(y: Tensor) -> float:
        return float((_path_covariance(y) - cov_real).norm() / cov_real.norm())

    def mean_err(y: Tensor) -> float:
        return float((y.mean(0) - test_real.mean(0)).abs().mean())

    metrics = {
        "marginal_w1_untrained": w_before,
        "marginal_w1_trained": w_after,
        "marginal_w1_real_vs_real": w_floor,
        "marginal_w1_ratio": w_after / w_before,
        "covariance_error_untrained": cov_err(untrained),
        "covariance_error_trained": cov_err(trained),
        "covariance_error_ratio": cov_err(trained) / cov_err(untrained),
        "mean_error_untrained": mean_err(untrained),
        "mean_error_trained": mean_err(trained),
        "train_cpu_seconds": seconds,
    }
    # full mode: the weight-clipped critic of Kidger et al. 2021b (Adam), side by side
    if not ctx.quick and training == "wgan-gp":
        _, clipped, _, clip_seconds = _train_sde_gan(ctx, ts, iters, batch, n_eval, None, seed)
        metrics["marginal_w1_ratio_clipped"] = (
            float(marginal_wasserstein(clipped, test_real)) / w_before
        )
        metrics["covariance_error_ratio_clipped"] = cov_err(clipped) / cov_err(untrained)
        metrics["train_cpu_seconds_clipped"] = clip_seconds
    return metrics, (test_real, untrained, trained, losses)


@recipe(
    name="neural-de.sde-gan",
    papers=(26,),
    claims=[
        Claim(
            "marginal_w1_ratio",
            "<=",
            0.5,
            paper="Kidger et al. 2021 / Kidger 2022 §4.4: an SDE-GAN (neural SDE generator, "
            "neural CDE critic, Wasserstein loss with a Lipschitz critic) learns the law of an "
            "Ornstein-Uhlenbeck process: generated marginals far closer to the data than the "
            "untrained generator's",
        ),
        Claim(
            "covariance_error_ratio",
            "<=",
            0.5,
            paper="the generator learns the time structure of the paths, not only marginals "
            "(path covariance across times)",
            quick=False,
        ),
    ],
)
def sde_gan(ctx: RunContext) -> Result:
    """SDE-GAN on an OU process: generated vs real paths before and after training (WGAN-GP
    critic as in Kidger et al. 2021a; full mode also trains the weight-clipped critic).

    Full mode repeats the whole run for seeds ``seed``, ``seed + 1``, ``seed + 2`` (each
    exactly the run ``--seed s`` makes for its first seed) and the claimed ratios are the means
    over the three; per-seed values are reported with a ``_seed{s}`` suffix."""
    length, batch = 16, ctx.pick(64, 256)
    iters = ctx.pick(150, 1500)
    n_eval = ctx.pick(1000, 4000)
    ts = torch.linspace(0.0, 1.0, length, device=ctx.device)
    seeds = [ctx.seed + i for i in range(ctx.pick(1, 3))]
    runs = [_sde_gan_seed(ctx, ts, iters, batch, n_eval, seed) for seed in seeds]
    per_seed = [m for m, _ in runs]
    test_real, untrained, trained, losses = runs[0][1]  # the figure shows the first seed
    metrics = dict(per_seed[0])
    if len(seeds) > 1:
        for key in list(per_seed[0]):
            for seed, run in zip(seeds, per_seed):
                metrics[f"{key}_seed{seed}"] = run[key]
            metrics[key] = sum(run[key] for run in per_seed) / len(per_seed)
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3), sharey=True)
    tt = ts.cpu()
    for ax, (label, y) in zip(
        axes, [("real OU", test_real), ("untrained generator", untrained), ("SDE-GAN", trained)]
    ):
        yy = y.squeeze(-1).cpu()
        for k in range(12):
            ax.plot(tt, yy[k], lw=0.7, alpha=0.6)
        m, sd = yy.mean(0), yy.std(0)
        ax.plot(tt, m, "k", lw=2)
        ax.fill_between(tt, m - 2 * sd, m + 2 * sd, color="k", alpha=0.12)
        ax.set_title(f"{label}: W1 {float(marginal_wasserstein(y, test_real)):.3f}")
        ax.set_xlabel("t")
    fig.tight_layout()
    path = ctx.savefig(fig, "sde_gan.png")
    return Result(
        metrics=metrics,
        figures=[path],
        tables={"critic_loss": [{"iteration": i, "loss": v} for i, v in enumerate(losses)][::10]},
        notes=[
            "OU dX = 2(1 − X) dt + 0.5 dW, X0 ~ N(0, 0.3²), 16 times on [0, 1], exact sampling",
            "generator: LipSwish MLPs, Stratonovich SDE solved by reversible Heun; critic: "
            "neural CDE on the linear interpolation, kept Lipschitz by a gradient penalty "
            "(λ = 10, WGAN-GP as in Kidger et al. 2021a; *_clipped: weight clipping as in "
            "2021b, full mode); simultaneous Adam updates (full mode: the authors' "
            "learning rates 2e-4 / 1e-3; quick mode 5e-4 / 2e-3), SWA of the generator over "
            "the second half",
            "W1 = per-time marginal Wasserstein-1 averaged over time, on held-out paths; "
            "real_vs_real is the sampling-noise floor",
        ],
    )
