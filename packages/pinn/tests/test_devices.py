"""PINN models, constraint solves and the MPM simulator give the CPU's values on the test device.

On a CPU-only machine these tests check determinism; with ``TORCHLOOM_DEVICE=cuda`` they catch
CPU-only code paths (tensors made without ``device=``, host generators, CPU-only kernels).
"""

from __future__ import annotations

import torch

from torchloom.core.testing import assert_matches_cpu
from torchloom.pinn import (
    MLP,
    MPM2D,
    ElasticLaw,
    FlameConfig,
    FlamePINN,
    HardConstraintMoE,
    MPMState,
    PlasticityLaw,
    ReactionDiffusion,
    laplacian,
)


def test_residuals_and_flame_pinn_match_cpu(device: torch.device) -> None:
    torch.manual_seed(0)
    net = MLP(2, 1, width=8, depth=2).double()
    x = torch.rand(6, 2, dtype=torch.float64)
    assert_matches_cpu(lambda m, x: laplacian(m(x), x), [net, x], device)
    flame = FlamePINN(FlameConfig(), width=8, depth=2).double()
    xs = torch.linspace(0, FlameConfig().length, 7, dtype=torch.float64)[:, None]
    assert_matches_cpu(lambda m, x: (m(x), m.residual(x)), [flame, xs], device, rtol=1e-6)


def test_hard_constraint_moe_solve_matches_cpu(device: torch.device) -> None:
    torch.manual_seed(0)
    moe = HardConstraintMoE(
        ReactionDiffusion(rho=1.0), n_experts=2, n_basis=4, width=8, lm_iter=5
    ).double()

    def solve_and_evaluate(m: HardConstraintMoE, pts: torch.Tensor) -> torch.Tensor:
        pde, ic, bc_t = m.sample_constraint_points(10, 5, 3, torch.Generator().manual_seed(0))
        w = m.solve(pde, ic, bc_t)
        return m.evaluate(pts, w)

    pts = torch.rand(9, 2, dtype=torch.float64)
    assert_matches_cpu(solve_and_evaluate, [moe, pts], device, atol=1e-7, rtol=1e-5)


def test_nclaw_laws_and_mpm_rollout_match_cpu(device: torch.device) -> None:
    torch.manual_seed(0)
    F = torch.eye(2, dtype=torch.float64) + 0.1 * torch.randn(5, 2, 2, dtype=torch.float64)
    assert_matches_cpu(lambda m, F: m(F), [ElasticLaw(width=8).double(), F], device)
    assert_matches_cpu(lambda m, F: m(F), [PlasticityLaw(width=8).double(), F], device)
    u = (torch.arange(4, dtype=torch.float64) + 0.5) / 4
    X, Y = torch.meshgrid(u, u, indexing="ij")
    x0 = torch.stack([0.4 + 0.2 * X.ravel(), 0.4 + 0.2 * Y.ravel()], 1)
    sim = MPM2D(n_grid=16, dt=1e-3)

    def rollout(law: ElasticLaw, x: torch.Tensor) -> torch.Tensor:
        return sim.rollout(MPMState.at_rest(x, torch.zeros_like(x)), 3, law)[-1].x

    assert_matches_cpu(rollout, [ElasticLaw(width=8).double(), x0], device, atol=1e-9)
