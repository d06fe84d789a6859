"""Differentiable skeletonization: simple points vs their definition, topology, geometry, grads."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from hypothesis import given, strategies as st

from torchloom.vision.skeleton import (
    Skeletonize,
    binarize,
    cldice_loss,
    endpoints,
    simple_points,
    skeletonize,
    soft_skeleton,
)

METHODS = ["boolean", "euler"]


def _simple_2d(cfg: np.ndarray) -> int:
    """Definition (8/4): one 8-component of foreground in N8*, one 4-component of background
    4-adjacent to the centre."""
    fg = cfg.copy()
    fg[1, 1] = 0
    _, n8 = ndi.label(fg, structure=np.ones((3, 3)))
    bg = 1 - cfg
    bg[1, 1] = 0
    lab, _ = ndi.label(bg, structure=ndi.generate_binary_structure(2, 1))
    touching = {lab[p] for p in [(0, 1), (1, 0), (1, 2), (2, 1)] if lab[p] > 0}
    return int(n8 == 1 and len(touching) == 1)


def _simple_3d(cfg: np.ndarray) -> int:
    """Definition (26/6, Bertrand & Malandain): T26 = 1 in N26*, T6 = 1 in N18*."""
    fg = cfg.copy()
    fg[1, 1, 1] = 0
    _, n26 = ndi.label(fg, structure=np.ones((3, 3, 3)))
    bg = 1 - cfg
    bg[1, 1, 1] = 0
    for c in itertools.product((0, 2), repeat=3):
        bg[c] = 0  # corners are not in N18
    lab, _ = ndi.label(bg, structure=ndi.generate_binary_structure(3, 1))
    six = [(0, 1, 1), (2, 1, 1), (1, 0, 1), (1, 2, 1), (1, 1, 0), (1, 1, 2)]
    touching = {lab[p] for p in six if lab[p] > 0}
    return int(n26 == 1 and len(touching) == 1)


@pytest.mark.parametrize("method", METHODS)
def test_simple_points_2d_all_256_configurations(method: str) -> None:
    cfgs = []
    for bits in range(256):
        c = np.zeros((3, 3), dtype=np.int64)
        ring = [k for k in range(9) if k != 4]
        for b, k in enumerate(ring):
            c.flat[k] = (bits >> b) & 1
        c[1, 1] = 1
        cfgs.append(c)
    x = torch.tensor(np.stack(cfgs), dtype=torch.float64)[:, None]
    got = simple_points(x, method)[:, 0, 1, 1].numpy()  # type: ignore[arg-type]
    want = np.array([_simple_2d(c) for c in cfgs])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("method", METHODS)
def test_simple_points_3d_random_configurations(method: str) -> None:
    rng = np.random.default_rng(0)
    cfgs = []
    for density in (0.15, 0.35, 0.5, 0.65, 0.85):
        for _ in range(300):
            c = (rng.random((3, 3, 3)) < density).astype(np.int64)
            c[1, 1, 1] = 1
            cfgs.append(c)
    x = torch.tensor(np.stack(cfgs), dtype=torch.float64)[:, None]
    got = simple_points(x, method)[:, 0, 1, 1, 1].numpy()  # type: ignore[arg-type]
    want = np.array([_simple_3d(c) for c in cfgs])
    assert 0.2 < want.mean() < 0.8  # both classes well represented
    np.testing.assert_array_equal(got, want)


def test_euler_invariance_alone_is_not_enough_in_3d() -> None:
    # The centre joins the voxel below to four voxels above; the middle plane is empty
    # otherwise. Deleting it keeps the Euler characteristic of the window but splits the
    # foreground, so it is not simple and must be kept.
    c = np.zeros((3, 3, 3), dtype=np.int64)
    c[1, 1, 1] = c[0, 1, 1] = 1
    for p in [(2, 0, 1), (2, 2, 1), (2, 1, 0), (2, 1, 2)]:
        c[p] = 1
    assert _simple_3d(c) == 0
    x = torch.tensor(c, dtype=torch.float64)[None, None]
    for method in METHODS:
        assert float(simple_points(x, method)[0, 0, 1, 1, 1]) == 0.0  # type: ignore[arg-type]


def _shapes_2d(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        im = np.zeros((size, size), dtype=bool)
        for _ in range(3):
            cy, cx = rng.integers(8, size - 8, 2)
            r = rng.integers(4, 10)
            im |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        y0, x0, y1, x1 = rng.integers(4, size - 4, 4)
        for t in np.linspace(0, 1, 150):
            im |= (yy - (y0 + (y1 - y0) * t)) ** 2 + (xx - (x0 + (x1 - x0) * t)) ** 2 < 4
        cy, cx = rng.integers(10, size - 10, 2)
        im &= ~((yy - cy) ** 2 + (xx - cx) ** 2 < 6)  # punch a hole
        out.append(im)
    return np.stack(out)


def _tubes_3d(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[:size, :size, :size]
    out = []
    for _ in range(n):
        im = np.zeros((size,) * 3, dtype=bool)
        for _ in range(2):
            p0, p1 = rng.uniform(3, size - 3, 3), rng.uniform(3, size - 3, 3)
            r = rng.uniform(1.5, 3.0)
            for t in np.linspace(0, 1, 50):
                c = p0 + (p1 - p0) * t
                im |= (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 < r * r
        c = rng.uniform(8, size - 8, 3)
        d2 = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2
        im |= (d2 < 25) & ~(d2 < 6)  # a hollow ball: one cavity
        out.append(im)
    return np.stack(out)


@pytest.mark.parametrize("method", METHODS)
def test_2d_skeleton_keeps_topology_inside_mask_and_thin(device: torch.device, method: str) -> None:
    euler_number = pytest.importorskip("skimage.measure").euler_number

    ims = _shapes_2d(6, 48, seed=1)
    x = torch.tensor(ims, dtype=torch.float32, device=device)[:, None]
    sk = skeletonize(x, None, method=method)  # type: ignore[arg-type]
    assert set(torch.unique(sk).tolist()) <= {0.0, 1.0}
    s = sk[:, 0].cpu().numpy().astype(bool)
    eight = np.ones((3, 3))
    for im, sk_i in zip(ims, s):
        assert not (sk_i & ~im).any()  # inside the mask
        assert euler_number(sk_i, connectivity=2) == euler_number(im, connectivity=2)
        assert ndi.label(sk_i, eight)[1] == ndi.label(im, eight)[1]
        # one pixel thin: no 2x2 block of foreground
        blocks = sk_i[:-1, :-1] & sk_i[1:, :-1] & sk_i[:-1, 1:] & sk_i[1:, 1:]
        assert not blocks.any()


def test_2d_skeleton_close_to_skimage() -> None:
    sk_skeletonize = pytest.importorskip("skimage.morphology").skeletonize

    ims = _shapes_2d(6, 48, seed=2)
    x = torch.tensor(ims, dtype=torch.float32)[:, None]
    ours = skeletonize(x, None)[:, 0].numpy().astype(bool)
    for im, s in zip(ims, ours):
        ref = sk_skeletonize(im)
        # thinning schemes place a two-pixel-wide medial line on either side, so compare with
        # a one-pixel tolerance in both directions (symmetric tolerant Dice)
        near_ref = ndi.binary_dilation(ref, np.ones((3, 3)))
        near_ours = ndi.binary_dilation(s, np.ones((3, 3)))
        precision = (s & near_ref).sum() / s.sum()
        recall = (ref & near_ours).sum() / ref.sum()
        assert 2 * precision * recall / (precision + recall) >= 0.9
        assert 0.7 <= s.sum() / ref.sum() <= 1.3


@pytest.mark.parametrize("method", METHODS)
def test_3d_skeleton_keeps_topology(method: str) -> None:
    euler_number = pytest.importorskip("skimage.measure").euler_number

    ims = _tubes_3d(2, 24, seed=3)
    x = torch.tensor(ims, dtype=torch.float32)[:, None]
    s = skeletonize(x, None, method=method)[:, 0].numpy().astype(bool)  # type: ignore[arg-type]
    full = np.ones((3, 3, 3))
    for im, sk_i in zip(ims, s):
        assert not (sk_i & ~im).any()
        assert sk_i.sum() < 0.3 * im.sum()
        assert euler_number(sk_i, connectivity=3) == euler_number(im, connectivity=3)
        assert ndi.label(sk_i, full)[1] == ndi.label(im, full)[1]


def test_methods_agree_and_batch_is_independent() -> None:
    ims = torch.tensor(_shapes_2d(3, 32, seed=4), dtype=torch.float64)[:, None]
    a = skeletonize(ims, 4, method="boolean")
    b = skeletonize(ims, 4, method="euler")
    torch.testing.assert_close(a, b)
    one = torch.cat([skeletonize(ims[i : i + 1], 4) for i in range(3)])
    torch.testing.assert_close(a, one)
    two_channels = skeletonize(ims.view(1, 3, 32, 32), 4)
    torch.testing.assert_close(two_channels.view(3, 1, 32, 32), a)


def test_lines_and_endpoints_are_kept() -> None:
    x = torch.zeros(1, 1, 9, 12)
    x[0, 0, 4, 2:10] = 1.0  # a one-pixel line: every point is non-simple or an end point
    torch.testing.assert_close(skeletonize(x, 3), x)
    e = endpoints(x)
    assert e[0, 0, 4, 2] == 1 and e[0, 0, 4, 9] == 1 and e[0, 0, 4, 5] == 0


def test_probabilistic_input_has_gradients(device: torch.device) -> None:
    ims = torch.tensor(_shapes_2d(2, 32, seed=5), dtype=torch.float32, device=device)[:, None]
    p = (0.1 + 0.8 * ims).requires_grad_()
    g = torch.Generator(device=device).manual_seed(0)
    sk = Skeletonize(num_iter=6, probabilistic=True)(p, generator=g)
    assert set(torch.unique(sk.detach()).tolist()) <= {0.0, 1.0}
    (sk * torch.rand_like(sk)).sum().backward()
    assert p.grad is not None
    assert bool(torch.isfinite(p.grad).all()) and float(p.grad.abs().sum()) > 0


def test_binarize_is_straight_through() -> None:
    p = torch.full((4000,), 0.7, dtype=torch.float64, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    b = binarize(p.view(1, 1, 40, 100), beta=1.0, generator=g)
    # logistic noise with beta = 1: P(b = 1) = p
    assert abs(float(b.detach().mean()) - 0.7) < 0.03
    b.sum().backward()
    assert p.grad is not None and bool((p.grad > 0).all())
    deterministic = binarize(p.detach().view(1, 1, 40, 100), beta=0.0)
    assert bool((deterministic == 1).all())


@given(seed=st.integers(0, 2**16), density=st.floats(0.3, 0.9))
def test_random_binary_images_keep_components(seed: int, density: float) -> None:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(1, 1, 14, 15, generator=g) < density).float()
    x = torch.from_numpy(ndi.binary_closing(x[0, 0].numpy(), np.ones((2, 2)))).float()[None, None]
    s = skeletonize(x, None)[0, 0].numpy().astype(bool)
    im = x[0, 0].numpy().astype(bool)
    assert not (s & ~im).any()
    eight = np.ones((3, 3))
    assert ndi.label(s, eight)[1] == ndi.label(im, eight)[1]
    holes = ndi.label(~np.pad(s, 1), ndi.generate_binary_structure(2, 1))[1]
    holes_in = ndi.label(~np.pad(im, 1), ndi.generate_binary_structure(2, 1))[1]
    assert holes == holes_in


def test_soft_skeleton_and_cldice() -> None:
    ims = torch.tensor(_shapes_2d(2, 32, seed=6), dtype=torch.float32)[:, None]
    soft = soft_skeleton(ims, 10)
    assert bool((soft <= ims + 1e-6).all()) and bool((soft >= 0).all())
    ours = Skeletonize(num_iter=None, probabilistic=False)
    assert float(cldice_loss(ims, ims, ours)) == pytest.approx(0.0, abs=1e-6)
    assert float(cldice_loss(ims, ims)) == pytest.approx(0.0, abs=1e-6)
    pre = ours(ims)
    torch.testing.assert_close(
        cldice_loss(0.7 * ims, ims, target_skeleton=soft_skeleton(ims)), cldice_loss(0.7 * ims, ims)
    )
    with pytest.raises(ValueError, match="target_skeleton"):
        cldice_loss(ims, ims, ours, target_skeleton=pre[:1])
    pred = (0.2 + 0.6 * ims).requires_grad_()
    loss = cldice_loss(pred, ims)
    loss.backward()
    assert (
        0 < float(loss.detach()) < 1
        and pred.grad is not None
        and bool(torch.isfinite(pred.grad).all())
    )


def test_bad_input() -> None:
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match="binary"):
        skeletonize(x + 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        skeletonize(x + 2.0, probabilistic=True)
    with pytest.raises(ValueError, match="4 dimensions"):
        skeletonize(x[0])
    with pytest.raises(TypeError, match="floating"):
        skeletonize(x.long())
    with pytest.raises(ValueError, match="method"):
        skeletonize(x, method="lut")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_iter"):
        skeletonize(x, -1)
    with pytest.raises(ValueError, match="same shape"):
        cldice_loss(x, torch.zeros(1, 1, 8, 9))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        skeletonize(torch.full((1, 1, 4, 4), float("nan")))
