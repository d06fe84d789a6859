"""Geometric tasks with exact labels for Pointer Networks (Vinyals et al., 2015, Sec. 4).

- :func:`convex_hull_targets`: hull vertices of planar points (scipy ``ConvexHull``), counter
  clockwise from the lowest index, as in the paper.
- :func:`delaunay_targets`: Delaunay triangles (scipy ``Delaunay``), each sorted, in lexicographic
  order.
- :func:`tsp_held_karp`: exact planar TSP tours by the Held–Karp dynamic programme, batched over
  instances (``O(2^n n^2)`` per instance; ``n ≤ 12`` is practical); :func:`tsp_brute_force`
  enumerates permutations for checking it. Tours start at city 0 and are oriented so that the
  second city has a smaller index than the last (one canonical label per tour).
- :func:`tour_length` and :func:`hull_area_coverage` score predictions.

Point sets are ``(B, n, 2)`` tensors drawn uniformly in the unit square by :func:`random_points`.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from torchloom.core.checks import check_floating, check_ndim

__all__ = [
    "convex_hull_batched",
    "convex_hull_targets",
    "delaunay_targets",
    "hull_area_coverage",
    "random_points",
    "tour_length",
    "tsp_brute_force",
    "tsp_held_karp",
]


def random_points(
    batch: int, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Uniform points in ``[0, 1]^2``: ``(batch, n, 2)``."""
    for name, v in (("batch", batch), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    return torch.rand(batch, n, 2, generator=generator, dtype=dtype)


def _points(points: torch.Tensor, min_n: int) -> np.ndarray:
    check_floating(points, "points")
    check_ndim(points, "points", 3, "(B, n, 2)")
    if points.shape[-1] != 2 or points.shape[1] < min_n:
        raise ValueError(
            f"points must have shape (B, n, 2) with n >= {min_n}, got {tuple(points.shape)}"
        )
    return points.detach().cpu().double().numpy()


def convex_hull_targets(points: torch.Tensor) -> list[list[int]]:
    """Indices of each point set's hull vertices, counter clockwise, starting at the lowest."""
    from scipy.spatial import ConvexHull

    out = []
    for p in _points(points, 3):
        v = ConvexHull(p).vertices.tolist()  # counter clockwise in 2-D
        i = v.index(min(v))
        out.append(v[i:] + v[:i])
    return out


def convex_hull_batched(points: torch.Tensor) -> list[list[int]]:
    """Same labels as :func:`convex_hull_targets`, computed in torch for a whole batch.

    ``(i, j)`` is a counter-clockwise hull edge when every other point lies strictly left of
    ``i → j``; hull vertices are then chained from the lowest index. ``O(B n^3)`` work, meant for
    the small ``n`` used in training (points in general position).
    """
    check_floating(points, "points")
    check_ndim(points, "points", 3, "(B, n, 2)")
    if points.shape[-1] != 2 or points.shape[1] < 3:
        raise ValueError(f"points must have shape (B, n, 2) with n >= 3, got {tuple(points.shape)}")
    p = points.detach().double()
    n = p.shape[1]
    e = p[:, None, :, :] - p[:, :, None, :]  # e[b, i, j] = p_j - p_i
    r = p[:, None, :, :] - p[:, :, None, :]  # r[b, i, k] = p_k - p_i
    cross = e[:, :, :, None, 0] * r[:, :, None, :, 1] - e[:, :, :, None, 1] * r[:, :, None, :, 0]
    eye = torch.eye(n, dtype=torch.bool, device=p.device)
    ignore = eye[:, None, :] | eye[None, :, :]  # k == i or k == j
    edge = ((cross > 0) | ignore).all(-1) & ~eye  # (B, i, j)
    succ = edge.float().argmax(-1).tolist()  # the unique ccw successor of each hull vertex
    on_hull = edge.any(-1).tolist()
    out = []
    for b in range(p.shape[0]):
        start = on_hull[b].index(True)
        hull, i = [start], succ[b][start]
        while i != start and len(hull) <= n:
            hull.append(i)
            i = succ[b][i]
        out.append(hull)
    return out


def delaunay_targets(points: torch.Tensor) -> list[list[tuple[int, int, int]]]:
    """Delaunay triangles of each point set as sorted index triples, sorted."""
    from scipy.spatial import Delaunay

    return [
        sorted(tuple(sorted(int(i) for i in s)) for s in Delaunay(p).simplices)  # type: ignore[misc]
        for p in _points(points, 3)
    ]


def _canonical(tour: list[int]) -> list[int]:
    i = tour.index(0)
    t = tour[i:] + tour[:i]
    if len(t) > 2 and t[1] > t[-1]:
        t = [t[0], *reversed(t[1:])]
    return t


def _distances(p: np.ndarray) -> np.ndarray:
    d: np.ndarray = np.sqrt(((p[:, :, None, :] - p[:, None, :, :]) ** 2).sum(-1))
    return d


def tsp_held_karp(points: torch.Tensor, chunk: int = 256) -> tuple[list[list[int]], torch.Tensor]:
    """Optimal closed tours and their lengths by the Held–Karp dynamic programme.

    ``dp[S, j]`` is the shortest path from city 0 through the set ``S ⊆ {1..n−1}`` ending at
    ``j ∈ S``; ``dp[S, j] = min_{i ∈ S∖{j}} dp[S∖{j}, i] + d(i, j)``. All sets of one size are
    updated at once and ``chunk`` instances are processed together.
    """
    p = _points(points, 2)
    bsz, n = p.shape[:2]
    if n <= 3:  # every tour is optimal
        trivial = [_canonical(list(range(n))) for _ in range(bsz)]
        return trivial, tour_length(points, torch.tensor(trivial))
    m = n - 1  # cities 1..n-1 are bits 0..m-1
    full = (1 << m) - 1
    layers = []
    for size in range(2, m + 1):
        masks = np.array([s for s in range(1, full + 1) if bin(s).count("1") == size])
        members = np.array([[j for j in range(m) if s >> j & 1] for s in masks])  # (nS, size)
        prevs = masks[:, None] ^ (1 << members)  # (nS, size)
        allowed = (prevs[..., None] >> np.arange(m)) & 1 == 1  # (nS, size, m): i ∈ S∖{j}
        layers.append((masks, members, prevs, allowed))
    tours: list[list[int]] = []
    lengths = np.empty(bsz)
    for lo in range(0, bsz, chunk):
        d = _distances(p[lo : lo + chunk])
        cb = d.shape[0]
        d1 = d[:, 1:, 1:]
        dp = np.full((cb, 1 << m, m), np.inf)
        parent = np.full((cb, 1 << m, m), -1, dtype=np.int64)
        dp[:, 1 << np.arange(m), np.arange(m)] = d[:, 0, 1:]
        for masks, members, prevs, allowed in layers:
            # cand[b, s, j, i] = dp[prev(s, j), i] + d(i, j)
            cand = dp[:, prevs, :] + np.moveaxis(d1[:, :, members], 1, -1)
            cand = np.where(allowed, cand, np.inf)
            best = cand.argmin(-1)
            dp[:, masks[:, None], members] = np.take_along_axis(cand, best[..., None], -1)[..., 0]
            parent[:, masks[:, None], members] = best
        closing = dp[:, full, :] + d[:, 1:, 0]
        last = closing.argmin(1)
        lengths[lo : lo + cb] = closing[np.arange(cb), last]
        for b in range(cb):
            seq, mask, j = [], full, int(last[b])
            while j >= 0:
                seq.append(j + 1)
                pj = int(parent[b, mask, j])
                mask ^= 1 << j
                j = pj
            tours.append(_canonical([0, *reversed(seq)]))
    return tours, torch.tensor(lengths, dtype=points.dtype)


def tsp_brute_force(points: torch.Tensor) -> tuple[list[list[int]], torch.Tensor]:
    """Optimal tours by enumerating all ``(n−1)!`` orders (for checking; ``n ≤ 9``)."""
    p = _points(points, 2)
    n = p.shape[1]
    if n > 9:
        raise ValueError(f"brute force is limited to n <= 9 cities, got {n}")
    d = _distances(p)
    tours, lengths = [], []
    for db in d:
        best, best_len = None, np.inf
        for perm in itertools.permutations(range(1, n)):
            t = (0, *perm)
            length = sum(db[t[i], t[(i + 1) % n]] for i in range(n))
            if length < best_len - 1e-12:
                best, best_len = list(t), length
        tours.append(_canonical(best or [0]))
        lengths.append(best_len)
    return tours, torch.tensor(lengths, dtype=points.dtype)


def tour_length(points: torch.Tensor, tours: torch.Tensor) -> torch.Tensor:
    """Closed tour lengths: ``points`` ``(B, n, 2)``, ``tours`` ``(B, n)`` indices → ``(B,)``."""
    check_ndim(points, "points", 3, "(B, n, 2)")
    check_ndim(tours, "tours", 2, "(B, n)")
    if tours.shape[0] != points.shape[0]:
        raise ValueError(f"tours must have {points.shape[0]} rows, got {tuple(tours.shape)}")
    idx = tours.to(points.device).long()
    ordered = torch.gather(points, 1, idx[..., None].expand(-1, -1, points.shape[-1]))
    lengths: torch.Tensor = (ordered - ordered.roll(-1, dims=1)).norm(dim=-1).sum(1)
    return lengths


def _segments_cross(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> bool:
    def orient(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
        return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    return d1 * d2 < 0 and d3 * d4 < 0


def _simple_polygon_area(poly: np.ndarray) -> float:
    """Shoelace area of ``poly`` ``(k, 2)``, or 0 when the polygon self-intersects."""
    k = len(poly)
    for i in range(k):
        for j in range(i + 2, k):
            if i == 0 and j == k - 1:
                continue  # adjacent through the closing edge
            if _segments_cross(poly[i], poly[(i + 1) % k], poly[j], poly[(j + 1) % k]):
                return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def hull_area_coverage(points: torch.Tensor, predicted: list[list[int]]) -> torch.Tensor:
    """Area of the polygon traced by the predicted indices over the true hull area.

    As in the Ptr-Net paper's "area coverage": a prediction with fewer than three points,
    a repeated or out-of-range index, or a self-intersecting polygon is invalid and covers 0.
    A simple polygon on the input points lies inside their hull, so the score is in ``[0, 1]``
    and is 1 exactly when the hull is traced (in either orientation).
    """
    from scipy.spatial import ConvexHull

    p = _points(points, 3)
    if len(predicted) != p.shape[0]:
        raise ValueError(f"predicted must have {p.shape[0]} index lists, got {len(predicted)}")
    out = []
    for pts, pred in zip(p, predicted):
        idx = [int(i) for i in pred]
        valid = len(idx) >= 3 and len(set(idx)) == len(idx)
        valid = valid and all(0 <= i < len(pts) for i in idx)
        area = _simple_polygon_area(pts[idx]) if valid else 0.0
        out.append(area / ConvexHull(pts).volume)  # in 2-D, 'volume' is the area
    return torch.tensor(out, dtype=points.dtype)
