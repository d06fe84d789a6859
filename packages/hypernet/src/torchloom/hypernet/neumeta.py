"""Neural Metamorphosis (NeuMeta), Yang et al., ECCV 2024 — weight-space smoothing.

NeuMeta learns an implicit neural representation (INR) of a network's weights; the INR fits
far better when neighbouring channels hold similar weights. Hidden channels of a layer can be
permuted freely (with the next layer's inputs permuted the same way) without changing the
network's function, so NeuMeta reorders every dependency group along a *shortest Hamiltonian
path* over the L1 distances between channels: a travelling-salesman problem with a dummy city
at distance 0 from all others, solved exactly for small groups (Held–Karp) and by
nearest-neighbour + 2-opt otherwise.

This module holds that permutation step; the INR hypernetwork and width sampling are not
implemented yet.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn

__all__ = ["path_length", "permute_for_smoothness", "shortest_hamiltonian_path"]

_EXACT_MAX = 10  # Held–Karp is O(2^n n^2): exact up to here, 2-opt beyond


def path_length(dist: torch.Tensor, order: list[int]) -> float:
    """Length ``Σ_k dist[order[k], order[k+1]]`` of an open path."""
    return float(sum(dist[a, b] for a, b in itertools.pairwise(order)))


def _held_karp(d: list[list[float]]) -> list[int]:
    n = len(d)
    full = (1 << n) - 1
    inf = float("inf")
    # cost[mask][j]: shortest path visiting exactly ``mask`` and ending at j (any start)
    cost = [[inf] * n for _ in range(1 << n)]
    parent = [[-1] * n for _ in range(1 << n)]
    for j in range(n):
        cost[1 << j][j] = 0.0
    for mask in range(1, 1 << n):
        for j in range(n):
            c = cost[mask][j]
            if c == inf:
                continue
            for k in range(n):
                if mask & (1 << k):
                    continue
                nm = mask | (1 << k)
                v = c + d[j][k]
                if v < cost[nm][k]:
                    cost[nm][k] = v
                    parent[nm][k] = j
    end = min(range(n), key=lambda j: cost[full][j])
    order, mask = [], full
    while end != -1:
        order.append(end)
        prev = parent[mask][end]
        mask ^= 1 << end
        end = prev
    return order[::-1]


def _two_opt(d: torch.Tensor, order: list[int]) -> list[int]:
    n = len(order)
    improved = True
    while improved:
        improved = False
        for i in range(n - 1):
            for j in range(i + 1, n):
                # reverse order[i..j]; an open path has no edge before 0 or after n-1
                a, b = order[i], order[j]
                before = d[order[i - 1], a] if i > 0 else 0.0
                after = d[b, order[j + 1]] if j < n - 1 else 0.0
                new_before = d[order[i - 1], b] if i > 0 else 0.0
                new_after = d[a, order[j + 1]] if j < n - 1 else 0.0
                if new_before + new_after < before + after - 1e-12:
                    order[i : j + 1] = order[i : j + 1][::-1]
                    improved = True
    return order


def shortest_hamiltonian_path(dist: torch.Tensor, exact: bool | None = None) -> list[int]:
    """An order of the ``n`` items minimising the open-path length over ``dist`` ``(n, n)``.

    Exact (Held–Karp) when ``n <= 10`` (or ``exact=True``); otherwise nearest-neighbour
    from every start followed by 2-opt, a heuristic.
    """
    if not isinstance(dist, torch.Tensor) or dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError(f"dist must be a square (n, n) tensor, got {getattr(dist, 'shape', dist)}")
    n = dist.shape[0]
    if n <= 2:
        return list(range(n))
    if exact is None:
        exact = n <= _EXACT_MAX
    if exact:
        if n > 16:
            raise ValueError(f"exact solve is exponential; n={n} > 16")
        return _held_karp(dist.double().tolist())
    d = dist.double()
    best: list[int] = []
    best_len = float("inf")
    starts = range(n) if n <= 64 else range(0, n, max(1, n // 64))
    for s in starts:
        order, left = [s], set(range(n)) - {s}
        while left:
            last = order[-1]
            nxt = min(left, key=lambda k: float(d[last, k]))
            order.append(nxt)
            left.remove(nxt)
        order = _two_opt(d, order)
        length = path_length(d, order)
        if length < best_len:
            best, best_len = order, length
    return best


def _channel_features(layer: nn.Linear, nxt: nn.Linear) -> torch.Tensor:
    """Per hidden unit k: incoming row, bias and outgoing column, concatenated ``(n, F)``."""
    parts = [layer.weight.detach(), nxt.weight.detach().T]
    if layer.bias is not None:
        parts.insert(1, layer.bias.detach()[:, None])
    return torch.cat(parts, dim=1)


@torch.no_grad()
def permute_for_smoothness(model: nn.Sequential) -> tuple[nn.Sequential, list[list[int]]]:
    """Reorder the hidden units of an MLP so neighbouring units have similar weights.

    ``model`` is an ``nn.Sequential`` of ``nn.Linear``, ``nn.BatchNorm1d`` and parameter-free
    elementwise modules (activations, dropout). Each hidden width between two Linear layers is
    one dependency group, ordered by :func:`shortest_hamiltonian_path` over the L1 distances
    of :func:`_channel_features`. Returns a permuted copy (same function) and the orders.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential MLP, got {type(model).__name__}")
    out = copy.deepcopy(model)
    modules = list(out)
    linears = [i for i, m in enumerate(modules) if isinstance(m, nn.Linear)]
    for i, m in enumerate(out):
        if isinstance(m, nn.Linear | nn.BatchNorm1d):
            continue
        if any(True for _ in m.parameters()) or any(True for _ in m.buffers()):
            raise TypeError(f"model[{i}] ({type(m).__name__}) is not supported by the permutation")
    orders: list[list[int]] = []
    for a, b in itertools.pairwise(linears):
        la, lb = modules[a], modules[b]
        if not (isinstance(la, nn.Linear) and isinstance(lb, nn.Linear)):
            raise TypeError("dependency groups must lie between two nn.Linear layers")
        feats = _channel_features(la, lb)
        order = shortest_hamiltonian_path(torch.cdist(feats, feats, p=1))
        idx = torch.tensor(order, device=la.weight.device)
        la.weight.copy_(la.weight[idx])
        if la.bias is not None:
            la.bias.copy_(la.bias[idx])
        for m in modules[a + 1 : b]:
            if isinstance(m, nn.BatchNorm1d):
                for t in (m.weight, m.bias, m.running_mean, m.running_var):
                    if isinstance(t, torch.Tensor):
                        t.copy_(t[idx])
        lb.weight.copy_(lb.weight[:, idx])
        orders.append(order)
    return out, orders
