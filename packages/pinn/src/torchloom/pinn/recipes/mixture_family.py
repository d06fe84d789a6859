"""Hard-constraint MoE over a family of instances (paper 13, the paper's own setting)."""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import numpy as np
import torch

from torchloom.core.recipes import Result, RunContext, pyplot, recipe
from torchloom.pinn.moe import ReactionDiffusion, relative_l2
from torchloom.pinn.moe_family import (
    FamilyHardConstraintMoE,
    FamilySoftPINN,
    ReactionDiffusionFamily,
)
from torchloom.pinn.recipes.mixture import _MOE_CLAIMS, _MOE_WEIGHTS
from torchloom.pinn.residual import train_pinn

__all__: list[str] = ["moe_family"]


def _ic_points(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` cell-centred initial points on ``[0, 2π)`` (``(n, 2)``) and their ``x``."""
    xi = (torch.arange(n, dtype=torch.float64) + 0.5) / n * (2.0 * math.pi)
    return torch.stack([xi, torch.zeros_like(xi)], -1), xi


def _train_soft(
    ctx: RunContext, fam: ReactionDiffusionFamily, b: dict[str, Any], steps: int
) -> tuple[FamilySoftPINN, float, float]:
    """Soft-constraint PINN conditioned on the same features, trained on the same family.

    Returns the model, the training seconds and the final training loss (mean weighted total
    of the last 10% of the steps)."""
    model = FamilySoftPINN(fam.problem, fam.n_sensors, width=32, depth=3).double()
    ic, xi = _ic_points(b["n_ic"])
    bc_t = torch.linspace(0.0, fam.problem.t_end, 32, dtype=torch.float64)
    hi = torch.tensor(fam.problem.upper, dtype=torch.float64)

    def loss_fn() -> dict[str, torch.Tensor]:
        coef = fam.sample(b["batch"], ctx.generator)
        pts = torch.rand(b["batch"], b["n_pts"], 2, generator=ctx.generator, dtype=torch.float64)
        return model.losses(fam.features(coef), pts * hi, ic, fam.initial(xi, coef), bc_t)

    t0 = time.perf_counter()
    hist = train_pinn(
        loss_fn,
        model.parameters(),
        adam_steps=steps,
        lr=3e-3,
        weights=_MOE_WEIGHTS,
        progress=ctx.progress,
    )
    tail = hist.total[-max(1, steps // 10) :]
    return model, time.perf_counter() - t0, float(np.mean(tail))


def _train_soft_restarts(
    ctx: RunContext, fam: ReactionDiffusionFamily, b: dict[str, Any]
) -> tuple[list[FamilySoftPINN], list[float], int, float]:
    """``b["soft_restarts"]`` soft PINNs (fresh initialisation and draws each) sharing the soft
    step budget; the one with the lowest final training loss is the baseline (a practitioner's
    choice: no reference solution is looked at). On this family a single soft PINN often falls
    into the known reaction–diffusion failure mode (``u`` stuck low behind the initial layer:
    first full run, one model for 1500 steps, rel L2 0.94)."""
    models, losses, seconds = [], [], 0.0
    for r in range(b["soft_restarts"]):
        torch.manual_seed(ctx.seed + 7919 * (r + 1))
        m, sec, loss = _train_soft(ctx, fam, b, b["soft_steps"] // b["soft_restarts"])
        models.append(m)
        losses.append(loss)
        seconds += sec
    return models, losses, int(np.argmin(losses)), seconds


def _train_hc(
    ctx: RunContext,
    fam: ReactionDiffusionFamily,
    b: dict[str, Any],
    K: int,
    N: int,
    initial_rows: Literal["global", "local"],
) -> tuple[FamilyHardConstraintMoE, float]:
    """PI-HC(-MoE) over the family: fresh instances and fresh constraint points every step,
    PDE loss at the constraint points (as the authors' code), learning rate decaying 10×.

    Up to 100 Levenberg–Marquardt iterations per solve, in training and at inference: the
    authors' ``ConstraintConfig.maxiter``. (The first two full runs used 25, as ``pinn.moe``:
    several held-out solves were then unconverged, MoE rel L2 0.057 and 0.109 with single
    instances at 0.2–0.4; the same trained MoE solved with 200 iterations: 0.035.)"""
    model = FamilyHardConstraintMoE(
        fam.problem, fam.n_sensors, K, N, width=32, depth=2, lm_iter=100, initial_rows=initial_rows
    ).double()
    ic, xi = _ic_points(b["n_ic"])
    bc_t = torch.linspace(0.0, fam.problem.t_end, 32, dtype=torch.float64)

    def loss_fn() -> dict[str, torch.Tensor]:
        coef = fam.sample(b["batch"], ctx.generator)
        feats, u_ic = fam.features(coef), fam.initial(xi, coef)
        pts = model.sample_points(b["n_pts"] // K, ctx.generator)
        w = model.solve(feats, pts, ic, u_ic, bc_t)
        return model.losses(w, feats, pts, ic, u_ic)

    t0 = time.perf_counter()
    train_pinn(
        loss_fn,
        model.parameters(),
        adam_steps=b["steps"],
        lr=3e-3,
        lr_decay=0.1 ** (1.0 / b["steps"]),
        weights=_MOE_WEIGHTS,
        progress=ctx.progress,
    )
    return model, time.perf_counter() - t0


def _predict_hc(
    ctx: RunContext,
    model: FamilyHardConstraintMoE,
    fam: ReactionDiffusionFamily,
    coef: torch.Tensor,
    eval_pts: torch.Tensor,
    b: dict[str, Any],
) -> torch.Tensor:
    """Inference on held-out instances: each instance's own constrained solves, then ``u``."""
    ic, xi = _ic_points(b["n_ic"])
    bc_t = torch.linspace(0.0, fam.problem.t_end, 32, dtype=torch.float64)
    feats = fam.features(coef)
    with torch.no_grad():
        pts = model.sample_points(b["n_pts"] // model.K, ctx.generator)
        w = model.solve(feats, pts, ic, fam.initial(xi, coef), bc_t)
        return model.evaluate(eval_pts, feats, w)


def _solve_seconds(fam: ReactionDiffusionFamily, K: int, N: int, n_pts: int, reps: int) -> float:
    """Median wall time of one instance's differentiable constraint solve (forward + backward)."""
    torch.manual_seed(0)
    model = FamilyHardConstraintMoE(fam.problem, fam.n_sensors, K, N, lm_iter=5).double()
    g = torch.Generator().manual_seed(0)
    coef = fam.sample(1, g)
    ic, xi = _ic_points(64)
    bc_t = torch.linspace(0.0, fam.problem.t_end, 32, dtype=torch.float64)
    pts = model.sample_points(n_pts // K, g)
    feats, u_ic = fam.features(coef), fam.initial(xi, coef)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        w = model.solve(feats, pts, ic, u_ic, bc_t)
        (w**2).sum().backward()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _budget(ctx: RunContext) -> dict[str, Any]:
    """Pre-registered sizes: K = 4 experts × N = 16 basis functions (global: 1 × 64), 4 fresh
    instances per step, 300 hard-constrained steps vs 1500 soft steps (and 300, the paper's
    equal-steps protocol), 512 constraint points per instance, 8 held-out instances. After the
    first full run the 1500 soft steps are split over 4 restarts (see
    :func:`_train_soft_restarts`)."""
    return {
        "K": 4,
        "N": 16,
        "batch": ctx.pick(2, 4),
        "steps": ctx.pick(8, 300),
        "soft_steps": ctx.pick(16, 1500),
        "soft_restarts": ctx.pick(1, 4),
        "n_pts": ctx.pick(64, 512),
        "n_ic": 64,
        "n_test": ctx.pick(2, 8),
        "sizes": ctx.pick([128, 256], [128, 256, 512, 1024]),
        "reps": ctx.pick(1, 3),
    }


@recipe(name="pinn.moe-family", papers=(13,), claims=_MOE_CLAIMS)
def moe_family(ctx: RunContext) -> Result:
    """PI-HC-MoE vs a soft PINN vs one global hard constraint, trained over a family of
    reaction–diffusion instances (``ν = 1``, ``ρ = 5``, random Fourier initial conditions, the
    network conditioned on ``u₀`` at 32 sensors) and evaluated on held-out instances: mean
    relative L2 over the instances, each hard-constrained model solving every held-out
    instance's own constraints at inference."""
    torch.manual_seed(ctx.seed)
    b = _budget(ctx)
    K, N = b["K"], b["N"]
    fam = ReactionDiffusionFamily(ReactionDiffusion(nu=1.0, rho=5.0, t_end=1.0))
    test_gen = torch.Generator().manual_seed(10_000 + ctx.seed)  # held out: its own stream
    coef_test = fam.sample(b["n_test"], test_gen)
    refs = []
    for c in coef_test:
        xr, tr, ur = fam.reference(c, 128, 1000)
        refs.append(ur[::50])
    X, T = np.meshgrid(xr, tr[::50], indexing="xy")
    eval_pts = torch.from_numpy(np.stack([X.ravel(), T.ravel()], 1))
    u_ref = np.stack(refs)  # (n_test, nt, nx)

    metrics: dict[str, float] = {}
    softs, soft_losses, best, metrics["train_seconds_soft"] = _train_soft_restarts(ctx, fam, b)
    torch.manual_seed(ctx.seed)
    moe, metrics["train_seconds_moe"] = _train_hc(ctx, fam, b, K, N, "local")
    glob, metrics["train_seconds_global"] = _train_hc(ctx, fam, b, 1, K * N, "global")
    soft_eq, metrics["train_seconds_soft_equal_steps"], _ = _train_soft(ctx, fam, b, b["steps"])
    feats = fam.features(coef_test)
    with torch.no_grad():
        for r, (m, loss) in enumerate(zip(softs, soft_losses)):
            pr = m(eval_pts, feats)
            metrics[f"rel_l2_soft_restart{r}"] = float(
                np.mean([relative_l2(pr[i], u_ref[i].ravel()) for i in range(len(coef_test))])
            )
            metrics[f"train_loss_soft_restart{r}"] = loss
        metrics["soft_restart_selected"] = float(best)
        preds = {
            "soft": softs[best](eval_pts, feats),
            "moe": _predict_hc(ctx, moe, fam, coef_test, eval_pts, b),
            "global": _predict_hc(ctx, glob, fam, coef_test, eval_pts, b),
            "soft_equal_steps": soft_eq(eval_pts, feats),
        }
    per: dict[str, list[float]] = {}
    for k, v in preds.items():
        per[k] = [relative_l2(v[i], u_ref[i].ravel()) for i in range(len(coef_test))]
        metrics[f"rel_l2_{k}"] = float(np.mean(per[k]))
        metrics[f"rel_l2_{k}_max"] = float(np.max(per[k]))
    metrics["moe_over_soft_rel_l2"] = metrics["rel_l2_moe"] / metrics["rel_l2_soft"]
    metrics["moe_over_global_rel_l2"] = metrics["rel_l2_moe"] / metrics["rel_l2_global"]
    metrics["moe_over_soft_equal_steps_rel_l2"] = (
        metrics["rel_l2_moe"] / metrics["rel_l2_soft_equal_steps"]
    )
    metrics["n_test_instances"] = float(len(coef_test))
    # the instance-independent part: the spatial mean of u₀ evolved by the logistic ODE alone
    m0 = coef_test[:, 0].numpy()[:, None]
    tt = tr[::50][None, :]
    e = np.exp(fam.problem.rho * tt)
    logistic = (m0 * e / (1 - m0 + m0 * e))[:, :, None] * np.ones_like(u_ref)
    metrics["rel_l2_mean_logistic"] = float(
        np.mean([relative_l2(logistic[i], u_ref[i]) for i in range(len(coef_test))])
    )

    t_moe, t_glob = [], []
    for n in ctx.progress(b["sizes"], description="solve timing"):
        t_moe.append(_solve_seconds(fam, K, N, n, b["reps"]))
        t_glob.append(_solve_seconds(fam, 1, K * N, n, b["reps"]))
        metrics[f"solve_seconds_ratio_{n}"] = t_glob[-1] / t_moe[-1]
    metrics["global_over_moe_solve_time_at_largest"] = t_glob[-1] / t_moe[-1]
    ctx.log(
        f"mean rel L2 over {len(coef_test)} held-out instances: soft {metrics['rel_l2_soft']:.4f},"
        f" global {metrics['rel_l2_global']:.4f}, MoE {metrics['rel_l2_moe']:.4f}; "
        f"solve time ratio {t_glob[-1] / t_moe[-1]:.2f}"
    )

    plt = pyplot()
    fig, axes = plt.subplots(1, 6, figsize=(25, 3.6))
    shape = u_ref.shape[1:]
    ext = (0.0, 2 * math.pi, 0.0, fam.problem.t_end)
    lim = (float(u_ref[0].min()), float(u_ref[0].max()))
    fields = [("reference (held-out instance 0)", u_ref[0])] + [
        (f"{k} (rel L2 {per[k][0]:.4f})", preds[k][0].numpy().reshape(shape))
        for k in ("soft", "moe", "global")
    ]
    for ax, (title, field) in zip(axes[:4], fields):
        im = ax.imshow(field, origin="lower", aspect="auto", extent=ext, vmin=lim[0], vmax=lim[1])
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("x")
        ax.set_ylabel("t")
    fig.colorbar(im, ax=axes[3])
    idx = np.arange(len(coef_test))
    for j, k in enumerate(("soft", "moe", "global", "soft_equal_steps")):
        axes[4].bar(idx + 0.2 * j - 0.3, per[k], width=0.2, label=k)
    axes[4].set_yscale("log")
    axes[4].set_xlabel("held-out instance")
    axes[4].set_ylabel("rel L2")
    axes[4].legend(fontsize=7)
    axes[5].loglog(b["sizes"], t_glob, "o-", label=f"global (1 × {K * N} basis)")
    axes[5].loglog(b["sizes"], t_moe, "s-", label=f"MoE ({K} × {N} weights)")
    axes[5].set_xlabel("constraint points")
    axes[5].set_ylabel("solve + backward (s)")
    axes[5].legend(fontsize=7)
    fig.tight_layout()
    return Result(metrics=metrics, figures=[ctx.savefig(fig, "moe_family.png")])
