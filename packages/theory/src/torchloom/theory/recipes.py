"""Reproductions of this package's papers, registered under ``torchloom.recipes``."""

from __future__ import annotations

import math

import torch

from torchloom.core.recipes import Claim, Result, RunContext, recipe
from torchloom.theory.ntk import NTKMLP, empirical_ntk, ntk_kernel, predict_gd

__all__: list[str] = ["ntk"]


def _loglog_slope(x: list[float], y: list[float]) -> float:
    lx = torch.tensor(x, dtype=torch.float64).log()
    ly = torch.tensor(y, dtype=torch.float64).log()
    lx = lx - lx.mean()
    return float((lx * (ly - ly.mean())).sum() / (lx * lx).sum())


def _circle(angles: torch.Tensor) -> torch.Tensor:
    return torch.stack([angles.cos(), angles.sin()], dim=-1)


@recipe(
    name="theory.ntk",
    papers=(33,),
    claims=[
        Claim(
            "ntk_error_slope",
            "<=",
            -0.3,
            paper="empirical NTK -> limiting NTK as width grows, fluctuations ~ n^{-1/2} "
            "(Jacot et al. Thm. 1, Fig. 1)",
        ),
        Claim(
            "ntk_error_slope",
            ">=",
            -0.7,
            paper="slope of log relative error vs log width ~ -1/2",
        ),
        Claim(
            "gd_vs_kernel_rel_error",
            "<=",
            0.1,
            paper="wide-net GD follows the kernel gradient of the limiting NTK (Sec. 5, Fig. 2)",
        ),
        Claim(
            "gd_vs_kernel_rel_error_ratio",
            "<",
            1.0,
            paper="agreement improves with width (Fig. 2: n=500 vs n=10000)",
        ),
    ],
)
def ntk(ctx: RunContext) -> Result:
    """Empirical NTK of ReLU MLPs converges to the analytic NTK; wide-net GD matches the
    kernel prediction (Jacot et al. 2018)."""
    dtype = torch.float32
    depth, sw2, sb2 = 2, 2.0, 0.1
    widths = ctx.pick([64, 128, 256, 512, 1024], [64, 128, 256, 512, 1024, 2048, 4096])
    seeds = ctx.pick(2, 5)
    g = ctx.generator
    x = _circle(torch.rand(8, generator=g) * 2 * math.pi).to(ctx.device, dtype)
    analytic = ntk_kernel(x.double(), depth=depth, sigma_w2=sw2, sigma_b2=sb2).to(dtype)

    rows = []
    errors = []
    for width in ctx.progress(widths, description="empirical vs analytic NTK"):
        errs = []
        for _ in range(seeds):
            net = NTKMLP(2, width, depth, 1, sigma_w2=sw2, sigma_b2=sb2, dtype=dtype)
            net.reset_parameters(g)
            net = net.to(ctx.device)
            emp = empirical_ntk(net, x, trace=True)
            errs.append(float((emp - analytic).norm() / analytic.norm()))
        mean = sum(errs) / len(errs)
        errors.append(mean)
        rows.append({"width": width, "rel_frobenius_error": mean, "seeds": seeds})
    slope = _loglog_slope([float(w) for w in widths], errors)

    # Jacot et al. Fig. 2: train on a few points of the unit circle, compare the network
    # function after gradient descent with the kernel-regime prediction at the same time.
    n_train = 6
    ang_tr = torch.linspace(0, 2 * math.pi, n_train + 1)[:-1] + 0.3
    xtr = _circle(ang_tr).to(ctx.device, dtype)
    ytr = (torch.sin(2 * ang_tr) + 0.5 * torch.cos(ang_tr)).to(ctx.device, dtype)
    ang_te = torch.linspace(0, 2 * math.pi, 120)
    xte = _circle(ang_te).to(ctx.device, dtype)
    lr, steps = 1.0, ctx.pick(150, 1000)
    xall = torch.cat([xtr, xte]).double()
    kall = ntk_kernel(xall, depth=depth, sigma_w2=sw2, sigma_b2=sb2)
    k_tr, k_te = kall[:n_train, :n_train], kall[n_train:, :n_train]
    train_widths = ctx.pick([64, 1024], [64, 256, 1024, 4096])
    gd_rows = []
    curves: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for width in ctx.progress(train_widths, description="GD vs kernel prediction"):
        net = NTKMLP(2, width, depth, 1, sigma_w2=sw2, sigma_b2=sb2, dtype=dtype)
        net.reset_parameters(g)
        net = net.to(ctx.device)
        with torch.no_grad():
            f0_tr, f0_te = net(xtr)[:, 0], net(xte)[:, 0]
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            loss = 0.5 * ((net(xtr)[:, 0] - ytr) ** 2).mean()
            loss.backward()
            opt.step()
        with torch.no_grad():
            f_te = net(xte)[:, 0].double()
        pred = predict_gd(
            k_tr,
            k_te,
            ytr.double(),
            float(steps),
            lr,
            f0_train=f0_tr.double(),
            f0_test=f0_te.double(),
        )
        err = float((f_te - pred).norm() / pred.norm())
        gd_rows.append({"width": width, "steps": steps, "rel_error_vs_kernel": err})
        curves[width] = (f_te.cpu(), pred.cpu())
    gd_err = gd_rows[-1]["rel_error_vs_kernel"]
    ratio = gd_rows[-1]["rel_error_vs_kernel"] / gd_rows[0]["rel_error_vs_kernel"]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    ax.loglog(widths, errors, "o-", label="measured")
    ref = [errors[0] * (w / widths[0]) ** -0.5 for w in widths]
    ax.loglog(widths, ref, "--", label="width$^{-1/2}$")
    ax.set_xlabel("width")
    ax.set_ylabel("||Theta_emp - Theta|| / ||Theta||")
    ax.set_title(f"empirical vs analytic NTK (slope {slope:.2f})")
    ax.legend()
    ax = axes[1]
    for width, (f, _) in curves.items():
        ax.plot(ang_te, f, label=f"net, width {width}")
    ax.plot(ang_te, curves[train_widths[-1]][1], "k--", label="NTK prediction")
    ax.scatter(ang_tr, ytr.cpu(), c="red", zorder=5, label="train")
    ax.set_xlabel("angle on the unit circle")
    ax.set_title(f"after {steps} GD steps")
    ax.legend(fontsize=7)
    fig_path = ctx.savefig(fig, "ntk.png")
    return Result(
        metrics={
            "ntk_error_slope": slope,
            "ntk_error_widest": errors[-1],
            "gd_vs_kernel_rel_error": gd_err,
            "gd_vs_kernel_rel_error_ratio": ratio,
        },
        figures=[fig_path],
        tables={"ntk_error_vs_width": rows, "gd_vs_kernel": gd_rows},
        notes=[
            f"ReLU MLP, depth {depth}, sigma_w2={sw2}, sigma_b2={sb2}, NTK parameterisation; "
            "traced empirical NTK on 8 points of the unit circle.",
        ],
    )
