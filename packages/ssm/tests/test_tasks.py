"""Task generators: Held–Karp vs brute force, hull and Delaunay labels vs independent checks."""

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from torchloom.ssm import (
    convex_hull_batched,
    convex_hull_targets,
    delaunay_targets,
    hull_area_coverage,
    random_points,
    tour_length,
    tsp_brute_force,
    tsp_held_karp,
)


@given(n=st.integers(2, 7), seed=st.integers(0, 10_000))
def test_held_karp_equals_brute_force(n: int, seed: int) -> None:
    pts = random_points(3, n, torch.Generator().manual_seed(seed), dtype=torch.float64)
    hk_tours, hk_len = tsp_held_karp(pts)
    bf_tours, bf_len = tsp_brute_force(pts)
    torch.testing.assert_close(hk_len, bf_len)
    torch.testing.assert_close(tour_length(pts, torch.tensor(hk_tours)), hk_len)
    assert hk_tours == bf_tours  # canonical form: start at 0, second < last
    for t in hk_tours:
        assert sorted(t) == list(range(n)) and t[0] == 0


def test_held_karp_n10_beats_random_tours() -> None:
    pts = random_points(4, 10, torch.Generator().manual_seed(1), dtype=torch.float64)
    _, best = tsp_held_karp(pts)
    for _ in range(200):
        perm = torch.stack([torch.randperm(10) for _ in range(4)])
        assert bool((tour_length(pts, perm) >= best - 1e-12).all())


def _monotone_chain(p: np.ndarray) -> set[int]:
    idx = sorted(range(len(p)), key=lambda i: (p[i, 0], p[i, 1]))

    def cross(o: int, a: int, b: int) -> float:
        return (p[a, 0] - p[o, 0]) * (p[b, 1] - p[o, 1]) - (p[a, 1] - p[o, 1]) * (p[b, 0] - p[o, 0])

    lower: list[int] = []
    for i in idx:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], i) <= 0:
            lower.pop()
        lower.append(i)
    upper: list[int] = []
    for i in reversed(idx):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], i) <= 0:
            upper.pop()
        upper.append(i)
    return set(lower[:-1] + upper[:-1])


@given(n=st.integers(3, 30), seed=st.integers(0, 10_000))
def test_convex_hull_targets(n: int, seed: int) -> None:
    pts = random_points(2, n, torch.Generator().manual_seed(seed), dtype=torch.float64)
    for p, hull in zip(pts.numpy(), convex_hull_targets(pts)):
        assert set(hull) == _monotone_chain(p)
        assert hull[0] == min(hull)
        # counter clockwise: every point lies left of (or on) every directed edge
        for a, b in zip(hull, hull[1:] + hull[:1]):
            e = p[b] - p[a]
            r = p - p[a]
            assert (e[0] * r[:, 1] - e[1] * r[:, 0] >= -1e-12).all()
    assert convex_hull_batched(pts) == convex_hull_targets(pts)


def test_delaunay_targets_empty_circumcircle() -> None:
    pts = random_points(2, 12, torch.Generator().manual_seed(3), dtype=torch.float64)
    hulls = convex_hull_targets(pts)
    for p, tris, hull in zip(pts.numpy(), delaunay_targets(pts), hulls):
        assert len(tris) == 2 * len(p) - 2 - len(hull)  # Euler's formula for triangulations
        for a, b, c in tris:
            # circumcentre by solving |x - pa|^2 = |x - pb|^2 = |x - pc|^2
            m = 2 * np.array([p[b] - p[a], p[c] - p[a]])
            rhs = np.array([p[b] @ p[b] - p[a] @ p[a], p[c] @ p[c] - p[a] @ p[a]])
            centre = np.linalg.solve(m, rhs)
            r2 = ((p[a] - centre) ** 2).sum()
            others = [i for i in range(len(p)) if i not in (a, b, c)]
            assert (((p[others] - centre) ** 2).sum(1) >= r2 - 1e-9).all()


def test_hull_area_coverage() -> None:
    pts = random_points(3, 15, torch.Generator().manual_seed(0), dtype=torch.float64)
    hulls = convex_hull_targets(pts)
    ones = torch.ones(3, dtype=torch.float64)
    torch.testing.assert_close(hull_area_coverage(pts, hulls), ones)
    torch.testing.assert_close(hull_area_coverage(pts, [h[::-1] for h in hulls]), ones)
    cov = hull_area_coverage(pts, [h[:-1] for h in hulls])  # a vertex missed: less area
    assert bool((cov < 1).all()) and bool((cov > 0).all())
    # a concave detour through an interior point is still simple but covers less
    inner = [next(i for i in range(15) if i not in h) for h in hulls]
    cov = hull_area_coverage(pts, [[*h[:1], i, *h[1:]] for h, i in zip(hulls, inner)])
    assert bool((cov < 1).all()) and bool((cov > 0).all())
    # swapping two non-adjacent hull vertices makes the polygon self-intersect: invalid
    bad = [[h[0], h[2], h[1], *h[3:]] for h in hulls]
    assert hull_area_coverage(pts, bad).sum() == 0
    assert hull_area_coverage(pts, [[0, 1]] * 3).sum() == 0
    assert hull_area_coverage(pts, [[0, 1, 2, 1]] * 3).sum() == 0


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="points"):
        convex_hull_targets(torch.rand(2, 5, 3))
    with pytest.raises(ValueError, match="brute force"):
        tsp_brute_force(torch.rand(1, 10, 2))
    with pytest.raises(ValueError, match="n must"):
        random_points(2, 0)
    with pytest.raises(ValueError, match="tours"):
        tour_length(torch.rand(2, 5, 2), torch.zeros(3, 5, dtype=torch.long))
