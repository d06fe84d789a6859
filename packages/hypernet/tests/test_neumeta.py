"""NeuMeta permutation smoothing: function unchanged, smoother weights, TSP near exact."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from torchloom.hypernet import path_length, permute_for_smoothness, shortest_hamiltonian_path


def _brute(dist: torch.Tensor) -> float:
    n = dist.shape[0]
    return min(path_length(dist, list(p)) for p in itertools.permutations(range(n)))


@pytest.mark.parametrize("n", [3, 5, 7])
def test_held_karp_is_exact(n):
    g = torch.Generator().manual_seed(n)
    pts = torch.rand(n, 3, generator=g)
    dist = torch.cdist(pts, pts, p=1)
    order = shortest_hamiltonian_path(dist, exact=True)
    assert sorted(order) == list(range(n))
    assert path_length(dist, order) == pytest.approx(_brute(dist))


@pytest.mark.parametrize("seed", range(5))
def test_two_opt_within_bound_of_exact(seed):
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(9, 4, generator=g)
    dist = torch.cdist(pts, pts, p=1)
    exact = path_length(dist, shortest_hamiltonian_path(dist, exact=True))
    heur_order = shortest_hamiltonian_path(dist, exact=False)
    assert sorted(heur_order) == list(range(9))
    heur = path_length(dist, heur_order)
    assert exact - 1e-9 <= heur <= 1.15 * exact


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 14), st.integers(2, 14), st.booleans())
def test_permutation_keeps_function(w1, w2, batchnorm):
    layers: list[nn.Module] = [nn.Linear(5, w1)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(w1))
    layers += [nn.ReLU(), nn.Linear(w1, w2), nn.Tanh(), nn.Linear(w2, 3)]
    model = nn.Sequential(*layers)
    if batchnorm:
        model.train()
        model(torch.randn(32, 5))  # non-trivial running statistics
    model.eval()
    permuted, orders = permute_for_smoothness(model)
    assert [sorted(o) for o in orders] == [list(range(w1)), list(range(w2))]
    x = torch.randn(6, 5)
    torch.testing.assert_close(permuted(x), model(x))


def _roughness(w: torch.Tensor) -> float:
    return float((w[1:] - w[:-1]).detach().abs().sum())


def test_permutation_smooths_neighbouring_units():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 40), nn.ReLU(), nn.Linear(40, 4))
    permuted, _ = permute_for_smoothness(model)
    assert _roughness(permuted[0].weight) < 0.9 * _roughness(model[0].weight)


def test_bad_input():
    with pytest.raises(TypeError, match="Sequential"):
        permute_for_smoothness(nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="LayerNorm"):
        permute_for_smoothness(nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3), nn.Linear(3, 1)))
    with pytest.raises(ValueError, match="square"):
        shortest_hamiltonian_path(torch.zeros(2, 3))
