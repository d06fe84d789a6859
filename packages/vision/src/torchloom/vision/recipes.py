"""Reproductions of this package's papers, registered under ``torchloom.recipes``."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchloom.core.data import digits
from torchloom.core.recipes import Claim, Result, RunContext, recipe
from torchloom.vision.msssim import MS_SSIM_WEIGHTS, ms_ssim, ssim

__all__: list[str] = ["msssim"]


class _AutoEncoder(nn.Module):
    """Small convolutional autoencoder ``(B, 1, 32, 32) -> (B, 1, 32, 32)`` with a narrow code."""

    def __init__(self, code: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 8, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(16 * 8 * 8, code),
        )
        self.decoder = nn.Sequential(
            nn.Linear(code, 16 * 8 * 8),
            nn.ReLU(),
            nn.Unflatten(1, (16, 8, 8)),
            nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(8, 1, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


@recipe(
    name="vision.msssim",
    papers=(44,),
    claims=[
        Claim(
            "msssim_gain_vs_l2",
            ">",
            0.0,
            paper="Snell et al. 2017: autoencoders trained on (MS-)SSIM score higher on held-out "
            "MS-SSIM than pixel-loss (L2) training",
        ),
        Claim(
            "msssim_gain_vs_l1",
            ">",
            0.0,
            paper="same comparison against L1 training",
        ),
    ],
)
def msssim(ctx: RunContext) -> Result:
    """Autoencoders trained with MS-SSIM vs L1 vs L2 on digits: held-out MS-SSIM, SSIM, PSNR."""
    data = digits(seed=ctx.seed)
    # 8x8 digits upsampled to 32x32 so three MS-SSIM scales with a 7-tap window fit (min 25)
    x_train = F.interpolate(data.x_train, size=32, mode="bilinear", align_corners=False)
    x_test = F.interpolate(data.x_test, size=32, mode="bilinear", align_corners=False)
    x_train, x_test = x_train.clamp(0, 1).to(ctx.device), x_test.clamp(0, 1).to(ctx.device)
    weights = tuple(w / sum(MS_SSIM_WEIGHTS[:3]) for w in MS_SSIM_WEIGHTS[:3])
    win, sigma = 7, 1.0

    def msssim_loss(a: Tensor, b: Tensor) -> Tensor:
        return 1.0 - ms_ssim(a, b, 1.0, win, sigma, weights=weights)

    losses: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
        "l2": F.mse_loss,
        "l1": F.l1_loss,
        "msssim": msssim_loss,
    }
    steps = ctx.pick(60, 2500)
    batch = ctx.pick(32, 64)
    code = 10
    rows: list[dict[str, float | str]] = []
    recon: dict[str, Tensor] = {}
    metrics: dict[str, float] = {}
    for name, loss_fn in losses.items():
        # identical initialisation and batch order for every loss
        torch.manual_seed(ctx.seed)
        model = _AutoEncoder(code).to(ctx.device)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        order = torch.Generator().manual_seed(ctx.seed)
        for _ in ctx.progress(range(steps), description=f"train {name}"):
            idx = torch.randint(0, x_train.shape[0], (batch,), generator=order)
            xb = x_train[idx.to(ctx.device)]
            loss = loss_fn(model(xb), xb)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{name} loss became {loss.item()}")
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out = model(x_test)
        mse = float(F.mse_loss(out, x_test))
        scores = {
            "ms_ssim": float(ms_ssim(out, x_test, 1.0, win, sigma, weights=weights)),
            "ssim": float(ssim(out, x_test, 1.0, win, sigma)),
            "psnr_db": 10.0 * math.log10(1.0 / mse),
            "l1": float(F.l1_loss(out, x_test)),
        }
        rows.append({"loss": name, **scores})
        recon[name] = out[:8].cpu()
        for key, value in scores.items():
            metrics[f"{key}_{name}"] = value
        ctx.log(
            f"{name}: held-out MS-SSIM {scores['ms_ssim']:.4f}, PSNR {scores['psnr_db']:.2f} dB"
        )
    metrics["msssim_gain_vs_l2"] = metrics["ms_ssim_msssim"] - metrics["ms_ssim_l2"]
    metrics["msssim_gain_vs_l1"] = metrics["ms_ssim_msssim"] - metrics["ms_ssim_l1"]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 8, figsize=(8, 4.4))
    panels = [("input", x_test[:8].cpu())] + [(k, recon[k]) for k in losses]
    for r, (label, imgs) in enumerate(panels):
        for c in range(8):
            ax = axes[r, c]
            ax.imshow(imgs[c, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label)
    fig.suptitle("held-out reconstructions: input, L2, L1, MS-SSIM")
    figure = ctx.savefig(fig, "msssim_reconstructions.png")
    return Result(
        metrics=metrics,
        figures=[figure],
        tables={"held_out": rows},
        notes=[
            f"digits upsampled to 32x32, autoencoder code size {code}, {steps} Adam steps per loss",
            "MS-SSIM with 3 scales, 7-tap Gaussian (sigma 1), Wang et al.'s first three weights "
            "renormalised",
        ],
    )
