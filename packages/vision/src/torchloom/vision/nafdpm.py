"""NAF-DPM building blocks (Cicchetti & Comminiello, 2024): activation-free NAFNet, the
residual conditional diffusion model, and the DPM-Solver sampler.

* :class:`NAFBlock` (Chen et al., "Simple Baselines for Image Restoration", 2022)::

      y = x + β · Conv1x1(SCA(SG(DWConv3x3(Conv1x1(LN(x))))))
      z = y + γ · Conv1x1(SG(Conv1x1(LN(y))))

  with SimpleGate ``SG(a ‖ b) = a ⊙ b`` (channel halves), simplified channel attention
  ``SCA(u) = u ⊙ Conv1x1(avgpool(u))`` and ``β, γ`` initialised at 0. There is no nonlinear
  activation anywhere: the gates' products are the only nonlinearity.
* :class:`NAFNet`: U-shaped stack of NAFBlocks (stride-2 conv down, 1x1 conv + PixelShuffle up,
  additive skips, global residual). An optional timestep embedding (sinusoidal, then a
  SimpleGate MLP) shifts every block's input — the conditional denoiser of NAF-DPM.
* :class:`ResidualDiffusion`: NAF-DPM restores ``x`` from a degraded ``y`` as
  ``x = x̂ + r``: an initial predictor gives ``x̂ = P(y)`` and a diffusion model (linear β
  schedule, ``T`` steps) generates the residual ``r = x - x̂``, its denoiser predicting ``r₀``
  from ``(r_t, x̂, t)``.
* :func:`synthetic_documents`: clean/degraded text patches for training and testing.
* :func:`dpm_solver_sample`: multistep second-order DPM-Solver (the data-prediction form of
  Lu et al. 2022, "DPM-Solver++(2M)") over the discrete schedule, ~10-20 steps instead of
  ``T``.

Shapes: images ``(B, C, H, W)`` with ``H, W`` divisible by ``2^len(enc_blocks)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchloom.core import rng
from torchloom.core.checks import check_floating, check_ndim, check_positive

__all__ = [
    "CRNN",
    "TEXT_ALPHABET",
    "LayerNorm2d",
    "NAFBlock",
    "NAFNet",
    "ResidualDiffusion",
    "SimpleGate",
    "character_error_rate",
    "ctc_greedy_decode",
    "dpm_solver_sample",
    "encode_text",
    "linear_alpha_bars",
    "ocr_aware_loss",
    "synthetic_documents",
    "synthetic_text_lines",
]


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of ``(B, C, H, W)``, per pixel, with affine weight/bias."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + self.eps)
        return self.weight.view(1, -1, 1, 1) * y + self.bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    """``(B, 2C, H, W) -> (B, C, H, W)``: the product of the two channel halves."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    """Nonlinear-activation-free block (see the module docstring). Shape-preserving
    ``(B, C, H, W)``; ``emb`` ``(B, C)`` (optional) is added to the block input."""

    def __init__(self, channels: int, dw_expand: int = 2, ffn_expand: int = 2) -> None:
        super().__init__()
        dw = channels * dw_expand
        ffn = channels * ffn_expand
        self.norm1 = LayerNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.gate = SimpleGate()
        self.sca = nn.Conv2d(dw // 2, dw // 2, 1)
        self.conv3 = nn.Conv2d(dw // 2, channels, 1)
        self.norm2 = LayerNorm2d(channels)
        self.conv4 = nn.Conv2d(channels, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, channels, 1)
        # residual scales start at 0: every block is the identity at initialisation
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        h = x if emb is None else x + emb[:, :, None, None]
        u = self.gate(self.conv2(self.conv1(self.norm1(h))))
        u = u * self.sca(F.adaptive_avg_pool2d(u, 1))
        y = x + self.beta * self.conv3(u)
        v = self.conv5(self.gate(self.conv4(self.norm2(y))))
        return y + self.gamma * v


class NAFNet(nn.Module):
    """Activation-free U-Net of :class:`NAFBlock`\\ s with a global residual.

    Args:
        in_channels: input channels (for a conditional denoiser: residual + condition).
        out_channels: output channels.
        width: channels at full resolution (doubled at every level down).
        enc_blocks, dec_blocks: blocks per encoder/decoder level (same length).
        middle_blocks: blocks at the lowest resolution.
        time_embedding: if True, ``forward(x, t)`` takes timesteps ``(B,)``.
        global_residual: add the first ``out_channels`` input channels to the output (off for
            a denoiser that predicts the clean residual ``r₀``, whose input is the noisy one).

    Shapes: ``(B, in_channels, H, W) -> (B, out_channels, H, W)``; the global residual (if on)
    adds the first ``out_channels`` input channels.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        width: int = 16,
        enc_blocks: Sequence[int] = (1, 1),
        middle_blocks: int = 1,
        dec_blocks: Sequence[int] = (1, 1),
        time_embedding: bool = False,
        global_residual: bool = True,
    ) -> None:
        super().__init__()
        self.global_residual = global_residual
        if len(enc_blocks) != len(dec_blocks):
            raise ValueError(
                f"enc_blocks and dec_blocks must have the same length, got {len(enc_blocks)} "
                f"and {len(dec_blocks)}"
            )
        if global_residual and out_channels > in_channels:
            raise ValueError(
                f"out_channels ({out_channels}) must be <= in_channels ({in_channels}) for the "
                "global residual"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.levels = len(enc_blocks)
        self.intro = nn.Conv2d(in_channels, width, 3, padding=1)
        self.ending = nn.Conv2d(width, out_channels, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.ups = nn.ModuleList()
        chans = []
        c = width
        for n in enc_blocks:
            self.encoders.append(nn.ModuleList(NAFBlock(c) for _ in range(n)))
            chans.append(c)
            self.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.middle = nn.ModuleList(NAFBlock(c) for _ in range(middle_blocks))
        for n in dec_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(nn.ModuleList(NAFBlock(c) for _ in range(n)))
        self.time_mlp: nn.Module | None = None
        self.emb_proj: nn.ModuleList | None = None
        if time_embedding:
            # sinusoidal features -> linear -> SimpleGate -> linear: activation-free as well
            self.time_dim = width
            self.time_mlp = nn.Sequential(
                nn.Linear(width, 4 * width), SimpleGate(), nn.Linear(2 * width, width)
            )
            all_c = [*chans, c * 2**self.levels, *reversed(chans)]
            self.emb_proj = nn.ModuleList(nn.Linear(width, ch) for ch in all_c)

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        check_ndim(x, "x", 4, "(B, C, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x must have {self.in_channels} channels, got {x.shape[1]}")
        factor = 2**self.levels
        if x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(
                f"x's height and width must be divisible by {factor}, got {tuple(x.shape[2:])}"
            )
        embs: list[Tensor | None] = [None] * (2 * self.levels + 1)
        if self.time_mlp is not None and self.emb_proj is not None:
            if t is None:
                raise ValueError("t (timesteps, shape (B,)) is required with time_embedding=True")
            e = self.time_mlp(_sinusoidal(t.to(x.dtype), self.time_dim))
            embs = [proj(e) for proj in self.emb_proj]
        h = self.intro(x)
        skips = []
        k = 0
        for blocks, down in zip(self.encoders, self.downs):
            for blk in cast(nn.ModuleList, blocks):
                h = blk(h, embs[k])
            skips.append(h)
            h = down(h)
            k += 1
        for blk in self.middle:
            h = blk(h, embs[k])
        k += 1
        for blocks, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            h = up(h) + skip
            for blk in cast(nn.ModuleList, blocks):
                h = blk(h, embs[k])
            k += 1
        out = self.ending(h)
        return out + x[:, : self.out_channels] if self.global_residual else out


def _sinusoidal(t: Tensor, dim: int) -> Tensor:
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, device=t.device, dtype=t.dtype) / half
    )
    args = t[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, dim - 2 * half))


