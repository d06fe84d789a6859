"""Agreement with DeepXDE (the issue's peer library): sampling, residuals, training setup."""

from __future__ import annotations

import importlib.util
import math
from types import ModuleType

import numpy as np
import pytest
import torch

from torchloom.pinn import MLP, Burgers, ReactionDiffusion, hammersley, partial
from torchloom.pinn.peers import deepxde_soft_pinn, import_deepxde

if importlib.util.find_spec("deepxde") is None:  # the peer is optional
    pytest.skip("deepxde is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def dde() -> ModuleType:
    return import_deepxde()


@pytest.mark.parametrize("dim", [2, 3, 4])
@pytest.mark.parametrize("n", [7, 64])
def test_hammersley_matches_deepxde(dde: ModuleType, dim: int, n: int) -> None:
    # DeepXDE (scikit-optimize) drops the first point (the origin) and stores the i/n column
    # last; otherwise the point sets are the same
    theirs = dde.geometry.sampler.sample(n, dim, "Hammersley")
    ours = np.roll(hammersley(n + 1, dim)[1:], -1, axis=1)
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-6)  # DeepXDE rounds to float32


@pytest.mark.parametrize("problem", [Burgers(nu=0.01 / math.pi), ReactionDiffusion(1.0, 5.0)])
def test_residual_matches_deepxde_autodiff(dde: ModuleType, problem: Burgers) -> None:
    torch.manual_seed(0)
    net = MLP(2, 1, width=16, depth=2).double()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(50, 2, generator=g, dtype=torch.float64) * 2.0 - 1.0
    x.requires_grad_(True)
    u = net(x)
    ours = problem.pde(u, partial(u, x, (1,)), partial(u, x, (0,)), partial(u, x, (0, 0)))
    dde.grad.clear()
    theirs = problem.pde(
        u,
        dde.grad.jacobian(u, x, i=0, j=1),
        dde.grad.jacobian(u, x, i=0, j=0),
        dde.grad.hessian(u, x, i=0, j=0),
    )
    dde.grad.clear()
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    # and neither is trivially zero: the residual of an untrained network is O(1)
    assert float(ours.detach().abs().mean()) > 1e-3


def test_deepxde_soft_pinn_trains_and_restores_defaults(dde: ModuleType) -> None:
    before = (torch.get_default_dtype(), torch.get_default_device())
    pb = Burgers(nu=0.1 / math.pi)
    untrained = deepxde_soft_pinn(pb, steps=1, n_domain=32, seed=0)
    trained = deepxde_soft_pinn(pb, steps=80, n_domain=32, seed=0)  # sets float64 inside
    assert (torch.get_default_dtype(), torch.get_default_device()) == before
    assert trained.final_loss < 0.7 * untrained.final_loss
    pts = torch.tensor([[-0.5, 0.0], [0.5, 0.0]], dtype=torch.float64)
    # the initial condition −sin(πx) is learned: u(∓0.5, 0) moves towards ±1
    out = trained.predict(pts)
    assert out.shape == (2,)
    assert float(out[0]) > 0.3 and float(out[1]) < -0.3
