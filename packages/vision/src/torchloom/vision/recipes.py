"""Reproductions of this package's papers, registered under ``torchloom.recipes``."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchloom.core.data import digits
from torchloom.core.recipes import Claim, Result, RunContext, recipe
from torchloom.vision.msssim import MS_SSIM_WEIGHTS, ms_ssim, ssim
from torchloom.vision.skeleton import skeletonize, soft_skeleton

__all__: list[str] = ["msssim", "skeleton"]


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
    steps = ctx.pick(40, 2500)
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


def _vessels(n: int, size: int, nd: int, rng: np.random.Generator) -> np.ndarray:
    """Binary vessel-like trees ``(n, *[size]*nd)``: smooth random walks that branch and thin,
    drawn as balls of decreasing radius, plus one closed loop per image (a hole in 2D, a
    tunnel in 3D)."""
    grids = np.meshgrid(*[np.arange(size)] * nd, indexing="ij")
    out = np.zeros((n,) + (size,) * nd, dtype=bool)
    for i in range(n):
        im = out[i]

        def ball(c: np.ndarray, r: float, im: np.ndarray = im) -> None:
            lo = [max(int(c[k] - r - 1), 0) for k in range(nd)]
            hi = [min(int(c[k] + r + 2), size) for k in range(nd)]
            box = tuple(slice(a, b) for a, b in zip(lo, hi))
            d2 = sum((g[box] - c[k]) ** 2 for k, g in enumerate(grids))
            im[box] |= d2 <= r * r

        stack = [(rng.uniform(size * 0.3, size * 0.7, nd), rng.normal(size=nd), 3.0, 0)]
        while stack:
            pos, direction, radius, depth = stack.pop()
            direction = direction / np.linalg.norm(direction)
            for step in range(int(size * 0.6)):
                direction = direction + 0.25 * rng.normal(size=nd)
                direction /= np.linalg.norm(direction)
                pos = pos + direction
                if np.any(pos < 2) or np.any(pos > size - 3):
                    break
                radius = max(radius * 0.985, 1.0)
                ball(pos, radius)
                if depth < 2 and step > 5 and rng.random() < 0.04:
                    stack.append((pos.copy(), rng.normal(size=nd), radius * 0.8, depth + 1))
        # a ring: one hole (2D) or tunnel (3D)
        centre = rng.uniform(size * 0.25, size * 0.75, nd)
        radius = rng.uniform(size * 0.1, size * 0.16)
        for t in np.linspace(0, 2 * np.pi, 120):
            offset = np.zeros(nd)
            offset[0], offset[1] = radius * np.cos(t), radius * np.sin(t)
            ball(centre + offset, 1.5)
    return out


def _betti(mask: np.ndarray) -> tuple[int, int, int]:
    """(β0, β1, β2) of a binary image with 8-/26-connected foreground."""
    from scipy import ndimage

    nd = mask.ndim
    full = np.ones((3,) * nd)
    b0 = int(ndimage.label(mask, full)[1])
    bg = ndimage.label(~np.pad(mask, 1), ndimage.generate_binary_structure(nd, 1))[1]
    if nd == 2:
        return b0, int(bg) - 1, 0
    from skimage.measure import euler_number

    b2 = int(bg) - 1
    chi = int(euler_number(mask, connectivity=3))
    return b0, b0 + b2 - chi, b2


def _tolerant_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two thin structures where a point counts if the other has one within 1 voxel."""
    from scipy import ndimage

    if a.sum() == 0 or b.sum() == 0:
        return 0.0
    near = np.ones((3,) * a.ndim)
    precision = (a & ndimage.binary_dilation(b, near)).sum() / a.sum()
    recall = (b & ndimage.binary_dilation(a, near)).sum() / b.sum()
    return float(2 * precision * recall / max(precision + recall, 1e-12))