def linear_alpha_bars(
    num_steps: int = 100, beta_start: float = 1e-4, beta_end: float = 0.02
) -> Tensor:
    """``ᾱ_t = Π_{s<=t} (1 - β_s)`` for a linear β schedule, ``(num_steps,)`` in float64.

    With ``T = 100`` steps the default endpoints are scaled by ``1000 / T`` (as DDPM's
    schedule is usually rescaled) so ``ᾱ_T`` is still close to 0.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an int >= 2, got {num_steps!r}")
    scale = 1000.0 / num_steps
    betas = torch.linspace(beta_start * scale, beta_end * scale, num_steps, dtype=torch.float64)
    if float(betas.max()) >= 1.0:
        raise ValueError(f"beta_end * 1000 / num_steps must be < 1, got {float(betas.max())}")
    return torch.cumprod(1.0 - betas, dim=0)


def dpm_solver_sample(
    denoise: Callable[[Tensor, Tensor], Tensor],
    x_T: Tensor,
    alpha_bars: Tensor,
    steps: int = 20,
) -> Tensor:
    """Multistep 2nd-order DPM-Solver in data-prediction form (DPM-Solver++(2M)).

    Args:
        denoise: ``(x_t, t) -> x̂₀`` with integer timesteps ``t`` ``(B,)`` in ``[0, T)``.
        x_T: starting noise ``(B, *)``.
        alpha_bars: ``ᾱ_t`` ``(T,)`` (see :func:`linear_alpha_bars`).
        steps: solver steps (model evaluations), ``1 <= steps <= T - 1``.

    With ``α = √ᾱ``, ``σ = √(1-ᾱ)``, ``λ = log(α/σ)`` and ``h_i = λ_i - λ_{i-1}``:
    ``x_i = (σ_i/σ_{i-1}) x_{i-1} - α_i (e^{-h_i} - 1) D_i`` where
    ``D_i = (1 + 1/(2 r_i)) x̂₀_{i-1} - 1/(2 r_i) x̂₀_{i-2}``, ``r_i = h_{i-1}/h_i``
    (first step: ``D_1 = x̂₀_0``). The last step lands on ``t = 0``, whose output is returned.
    """
    check_floating(x_T, "x_T")
    t_count = alpha_bars.numel()
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= t_count - 1:
        raise ValueError(f"steps must be an int in [1, {t_count - 1}], got {steps!r}")
    ab = alpha_bars.to(device=x_T.device, dtype=torch.float64)
    # timesteps uniform in log-SNR λ (DPM-Solver's choice; uniform-in-t steps make the ratio
    # r_i = h_{i-1}/h_i tiny near t = 0 and the multistep correction unstable), snapped to the
    # discrete grid; duplicates are dropped, so at most ``steps`` model evaluations are made
    lam_grid = 0.5 * torch.log(ab / (1.0 - ab))
    targets = torch.linspace(
        float(lam_grid[-1]), float(lam_grid[0]), steps + 1, dtype=torch.float64, device=ab.device
    )
    idx = torch.searchsorted(lam_grid.flip(0).contiguous(), targets).clamp(0, t_count - 1)
    ts_t = torch.unique_consecutive(t_count - 1 - idx)
    ts = [t_count - 1, *[int(v) for v in ts_t.tolist() if 0 < v < t_count - 1], 0]
    alpha = ab.sqrt()
    sigma = (1.0 - ab).sqrt()
    lam = torch.log(alpha / sigma)
    x = x_T
    prev_x0: Tensor | None = None
    prev_h: float | None = None
    batch = x_T.shape[0]
    for i in range(1, len(ts)):
        s, t = ts[i - 1], ts[i]
        x0 = denoise(x, torch.full((batch,), s, device=x.device, dtype=torch.long))
        h = float(lam[t] - lam[s])
        if prev_x0 is None or prev_h is None:
            d = x0
        else:
            r = prev_h / h
            d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * prev_x0
        x = float(sigma[t] / sigma[s]) * x - float(alpha[t] * math.expm1(-h)) * d
        prev_x0, prev_h = x0, h
    return x


class ResidualDiffusion(nn.Module):
    """NAF-DPM's restoration model: ``x = P(y) + r``, with ``r`` generated by diffusion.

    Args:
        predictor: initial predictor ``P``: ``(B, C, H, W) -> (B, C, H, W)`` (e.g. a NAFNet).
        denoiser: ``(r_t ‖ x̂, t) -> r̂₀``, a :class:`NAFNet` with ``in_channels = 2C``,
            ``out_channels = C`` and ``time_embedding=True``.
        num_steps: diffusion steps ``T`` (100 in the paper) of a linear β schedule.
    """

    alpha_bars: Tensor

    def __init__(self, predictor: nn.Module, denoiser: nn.Module, num_steps: int = 100) -> None:
        super().__init__()
        self.predictor = predictor
        self.denoiser = denoiser
        self.register_buffer("alpha_bars", linear_alpha_bars(num_steps), persistent=False)

    def loss(self, y: Tensor, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Training loss ``‖P(y) - x‖₁ + ‖D(r_t, x̂, t) - r₀‖₁`` for degraded ``y``, clean ``x``."""
        check_floating(y, "y")
        check_floating(x, "x")
        if x.shape != y.shape:
            raise ValueError(
                f"x and y must have the same shape, got {tuple(x.shape)}, {tuple(y.shape)}"
            )
        x_hat = self.predictor(y)
        r0 = x - x_hat.detach()
        b = x.shape[0]
        ab = self.alpha_bars.to(x.dtype)
        t = rng.randint(0, ab.numel(), (b,), generator=generator, device=x.device)
        noise = rng.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        a = ab[t].view(-1, 1, 1, 1)
        r_t = a.sqrt() * r0 + (1.0 - a).sqrt() * noise
        r0_hat = self.denoiser(torch.cat([r_t, x_hat.detach()], dim=1), t)
        return F.l1_loss(x_hat, x) + F.l1_loss(r0_hat, r0)

    @torch.no_grad()
    def restore(
        self, y: Tensor, steps: int = 20, generator: torch.Generator | None = None
    ) -> Tensor:
        """Restore ``y`` ``(B, C, H, W)``: ``P(y)`` plus a residual sampled in ``steps`` solver
        steps."""
        check_floating(y, "y")
        check_positive(steps, "steps")
        x_hat = self.predictor(y)
        noise = rng.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)

        def denoise(r_t: Tensor, t: Tensor) -> Tensor:
            return self.denoiser(torch.cat([r_t, x_hat], dim=1), t)

        return x_hat + dpm_solver_sample(denoise, noise, self.alpha_bars, steps)


