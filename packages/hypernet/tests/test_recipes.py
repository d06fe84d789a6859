"""Every recipe of torchloom.hypernet runs in quick mode and its checked claims hold."""

from __future__ import annotations

import pytest

import torchloom.hypernet.recipes
from torchloom.core.testing import assert_recipe_holds, recipe_params


@pytest.mark.parametrize("r", recipe_params(torchloom.hypernet.recipes))
def test_recipe_holds(r, tmp_path):
    assert_recipe_holds(r, tmp_path)


def test_mip_task_loss_matches_brute_force():
    """The hypernet.mip task loss: (1 − γ)·MSE + γ·mean squared image gradient, by loops."""
    import torch

    from torchloom.hypernet.recipes import _smoothness, _weighted_loss

    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 64, generator=g, dtype=torch.float64)
    x_hat = torch.rand(3, 5, 64, generator=g, dtype=torch.float64)
    gamma = torch.rand(3, 1, generator=g, dtype=torch.float64)
    want = []
    for j in range(3):
        rec = reg = 0.0
        for b in range(5):
            im = x_hat[j, b].reshape(8, 8)
            rec += float(((x_hat[j, b] - x[b]) ** 2).mean())
            dx = sum(float(im[r, c + 1] - im[r, c]) ** 2 for r in range(8) for c in range(7))
            dy = sum(float(im[r + 1, c] - im[r, c]) ** 2 for r in range(7) for c in range(8))
            reg += dx / 56 + dy / 56
        gj = float(gamma[j, 0])
        want.append((1 - gj) * rec / 5 + gj * reg / 5)
    got = _weighted_loss(x_hat, x, gamma)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))
    # a constant image is perfectly smooth
    assert float(_smoothness(torch.full((2, 64), 0.3)).abs().max()) == 0.0