@recipe(
    name="vision.skeleton",
    papers=(14,),
    claims=[
        Claim(
            "betti_error_ours",
            "<=",
            0.0,
            paper="Menten et al. 2023, Tab. 1: 0 Betti errors for the proposed skeletonization",
        ),
        Claim(
            "betti_error_soft",
            ">",
            0.0,
            paper="Tab. 1: the morphological soft skeleton (clDice) has Betti errors > 0",
        ),
        Claim(
            "dice_tol_ours",
            ">=",
            0.85,
            paper="Tab. 1: the skeleton stays close to the medial axis (Dice vs skimage "
            "skeletonize, here with 1-voxel tolerance)",
        ),
    ],
)
def skeleton(ctx: RunContext) -> Result:
    """Topology of our differentiable skeleton vs the clDice soft skeleton on 2D/3D vessels."""
    try:
        from skimage.morphology import skeletonize as sk_skeletonize
    except ImportError as missing:  # pragma: no cover - scikit-image is in the bench group
        raise ImportError(
            "vision.skeleton compares with scikit-image: pip install scikit-image"
        ) from missing

    rng = np.random.default_rng(ctx.seed)
    n2, n3 = ctx.pick(6, 40), ctx.pick(2, 12)
    size2, size3 = ctx.pick(64, 96), ctx.pick(32, 48)
    rows: list[dict[str, float | str]] = []
    errors: dict[str, list[float]] = {"ours": [], "soft": []}
    dice: dict[str, list[float]] = {"ours": [], "soft": []}
    examples: dict[str, np.ndarray] = {}
    for nd, n, size in ((2, n2, size2), (3, n3, size3)):
        masks = _vessels(n, size, nd, rng)
        x = torch.tensor(masks, dtype=torch.float32, device=ctx.device)[:, None]
        ours = skeletonize(x, None)[:, 0].cpu().numpy() > 0.5
        soft = soft_skeleton(x, num_iter=ctx.pick(10, 15))[:, 0].cpu().numpy() > 0.5
        for i in ctx.progress(range(n), description=f"{nd}D shapes"):
            truth = _betti(masks[i])
            ref = sk_skeletonize(masks[i])
            for name, sk in (("ours", ours[i]), ("soft", soft[i])):
                got = _betti(sk)
                err = float(sum(abs(a - b) for a, b in zip(got, truth)))
                errors[name].append(err)
                dice[name].append(_tolerant_dice(sk, ref))
                rows.append(
                    {
                        "dim": f"{nd}D",
                        "image": i,
                        "method": name,
                        "betti_true": str(truth),
                        "betti_skeleton": str(got),
                        "betti_error": err,
                        "dice_tol_vs_skimage": dice[name][-1],
                        "inside_mask": float(not (sk & ~masks[i]).any()),
                    }
                )
            if nd == 2 and i == 0:
                examples = {"mask": masks[0], "ours": ours[0], "soft": soft[0], "skimage": ref}
    metrics = {
        "betti_error_ours": float(np.mean(errors["ours"])),
        "betti_error_soft": float(np.mean(errors["soft"])),
        "dice_tol_ours": float(np.mean(dice["ours"])),
        "dice_tol_soft": float(np.mean(dice["soft"])),
    }
    ctx.log(
        f"mean Betti error: ours {metrics['betti_error_ours']:.2f}, "
        f"soft skeleton {metrics['betti_error_soft']:.2f}"
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
    titles = {
        "mask": "2D vessel mask",
        "ours": "ours (Menten et al.)",
        "soft": "soft skeleton > 0.5",
        "skimage": "skimage skeletonize",
    }
    for ax, (key, img) in zip(axes, examples.items()):
        ax.imshow(examples["mask"], cmap="gray", alpha=0.35)
        if key != "mask":
            ax.imshow(np.ma.masked_where(~img, img), cmap="autumn", interpolation="nearest")
        ax.set_title(titles[key])
        ax.axis("off")
    figure = ctx.savefig(fig, "skeletons.png")
    return Result(
        metrics=metrics,
        figures=[figure],
        tables={"per_image": rows},
        notes=[
            "Betti error = sum over (b0, b1, b2) of |skeleton - mask|; 8/26-connected foreground",
            "dice_tol: Dice against skimage.morphology.skeletonize counting points within one "
            "voxel as matches (thinning schemes may place the medial line one voxel apart)",
        ],
    )