def synthetic_documents(n: int, size: int = 64, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Clean/degraded pairs of synthetic text patches, each ``(n, 1, size, size)`` in ``[0, 1]``.

    Clean: random characters in PIL's bundled font, black on white. Degraded: bleed-through
    (another page's mirrored text, faint), stains (dark Gaussian blobs), uneven illumination,
    Gaussian blur, sensor noise and JPEG compression at quality 15-45 — the degradations
    NAF-DPM's document-enhancement benchmarks contain. Needs Pillow.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an int >= 16, got {size!r}")
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError as err:  # pragma: no cover - pillow ships with matplotlib
        raise ImportError("synthetic_documents needs Pillow: pip install pillow") from err
    rng = np.random.default_rng(seed)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.,;:"

    def page() -> np.ndarray:
        img = Image.new("L", (size, size), 255)
        draw = ImageDraw.Draw(img)
        font = ImageFont.load_default(size=int(rng.integers(9, 13)))
        y = int(rng.integers(0, 4))
        while y < size - 6:
            line = "".join(rng.choice(list(alphabet), size // 4))
            draw.text((int(rng.integers(-3, 3)), y), line, fill=0, font=font)
            y += int(rng.integers(11, 15))
        return np.asarray(img, dtype=np.float64) / 255.0

    clean = np.stack([page() for _ in range(n)])
    degraded = np.stack([_degrade(clean[i], page()[:, ::-1], rng) for i in range(n)])
    return (
        torch.tensor(clean, dtype=torch.float32).unsqueeze(1),
        torch.tensor(degraded, dtype=torch.float32).unsqueeze(1),
    )


def _degrade(clean: np.ndarray, bleed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bleed-through, stains, uneven light, blur, noise and JPEG on one ``(H, W)`` page."""
    import io

    from PIL import Image
    from scipy import ndimage

    h, w = clean.shape
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    d = clean * (1.0 - rng.uniform(0.15, 0.35) * (1.0 - bleed))
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0, h / max(h, w)), rng.uniform(0, w / max(h, w))
        r = rng.uniform(0.1, 0.3)
        stain = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
        d = d * (1.0 - rng.uniform(0.2, 0.45) * stain)
    light = 1.0 - rng.uniform(0.0, 0.3) * (yy * rng.uniform(-1, 1) + xx * rng.uniform(-1, 1))
    d = ndimage.gaussian_filter(d * light, rng.uniform(0.4, 0.9))
    d = d + rng.normal(0.0, rng.uniform(0.02, 0.06), d.shape)
    buf = io.BytesIO()
    pil = Image.fromarray((np.clip(d, 0, 1) * 255).round().astype(np.uint8))
    pil.save(buf, format="JPEG", quality=int(rng.integers(15, 46)))
    return np.asarray(Image.open(buf), dtype=np.float64) / 255.0


TEXT_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
"""Characters of :func:`synthetic_text_lines`; class ``k + 1`` is ``TEXT_ALPHABET[k]``, 0 the
CTC blank."""


def synthetic_text_lines(
    n: int,
    height: int = 32,
    width: int = 128,
    length: tuple[int, int] = (5, 9),
    *,
    seed: int = 0,
) -> tuple[Tensor, Tensor, list[str]]:
    """Single text lines with their transcriptions, for OCR-aware restoration.

    Each line holds ``length[0]..length[1]`` random characters of :data:`TEXT_ALPHABET` in PIL's
    bundled font (size 0.45-0.55 of the height, random offset), black on white; the degraded
    copy goes through the bleed-through/stain/illumination/blur/noise/JPEG chain of
    :func:`synthetic_documents`.

    Args:
        n: number of lines.
        height, width: image size (``height >= 24``, ``width >= 16 * length[1]``).
        length: inclusive range of characters per line.
        seed: numpy seed of the generator.

    Returns:
        ``clean``, ``degraded`` ``(n, 1, height, width)`` in ``[0, 1]`` and the ``n`` strings.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    lo, hi = length
    if not 1 <= lo <= hi:
        raise ValueError(f"length must be (lo, hi) with 1 <= lo <= hi, got {length!r}")
    if height < 24 or width < 12 * hi:
        raise ValueError(
            f"height must be >= 24 and width >= 12 * length[1] = {12 * hi}, got {height}x{width}"
        )
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    fmin, fmax = round(0.45 * height), round(0.55 * height)

    def line() -> tuple[np.ndarray, str]:
        text = "".join(rng.choice(list(TEXT_ALPHABET), int(rng.integers(lo, hi + 1))))
        img = Image.new("L", (width, height), 255)
        draw = ImageDraw.Draw(img)
        font = ImageFont.load_default(size=int(rng.integers(fmin, fmax + 1)))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        x = int(rng.integers(0, max(width - int(right - left), 1))) - int(left)
        y = (height - int(bottom - top)) // 2 - int(top) + int(rng.integers(-2, 3))
        draw.text((x, y), text, fill=0, font=font)
        return np.asarray(img, dtype=np.float64) / 255.0, text

    pages = [line() for _ in range(n)]
    clean = np.stack([p for p, _ in pages])
    degraded = np.stack([_degrade(clean[i], line()[0][:, ::-1], rng) for i in range(n)])
    return (
        torch.tensor(clean, dtype=torch.float32).unsqueeze(1),
        torch.tensor(degraded, dtype=torch.float32).unsqueeze(1),
        [t for _, t in pages],
    )


def encode_text(texts: Sequence[str], alphabet: str = TEXT_ALPHABET) -> tuple[Tensor, Tensor]:
    """CTC targets: concatenated class indices (blank = 0) ``(sum L,)`` and lengths ``(B,)``."""
    index = {c: k + 1 for k, c in enumerate(alphabet)}
    flat: list[int] = []
    for t in texts:
        for c in t:
            if c not in index:
                raise ValueError(f"texts contain {c!r}, which is not in the alphabet")
            flat.append(index[c])
    return torch.tensor(flat, dtype=torch.long), torch.tensor([len(t) for t in texts])


def ctc_greedy_decode(log_probs: Tensor, alphabet: str = TEXT_ALPHABET) -> list[str]:
    """Best-path CTC decoding of ``(T, B, K + 1)`` scores: argmax, merge repeats, drop blanks."""
    check_ndim(log_probs, "log_probs", 3, "(T, B, K + 1)")
    best = log_probs.argmax(-1).T.tolist()
    out = []
    for seq in best:
        chars = [alphabet[k - 1] for j, k in enumerate(seq) if k and (j == 0 or seq[j - 1] != k)]
        out.append("".join(chars))
    return out


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def character_error_rate(predictions: Sequence[str], targets: Sequence[str]) -> float:
    """Total Levenshtein distance over total target length (the OCR character error rate)."""
    if len(predictions) != len(targets):
        raise ValueError(
            f"predictions and targets must have the same length, got {len(predictions)} and "
            f"{len(targets)}"
        )
    total = sum(len(t) for t in targets)
    if total == 0:
        raise ValueError("targets must contain at least one character")
    return sum(_edit_distance(p, t) for p, t in zip(predictions, targets)) / total


class CRNN(nn.Module):
    """Small convolutional-recurrent text recogniser (Shi et al. 2016) trained with CTC.

    Three conv-BN-ReLU stages (pooling ``2x2, 2x2, 2x1``), the column features through a
    bidirectional LSTM, a linear layer to ``len(alphabet) + 1`` classes (0 = blank).

    Args:
        num_classes: characters in the alphabet (the blank is added).
        height: input height (divisible by 8).
        hidden: LSTM hidden size per direction.
        channels: channels of the three conv stages.

    Shapes: ``(B, 1, height, W) -> (W / 4, B, num_classes + 1)`` log-probabilities, the layout
    :func:`torch.nn.functional.ctc_loss` takes.
    """

    def __init__(
        self,
        num_classes: int = len(TEXT_ALPHABET),
        height: int = 32,
        hidden: int = 64,
        channels: tuple[int, int, int] = (16, 32, 64),
    ) -> None:
        super().__init__()
        if height % 8:
            raise ValueError(f"height must be divisible by 8, got {height}")

        def stage(cin: int, cout: int, pool: tuple[int, int]) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.MaxPool2d(pool),
            )

        c1, c2, c3 = channels
        self.height = height
        self.features = nn.Sequential(
            stage(1, c1, (2, 2)), stage(c1, c2, (2, 2)), stage(c2, c3, (2, 1))
        )
        self.rnn = nn.LSTM(c3 * (height // 8), hidden, bidirectional=True)
        self.head = nn.Linear(2 * hidden, num_classes + 1)

    def forward(self, x: Tensor) -> Tensor:
        check_ndim(x, "x", 4, "(B, 1, H, W)")
        if x.shape[1] != 1 or x.shape[2] != self.height or x.shape[3] % 4:
            raise ValueError(
                f"x must be (B, 1, {self.height}, W) with W divisible by 4, got {tuple(x.shape)}"
            )
        f = self.features(x)  # (B, C, H/8, W/4)
        seq = f.flatten(1, 2).permute(2, 0, 1)  # (T, B, C * H/8)
        if seq.is_cuda and not self.training and torch.is_grad_enabled():
            # a frozen recogniser is a differentiable loss in OCR-aware fine-tuning, and cuDNN's
            # RNN backward refuses eval mode; the native kernel does not
            with torch.backends.cudnn.flags(enabled=False):
                out, _ = self.rnn(seq)
        else:
            out, _ = self.rnn(seq)
        return F.log_softmax(self.head(out), dim=-1)

    def loss(self, x: Tensor, texts: Sequence[str], alphabet: str = TEXT_ALPHABET) -> Tensor:
        """Mean CTC loss of images ``(B, 1, H, W)`` against their transcriptions."""
        log_probs = self(x)
        targets, lengths = encode_text(texts, alphabet)
        steps = torch.full((x.shape[0],), log_probs.shape[0], dtype=torch.long)
        return F.ctc_loss(log_probs, targets.to(x.device), steps, lengths, zero_infinity=True)


def ocr_aware_loss(
    model: ResidualDiffusion,
    ocr: CRNN,
    y: Tensor,
    x: Tensor,
    texts: Sequence[str],
    weight: float = 0.05,
    generator: torch.Generator | None = None,
) -> Tensor:
    """NAF-DPM's OCR-aware fine-tuning loss: the diffusion loss plus ``weight`` times a frozen
    recogniser's CTC loss on the one-step restoration ``P(y) + D(r_t, P(y), t)``.

    Args:
        model: the residual diffusion model being fine-tuned.
        ocr: a trained :class:`CRNN`, frozen (``requires_grad_(False)``) and in eval mode.
        y, x: degraded and clean images ``(B, 1, H, W)``.
        texts: the ``B`` transcriptions.
        weight: CTC weight.
        generator: randomness of ``t`` and the noise.

    Returns:
        Scalar loss.
    """
    check_floating(y, "y")
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    x_hat = model.predictor(y)
    r0 = x - x_hat.detach()
    ab = model.alpha_bars.to(x.dtype)
    t = rng.randint(0, ab.numel(), (x.shape[0],), generator=generator, device=x.device)
    noise = rng.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    a = ab[t].view(-1, 1, 1, 1)
    r_t = a.sqrt() * r0 + (1.0 - a).sqrt() * noise
    r0_hat = model.denoiser(torch.cat([r_t, x_hat.detach()], dim=1), t)
    diffusion = F.l1_loss(x_hat, x) + F.l1_loss(r0_hat, r0)
    restored = x_hat + r0_hat
    ocr_loss = ocr.loss(restored, texts)
    return diffusion + weight * ocr_loss
