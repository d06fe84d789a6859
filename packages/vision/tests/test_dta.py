"""DTA: the black-box renderer, the differentiable expanded texture, the DTN and the attack."""

from __future__ import annotations

import pytest
import torch

from torchloom.core.testing import assert_gradcheck
from torchloom.vision.dta import (
    DTN,
    Scenes,
    TinyDetector,
    expand_texture,
    object_mask,
    optimize_camouflage,
    paint_textures,
    render,
    render_exact,
    sample_scenes,
)


def _scenes(n: int = 4, seed: int = 0, size: int = 32) -> Scenes:
    return sample_scenes(n, size, torch.Generator().manual_seed(seed))


def test_scenes_are_deterministic_and_indexable() -> None:
    a, b = _scenes(seed=3), _scenes(seed=3)
    torch.testing.assert_close(a.background, b.background)
    torch.testing.assert_close(a.yaw, b.yaw)
    sub = a.index(torch.tensor([2, 0]))
    assert len(sub) == 2
    torch.testing.assert_close(sub.tint[1], a.tint[0])


def test_render_is_quantised_and_lit() -> None:
    scenes = _scenes()
    tex = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    img = render(tex, scenes)
    assert img.shape == (4, 3, 16, 16)
    assert float(img.min()) >= 0 and float(img.max()) <= 1
    torch.testing.assert_close(img * 255, torch.round(img * 255))
    torch.testing.assert_close(render(tex, scenes), img)
    # brighter light -> brighter car (the background does not change)
    mask = object_mask(scenes, 16) > 0.99
    bright = Scenes(**{**scenes.__dict__, "ambient": scenes.ambient + 0.3})
    diff = render(tex, bright) - img
    assert float(diff[mask.expand_as(diff)].mean()) > 0.05
    # only the car (body and tyres, next to the body) changes
    near = torch.nn.functional.max_pool2d(object_mask(scenes, 16), 5, 1, 2) > 0
    assert float(diff[~near.expand_as(diff)].abs().max()) == 0.0


def test_object_mask_shrinks_with_distance() -> None:
    near = _scenes(6)
    far = Scenes(**{**near.__dict__, "scale": near.scale * 0.6})
    m_near, m_far = object_mask(near, 16), object_mask(far, 16)
    assert float(m_near.min()) >= 0 and float(m_near.max()) <= 1
    ratio = m_far.sum(dim=(1, 2, 3)) / m_near.sum(dim=(1, 2, 3))
    # area scales with the square of the size
    torch.testing.assert_close(ratio, torch.full_like(ratio, 0.36), atol=0.08, rtol=0)


def test_expand_texture_constant_and_matches_renderer_albedo() -> None:
    scenes = _scenes()
    colour = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    exp = expand_texture(colour, scenes, 16)
    mask = object_mask(scenes, 16)
    torch.testing.assert_close(exp, colour[:, :, :1, :1] * mask)
    # the renderer with flat white light (ambient 1, no diffuse, no tint) shows the albedo:
    # where the nearest texel is well defined, DTN input and render agree
    flat = Scenes(
        **{
            **scenes.__dict__,
            "ambient": torch.ones(4),
            "diffuse": torch.zeros(4),
            "tint": torch.ones(4, 3),
        }
    )
    big = Scenes(**{**flat.__dict__, "background": torch.rand(4, 3, 128, 128)})
    blocks = torch.rand(4, 3, 2, 2, generator=torch.Generator().manual_seed(2))
    tex = blocks.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)  # 8x8, 4x4 blocks
    img = render(tex, big)
    inside = (object_mask(big, 64) > 0.999).expand(-1, 3, -1, -1)
    err = (img - expand_texture(tex, big, 64))[inside].abs()
    # the DTN input follows the renderer's texel lookup: equal up to 8-bit quantisation
    assert float(err.max()) <= 0.5 / 255 + 1e-6
    # and it is linear in the texels: a random texture, then a sum of two
    noise = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    err = (render(noise, big) - expand_texture(noise, big, 64))[inside].abs()
    assert float(err.max()) <= 0.5 / 255 + 1e-6
    torch.testing.assert_close(
        expand_texture(noise + tex, big, 64),
        expand_texture(noise, big, 64) + expand_texture(tex, big, 64),
    )


