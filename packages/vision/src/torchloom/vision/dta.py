"""DTA (Suryanto et al., CVPR 2022): physical camouflage through a Differentiable
Transformation Network.

A photo-realistic renderer maps a texture to the rendered object under a scene (pose,
distance, lighting) but cannot be differentiated. DTA trains a network to reproduce the
renderer's *texture-dependent* appearance and then optimises a camouflage texture through it,
with expectation over transformations (EOT), to lower a detector's score.

* :class:`Scenes` / :func:`sample_scenes`: scene parameters — object position, in-plane yaw,
  distance (scale), light direction, diffuse/ambient intensity, light colour, background.
* :func:`render`: our stand-in for the photo-realistic renderer — a "3D-ish" car (a curved
  body with a cabin and two tyres) whose surface carries the repeated texture, Lambertian
  shading from its height field, a white specular highlight (Blinn-Phong), rendering at twice
  the resolution with nearest-texel lookup, box down-sampling and 8-bit quantisation. It runs
  without autograd and is only ever queried as a black box by the attack.
* :func:`expand_texture`: the differentiable geometric part — the texture tiled over the
  object's surface coordinates and mapped to the image by the scene's pose with the
  renderer's texel lookup (a gather, linear in the texels), i.e. the paper's "expanded
  texture" ``η_exp``.
* :class:`DTN`: ``x̂ = (1 - m) ⊙ x_ref + m ⊙ f(x_ref, η_exp)``: from the reference render
  (the object with a neutral texture, which carries the scene's lighting) and the expanded
  texture, a small convolutional network predicts the rendered object, trained with
  ``‖x̂ - render(η)‖²`` over random textures and scenes.
* :class:`TinyDetector` and :func:`optimize_camouflage` (the attack: Adam on the texture
  logits, loss ``E_scene[-log(1 - D(DTN(x_ref, η_exp)))]`` in mini-batches of scenes).

Shapes: textures ``(B, 3, k, k)`` or ``(3, k, k)`` in ``[0, 1]``; images ``(B, 3, S, S)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchloom.core.checks import check_floating, check_ndim

__all__ = [
    "DTN",
    "TILES",
    "Scenes",
    "TinyDetector",
    "expand_texture",
    "object_mask",
    "optimize_camouflage",
    "paint_textures",
    "render",
    "render_exact",
    "sample_scenes",
]


@dataclass(frozen=True)
class Scenes:
    """A batch of ``B`` scene parameters (all tensors ``(B,)`` unless noted).

    Attributes:
        cx, cy: object centre in normalised image coordinates ``[-1, 1]``.
        yaw: in-plane rotation of the object (radians).
        scale: object half-length in normalised units (smaller = farther away).
        light_az, light_el: light direction (azimuth in the image plane, elevation).
        diffuse, ambient: light intensities.
        tint: light colour ``(B, 3)``.
        background: background image ``(B, 3, S, S)`` at render resolution.
    """

    cx: Tensor
    cy: Tensor
    yaw: Tensor
    scale: Tensor
    light_az: Tensor
    light_el: Tensor
    diffuse: Tensor
    ambient: Tensor
    tint: Tensor
    background: Tensor

    def __len__(self) -> int:
        return int(self.cx.shape[0])

    def index(self, idx: Tensor | slice) -> Scenes:
        """The scenes selected by ``idx`` (an index tensor or a slice)."""
        return Scenes(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def to(self, device: torch.device | str) -> Scenes:
        """The same scenes with every tensor on ``device``."""
        return Scenes(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def _backgrounds(n: int, size: int, generator: torch.Generator) -> Tensor:
    """Cluttered backgrounds ``(n, 3, size, size)``: smooth colour fields, a road-like band and
    random rectangles/blobs (some car-coloured, some dark)."""
    low = torch.rand(n, 3, 4, 4, generator=generator) * 0.6 + 0.2
    bg = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    for _ in range(4):
        c = torch.rand(n, 3, 1, 1, generator=generator)
        x0, y0 = (torch.rand(2, n, 1, 1, generator=generator) * 2 - 1).unbind(0)
        w, h = (torch.rand(2, n, 1, 1, generator=generator) * 0.5 + 0.1).unbind(0)
        box = ((xx - x0).abs() < w) & ((yy - y0).abs() < h)
        keep = torch.rand(n, 1, 1, 1, generator=generator) < 0.6
        bg = torch.where(box[:, None] & keep, c, bg)
    noise = torch.randn(n, 3, size, size, generator=generator) * 0.03
    return (bg + noise).clamp(0, 1)


def sample_scenes(
    n: int, size: int = 64, generator: torch.Generator | None = None, *, hard: bool = False
) -> Scenes:
    """Random scene parameters for ``n`` renders at render resolution ``size``.

    Args:
        n: number of scenes.
        size: render resolution (twice the output resolution of :func:`render`).
        generator: randomness.
        hard: wider ranges (farther, more rotated, darker) for held-out transformations.

    Returns:
        :class:`Scenes` on the CPU.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)

    def u(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    spread = 1.4 if hard else 1.0
    return Scenes(
        cx=u(-0.25, 0.25),
        cy=u(-0.2, 0.2),
        yaw=u(-0.35 * spread, 0.35 * spread),
        scale=u(0.55 / spread, 0.8),
        light_az=u(-math.pi, math.pi),
        light_el=u(0.5, 1.3),
        diffuse=u(0.45 / spread, 0.85),
        ambient=u(0.2 / spread, 0.45),
        tint=torch.stack([u(0.85, 1.0), u(0.85, 1.0), u(0.8, 1.0)], dim=1),
        background=_backgrounds(n, size, g),
    )


def _surface(scenes: Scenes, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Object-frame coordinates ``(u, v)``, body/tyre masks and shading normal of every pixel.

    Returns ``u, v, body, tyre`` ``(B, size, size)`` and the normal ``(B, 3, size, size)`` in
    image coordinates.
    """
    dev = scenes.cx.device
    lin = (torch.arange(size, device=dev, dtype=torch.float32) + 0.5) / size * 2 - 1
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    c, s = torch.cos(scenes.yaw).view(-1, 1, 1), torch.sin(scenes.yaw).view(-1, 1, 1)
    dx, dy = xx - scenes.cx.view(-1, 1, 1), yy - scenes.cy.view(-1, 1, 1)
    k = scenes.scale.view(-1, 1, 1)
    u = (c * dx + s * dy) / k
    v = (-s * dx + c * dy) / k
    # body: a rounded slab |u| < 1, -0.15 < v < 0.35, plus a cabin dome on top
    body = ((u.abs() < 1.0) & (v > -0.15) & (v < 0.35)) | (
        (u / 0.55) ** 2 + ((v + 0.15) / 0.35) ** 2 < 1
    )
    body = body & ~((u.abs() > 0.92) & (v.abs() > 0.28))
    tyre = ((u - 0.6) ** 2 + (v - 0.35) ** 2 < 0.045) | ((u + 0.6) ** 2 + (v - 0.35) ** 2 < 0.045)
    # height field of a curved body: z = sqrt(1 - (u/1.1)^2 - ((v - 0.05)/0.6)^2)
    a, b = u / 1.1, (v - 0.05) / 0.6
    z = (1 - a**2 - b**2).clamp_min(0.05).sqrt()
    # object-frame normal ∝ (a / (1.1 z), b / (0.6 z), 1), rotated into the image frame
    nu, nv = a / (1.1 * z), b / (0.6 * z)
    nx, ny = c * nu - s * nv, s * nu + c * nv
    normal = torch.stack([nx, ny, torch.ones_like(nx)], dim=1)
    normal = normal / normal.norm(dim=1, keepdim=True)
    return u, v, body & ~tyre, tyre, normal


def object_mask(scenes: Scenes, size: int) -> Tensor:
    """Where the textured body is, ``(B, 1, size, size)`` in ``{0, 1}`` (area fraction after
    box down-sampling when ``size`` is the output resolution of :func:`render`)."""
    _, _, body, _, _ = _surface(scenes, 2 * size)
    return F.avg_pool2d(body[:, None].float(), 2)


def _check_texture(texture: Tensor, batch: int) -> Tensor:
    check_floating(texture, "texture")
    if texture.dim() == 3:
        texture = texture.unsqueeze(0)
    check_ndim(texture, "texture", 4, "(B, 3, k, k) or (3, k, k)")
    if texture.shape[1] != 3:
        raise ValueError(f"texture must have 3 channels, got shape {tuple(texture.shape)}")
    if texture.shape[0] not in (1, batch):
        raise ValueError(f"texture batch must be 1 or {batch} (scenes), got {texture.shape[0]}")
    return texture.expand(batch, -1, -1, -1)


TILES = (0.5, 1.0)
"""Texture repetitions per unit of surface coordinate ``(u, v)``: the body spans ``u`` in
``[-1, 1]`` and ``v`` in ``[-0.5, 0.35]``, so the pattern covers the car about once and wraps
around."""


@torch.no_grad()
def render(texture: Tensor, scenes: Scenes) -> Tensor:
    """The black-box renderer: ``(B | 1, 3, k, k)`` texture and ``B`` scenes ->
    ``(B, 3, S/2, S/2)`` 8-bit-quantised images, ``S`` the scenes' background size.

    Per render pixel: the body shows the texel under its surface coordinates (nearest lookup of
    the repeated pattern), lit by ``tint · (ambient + diffuse · max(n·l, 0))``, plus a white
    Blinn-Phong highlight ``0.5 · diffuse · max(n·h, 0)^24``; tyres are dark rubber; elsewhere
    the background. The image is then box-down-sampled by 2, clipped and quantised to 1/255.
    """
    return torch.round(render_exact(texture, scenes) * 255.0) / 255.0


def render_exact(texture: Tensor, scenes: Scenes) -> Tensor:
    """The renderer's image before 8-bit quantisation, differentiable in the texture.

    Same as :func:`render` without the final rounding. DTA never uses it (the renderer is a
    black box to the attack); it gives the *white-box* bound in diagnostics: a camouflage
    optimised with the true renderer's exact gradients (``optimize_camouflage(...,
    renderer=render_exact)``).

    Args:
        texture: ``(B | 1, 3, k, k)`` or ``(3, k, k)``.
        scenes: ``B`` scenes.

    Returns:
        ``(B, 3, S/2, S/2)`` in ``[0, 1]``, ``S`` the scenes' background size.
    """
    n = len(scenes)
    texture = _check_texture(texture, n).to(scenes.cx.device, torch.float32)
    size = scenes.background.shape[-1]
    u, v, body, tyre, normal = _surface(scenes, size)
    albedo = _texel_lookup(texture, u, v)
    el, az = scenes.light_el.view(-1, 1, 1), scenes.light_az.view(-1, 1, 1)
    light = torch.stack(
        [torch.cos(el) * torch.cos(az), torch.cos(el) * torch.sin(az), torch.sin(el)], dim=1
    ).expand(-1, -1, size, size)
    lam = (normal * light).sum(1, keepdim=True).clamp_min(0)
    half = light + torch.tensor([0.0, 0.0, 1.0], device=light.device).view(1, 3, 1, 1)
    half = half / half.norm(dim=1, keepdim=True)
    spec = (normal * half).sum(1, keepdim=True).clamp_min(0) ** 24
    d = scenes.diffuse.view(-1, 1, 1, 1)
    shade = scenes.tint.view(n, 3, 1, 1) * (scenes.ambient.view(-1, 1, 1, 1) + d * lam)
    car = albedo * shade + 0.5 * d * spec
    rubber = 0.08 * shade
    img = torch.where(body[:, None], car, scenes.background)
    img = torch.where(tyre[:, None], rubber, img)
    return F.avg_pool2d(img, 2).clamp(0, 1)


def _texel_lookup(texture: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """The nearest texel of the repeated pattern at surface coordinates ``(u, v)``.

    Args:
        texture: ``(B, 3, k, k)``.
        u, v: ``(B, H, W)`` surface coordinates.

    Returns:
        ``(B, 3, H, W)`` albedo, differentiable in ``texture`` (a gather).
    """
    n, _, k, _ = texture.shape
    iu = torch.floor((u * TILES[0]) % 1.0 * k).long().clamp(0, k - 1)
    iv = torch.floor((v * TILES[1]) % 1.0 * k).long().clamp(0, k - 1)
    flat = texture.flatten(2)  # (B, 3, k*k)
    idx = (iv * k + iu).flatten(1)[:, None].expand(-1, 3, -1)
    return torch.gather(flat, 2, idx).view(n, 3, *u.shape[1:])


def expand_texture(texture: Tensor, scenes: Scenes, size: int) -> Tensor:
    """Differentiable "expanded texture" ``η_exp`` ``(B, 3, size, size)``: the repeated pattern
    mapped onto the body by the object's (known) surface parameterisation, zero off the body.

    The texel layout follows the renderer's texture mapping (nearest texel at 2x
    supersampling, box down-sampled), so the DTN only has to learn the photometric part
    (shading, light colour, highlights, quantisation); the lookup is a gather, hence linear
    and differentiable in the texel values.

    Args:
        texture: ``(B | 1, 3, k, k)`` or ``(3, k, k)``.
        scenes: ``B`` scenes.
        size: output resolution (that of :func:`render`'s output).

    Returns:
        ``(B, 3, size, size)``, differentiable in ``texture``.
    """
    n = len(scenes)
    texture = _check_texture(texture, n)
    u, v, body, _, _ = _surface(scenes, 2 * size)
    albedo = _texel_lookup(texture, u.to(texture.device), v.to(texture.device))
    albedo = albedo * body[:, None].to(albedo.device, albedo.dtype)
    return F.avg_pool2d(albedo, 2)


class DTN(nn.Module):
    """Differentiable Transformation Network: ``x̂ = (1 - m) x_ref + m f(x_ref, η_exp, m)``.

    ``f`` is a small fully convolutional encoder-decoder (3x3 convs, ReLU, one stride-2 level,
    a skip connection) with a sigmoid output. It learns the renderer's texture-dependent
    photometric transformation (shading, light colour, highlights) from the reference render.

    Args:
        width: channels of the hidden layers.

    Shapes: ``x_ref, η_exp`` ``(B, 3, S, S)``, ``m`` ``(B, 1, S, S)`` -> ``(B, 3, S, S)``.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.inp = nn.Sequential(nn.Conv2d(7, width, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
        )
        self.up = nn.ConvTranspose2d(width, width, 2, stride=2)
        self.out = nn.Sequential(
            nn.Conv2d(2 * width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 1),
            nn.ReLU(),
            nn.Conv2d(width, 3, 1),
        )

    def forward(self, x_ref: Tensor, texture_exp: Tensor, mask: Tensor) -> Tensor:
        check_ndim(x_ref, "x_ref", 4, "(B, 3, S, S)")
        if x_ref.shape != texture_exp.shape or mask.shape != (x_ref.shape[0], 1, *x_ref.shape[2:]):
            raise ValueError(
                "x_ref and texture_exp must share a shape (B, 3, S, S) and mask be (B, 1, S, S), "
                f"got {tuple(x_ref.shape)}, {tuple(texture_exp.shape)}, {tuple(mask.shape)}"
            )
        h = self.inp(torch.cat([x_ref, texture_exp, mask], dim=1))
        d = self.up(self.down(h))
        d = d[..., : h.shape[-2], : h.shape[-1]]
        pred = torch.sigmoid(self.out(torch.cat([h, d], dim=1)))
        return (1 - mask) * x_ref + mask * pred


class TinyDetector(nn.Module):
    """Object-presence classifier ``(B, 3, S, S) -> (B,)`` logits: four 3x3 conv-ReLU layers
    (two with stride 2), global average pooling and a linear layer.

    Args:
        width: channels of the first layer (doubled after each stride).
    """

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * width, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        check_ndim(x, "x", 4, "(B, 3, S, S)")
        return self.net(x).squeeze(1)


def paint_textures(
    n: int, k: int = 8, generator: torch.Generator | None = None, *, noise: bool = True
) -> Tensor:
    """Car paints ``(n, 3, k, k)``: plain colours, two-tone and stripes, plus (with ``noise``)
    random texel noise, in equal shares.

    Args:
        n: number of textures.
        k: texture side.
        generator: randomness.
        noise: include random-noise textures (a quarter of the draws).

    Returns:
        ``(n, 3, k, k)`` in ``[0, 1]``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    a = torch.rand(n, 3, 1, 1, generator=g).expand(-1, -1, k, k)
    b = torch.rand(n, 3, 1, 1, generator=g).expand(-1, -1, k, k)
    rows = (torch.arange(k) < k // 2).view(1, 1, k, 1).expand(n, 1, k, k)
    stripes = (torch.arange(k) % 4 < 2).view(1, 1, 1, k).expand(n, 1, k, k)
    texels = torch.rand(n, 3, k, k, generator=g)
    kind = torch.randint(0, 4 if noise else 3, (n, 1, 1, 1), generator=g)
    out = torch.where(kind == 1, torch.where(rows, a, b), a)
    out = torch.where(kind == 2, torch.where(stripes, a, b), out)
    return torch.where(kind == 3, texels, out).contiguous()


def optimize_camouflage(
    dtn: Callable[[Tensor, Tensor, Tensor], Tensor] | None,
    detector: nn.Module,
    scenes: Scenes,
    texture_size: int = 8,
    steps: int = 200,
    batch: int = 32,
    lr: float = 0.1,
    generator: torch.Generator | None = None,
    reference: Tensor | None = None,
    renderer: Callable[[Tensor, Scenes], Tensor] | None = None,
) -> Tensor:
    """DTA's attack: optimise a texture through the DTN against the detector with EOT.

    The texture is ``sigmoid(w)`` (kept in ``[0, 1]``), ``w`` initialised at random; each step
    draws ``batch`` scenes, renders them with the DTN and minimises
    ``mean(-log(1 - D(x̂)))`` — the detector's confidence that an object is present.

    Args:
        dtn: a trained :class:`DTN` (frozen here), or any differentiable
            ``(x_ref, η_exp, mask) -> image`` stand-in (e.g. pasting the texture unlit).
        detector: a trained ``(B, 3, S, S) -> (B,)`` logit model (frozen here).
        scenes: the pool of training scenes (EOT samples).
        texture_size: ``k`` of the ``(3, k, k)`` texture.
        steps, batch, lr: Adam iterations, scenes per step, learning rate.
        generator: randomness of the initial texture and the scene draws.
        reference: reference renders ``(N, 3, S, S)`` of ``scenes`` (computed with the neutral
            grey texture if omitted).
        renderer: instead of the DTN, a differentiable ``(texture, scenes) -> image`` renderer
            (e.g. :func:`render_exact` for the white-box bound); ``dtn`` is then ignored.

    Returns:
        The camouflage texture ``(3, k, k)`` in ``[0, 1]``.
    """
    if dtn is None and renderer is None:
        raise ValueError("optimize_camouflage needs a dtn or a differentiable renderer")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    n = len(scenes)
    if reference is None:
        reference = render(torch.full((1, 3, 2, 2), 0.5), scenes)
    size = reference.shape[-1]
    dev = reference.device
    mask = object_mask(scenes, size).to(dev)
    w = (torch.randn(3, texture_size, texture_size, generator=g) * 0.5).to(dev)
    w.requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    frozen = list(detector.parameters())
    if isinstance(dtn, nn.Module) and renderer is None:
        frozen += list(dtn.parameters())
    for p in frozen:
        p.requires_grad_(False)
    for _ in range(steps):
        idx = torch.randint(0, n, (min(batch, n),), generator=g)
        sub = scenes.index(idx)
        tex = torch.sigmoid(w)
        if renderer is not None:
            x = renderer(tex[None], sub.to(dev))
        else:
            assert dtn is not None
            exp = expand_texture(tex, sub, size)
            x = dtn(reference[idx.to(dev)], exp, mask[idx.to(dev)])
        loss = -F.logsigmoid(-detector(x)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.sigmoid(w).detach()
