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


def tsp_held_karp(points: torch.Tensor) -> tuple[list[list[int]], torch.Tensor]:
    """Optimal closed tours and their lengths, Held–Karp DP batched over the ``B`` instances.

    ``dp[S, j]`` is the shortest path from city 0 through the set ``S ⊆ {1..n−1}`` ending at
    ``j ∈ S``; ``dp[S, j] = min_{i ∈ S∖{j}} dp[S∖{j}, i] + d(i, j)``.
    """
    p = _points(points, 2)
    bsz, n = p.shape[:2]
    d = _distances(p)
    if n <= 3:
        tours = [_canonical(list(range(n))) for _ in range(bsz)]
        return tours, tour_length(points, torch.tensor(tours))
    m = n - 1  # cities 1..n-1 are bits 0..m-1
    full = (1 << m) - 1
    dp = np.full((bsz, 1 << m, m), np.inf)
    parent = np.full((bsz, 1 << m, m), -1, dtype=np.int64)
    for j in range(m):
        dp[:, 1 << j, j] = d[:, 0, j + 1]
    # masks in increasing order: every S∖{j} is smaller than S
    for mask in range(1, full + 1):
        members = [j for j in range(m) if mask >> j & 1]
        if len(members) < 2:
            continue
        for j in members:
            prev = mask ^ (1 << j)
            cand = dp[:, prev, :] + d[:, 1:, j + 1]  # (B, m) over the previous city i
            cand[:, [i for i in range(m) if not prev >> i & 1]] = np.inf
            best = cand.argmin(1)
            dp[:, mask, j] = cand[np.arange(bsz), best]
            parent[:, mask, j] = best
    closing = dp[:, full, :] + d[:, 1:, 0]
    last = closing.argmin(1)
    tours = []
    for b in range(bsz):
        seq, mask, j = [], full, int(last[b])
        while j >= 0:
            seq.append(j + 1)
            pj = int(parent[b, mask, j])
            mask ^= 1 << j
            j = pj
        tours.append(_canonical([0, *reversed(seq)]))
    lengths = torch.tensor(closing[np.arange(bsz), last], dtype=points.dtype)
    return tours, lengths


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


def hull_area_coverage(points: torch.Tensor, predicted: list[list[int]]) -> torch.Tensor:
    """Area of the hull of the predicted points divided by the true hull area, per instance.

    Fewer than three distinct predicted points cover nothing (0); predicting interior points
    does not add area, so the score is in ``[0, 1]`` and is 1 when every hull vertex is chosen.
    """
    from scipy.spatial import ConvexHull, QhullError

    p = _points(points, 3)
    if len(predicted) != p.shape[0]:
        raise ValueError(f"predicted must have {p.shape[0]} index lists, got {len(predicted)}")
    out = []
    for pts, pred in zip(p, predicted):
        total = ConvexHull(pts).volume  # in 2-D, 'volume' is the area
        idx = sorted({int(i) for i in pred if 0 <= int(i) < len(pts)})
        if len(idx) < 3:
            out.append(0.0)
            continue
        try:
            out.append(ConvexHull(pts[idx]).volume / total)
        except QhullError:  # collinear choice: zero area
            out.append(0.0)
    return torch.tensor(out, dtype=points.dtype)