def test_expand_texture_gradcheck() -> None:
    scenes = _scenes(2)
    tex = torch.rand(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert_gradcheck(lambda t: expand_texture(t, scenes, 8), (tex,))


def test_dtn_keeps_background_and_checks_shapes() -> None:
    torch.manual_seed(0)
    dtn = DTN(8)
    x = torch.rand(2, 3, 16, 16)
    e = torch.rand(2, 3, 16, 16)
    m = torch.zeros(2, 1, 16, 16)
    m[..., 4:10, 3:12] = 1
    out = dtn(x, e, m)
    outside = (m == 0).expand_as(x)
    torch.testing.assert_close(out[outside], x[outside])
    assert float(out.detach().min()) >= 0 and float(out.detach().max()) <= 1
    with pytest.raises(ValueError, match="mask"):
        dtn(x, e, m[:, :, :8])


def test_attack_lowers_a_known_detector() -> None:
    # a "detector" that fires on bright objects: the optimal camouflage is black
    class Bright(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 50.0 * (x.mean(dim=(1, 2, 3)) - 0.3)

    scenes = _scenes(16, seed=5)

    def paste(r: torch.Tensor, e: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return (1 - m) * r + m * e

    g = torch.Generator().manual_seed(0)
    tex = optimize_camouflage(paste, Bright(), scenes, 4, steps=80, batch=8, lr=0.2, generator=g)
    assert tex.shape == (3, 4, 4)
    # every texel that shows on the object in these scenes is driven to black (texels the
    # nearest lookup never reaches get no gradient and keep their random start)
    probe = tex.clone().requires_grad_(True)
    expand_texture(probe, scenes, 16).sum().backward()
    assert probe.grad is not None
    seen = probe.grad > 0
    assert int(seen.sum()) >= 30
    assert float(tex[seen].mean()) < 0.05 and float(tex[seen].max()) < 0.2


def test_render_exact_is_the_unquantised_differentiable_render() -> None:
    scenes = _scenes(3, seed=4)
    # albedo <= 0.4 keeps every pixel below the clip at 1 (shading <= 1.3, highlight <= 0.43)
    tex = 0.4 * torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    tex.requires_grad_(True)
    exact = render_exact(tex, scenes)
    # the black box is exactly its 8-bit quantisation
    torch.testing.assert_close(
        render(tex.detach(), scenes), torch.round(exact.detach() * 255) / 255
    )
    # linear in the texels on the body (the highlight and background do not depend on them)
    # with a positive per-pixel gain: the shading; the gradient reaches every visible texel
    exact.sum().backward()
    assert tex.grad is not None
    probe = tex.detach().clone().requires_grad_(True)
    expand_texture(probe, scenes, 16).sum().backward()
    assert probe.grad is not None
    torch.testing.assert_close(tex.grad > 0, probe.grad > 0)


def test_attack_with_a_differentiable_renderer() -> None:
    # the white-box variant: same attack through render_exact; a detector that fires on bright
    # cars is beaten by a dark texture
    class Bright(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 50.0 * (x.mean(dim=(1, 2, 3)) - 0.3)

    scenes = _scenes(16, seed=5)
    g = torch.Generator().manual_seed(0)
    tex = optimize_camouflage(
        None, Bright(), scenes, 4, steps=60, batch=8, lr=0.2, generator=g, renderer=render_exact
    )
    start = render_exact(torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(9)), scenes)
    after = render_exact(tex[None], scenes)
    assert float(after.mean()) < float(start.mean()) - 0.01
    with pytest.raises(ValueError, match="dtn or a differentiable renderer"):
        optimize_camouflage(None, Bright(), scenes, 4, steps=1)


def test_tiny_detector_and_paints() -> None:
    det = TinyDetector()
    assert det(torch.rand(5, 3, 16, 16)).shape == (5,)
    p = paint_textures(20, 8, torch.Generator().manual_seed(0))
    assert p.shape == (20, 3, 8, 8) and float(p.min()) >= 0 and float(p.max()) <= 1
    plain = paint_textures(20, 8, torch.Generator().manual_seed(0), noise=False)
    # without the noise share every paint has at most two colours
    for tex in plain:
        assert torch.unique(tex.flatten(1), dim=1).shape[1] <= 2


def test_bad_input() -> None:
    scenes = _scenes(2)
    with pytest.raises(ValueError, match="channels"):
        render(torch.rand(1, 4, 8, 8), scenes)
    with pytest.raises(ValueError, match="batch"):
        expand_texture(torch.rand(3, 3, 8, 8), scenes, 16)
    with pytest.raises(ValueError, match="n must"):
        sample_scenes(0)
    with pytest.raises(TypeError):
        render(torch.ones(1, 3, 8, 8, dtype=torch.long), scenes)
