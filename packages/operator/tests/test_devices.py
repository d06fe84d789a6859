"""Every operator network and solver gives the CPU's values and gradients on the test device.

On a CPU-only machine these tests check determinism; with ``TORCHLOOM_DEVICE=cuda`` they catch
CPU-only code paths (tensors made without ``device=``, host generators, CPU-only kernels).
"""

from __future__ import annotations

import torch

from torchloom.core.testing import assert_matches_cpu
from torchloom.operator import (
    DCDMNet,
    DeepONet,
    FNO2d,
    MgNO,
    MultiONet,
    dcdm_loss,
    dcdm_solve,
    net_direction,
    poisson_2d,
)


def test_grid_operators_match_cpu(device: torch.device) -> None:
    torch.manual_seed(0)
    # zero padding coarsens grids of n = 2^k - 1 points, periodic ones n = 2^k
    for n, model in (
        (15, MgNO(channels=4, depth=2, levels=2).double()),
        (16, MgNO(channels=4, depth=1, levels=2, padding="circular").double()),
        (16, FNO2d(width=4, modes=3, depth=2).double()),
    ):
        a = torch.rand(2, 1, n, n, dtype=torch.float64)
        assert_matches_cpu(lambda m, a: m(a), [model, a], device)


def test_point_operators_match_cpu(device: torch.device) -> None:
    torch.manual_seed(0)
    beta = torch.rand(3, 5, dtype=torch.float64)
    x = torch.rand(7, 2, dtype=torch.float64)
    multi = MultiONet(5, width=8, depth=3).double()
    torch.nn.init.normal_(multi.w)  # w starts at zero: make every layer's term count
    assert_matches_cpu(lambda m, b, x: m.value_and_grad(b, x), [multi, beta, x], device)
    assert_matches_cpu(
        lambda m, b, x: m(b, x), [DeepONet(5, width=8, depth=2, basis=4).double(), beta, x], device
    )


def test_dcdm_network_loss_and_solver_match_cpu(device: torch.device) -> None:
    torch.manual_seed(0)
    problem = poisson_2d(8)
    net = DCDMNet(channels=4, levels=2).double()
    b = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    assert_matches_cpu(
        lambda m, b: dcdm_loss(m(b), b, problem.apply), [net, b], device, atol=1e-8, rtol=1e-6
    )
    rhs = torch.randn(64, dtype=torch.float64)
    assert_matches_cpu(
        lambda m, b: dcdm_solve(problem, b, net_direction(m, problem), tol=1e-8).x,
        [net, rhs],
        device,
        grad=False,
        atol=1e-8,
        rtol=1e-6,
    )
