"""Deep equilibrium layer: fixed point reached, implicit gradient == unrolled gradient."""

from __future__ import annotations

import pytest
import torch

from torchloom.core.testing import assert_gradcheck
from torchloom.neural_de import DEQ, DEQCell


def _unrolled(cell: DEQCell, x: torch.Tensor, hidden: int, steps: int = 200) -> torch.Tensor:
    z = x.new_zeros(x.shape[0], hidden)
    for _ in range(steps):
        z = cell(z, x)
    return z


@pytest.mark.parametrize("solver", ["anderson", "broyden", "picard"])
def test_fixed_point_and_gradient_match_unrolled(solver: str, device: torch.device) -> None:
    cell = DEQCell(3, 6, contraction=0.8).double().to(device)
    deq = DEQ(cell, 6, solver=solver, tol=1e-10, max_iter=300)  # type: ignore[arg-type]
    x = torch.randn(5, 3, dtype=torch.float64, device=device, requires_grad=True)
    z = deq(x)
    torch.testing.assert_close(cell(z, x), z, rtol=1e-8, atol=1e-8)
    w = torch.randn_like(z)
    g_implicit = torch.autograd.grad((z * w).sum(), [x, *cell.parameters()])
    z_ref = _unrolled(cell, x, 6)
    g_unrolled = torch.autograd.grad((z_ref * w).sum(), [x, *cell.parameters()])
    for a, b in zip(g_implicit, g_unrolled):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


def test_contraction_bound_holds() -> None:
    cell = DEQCell(2, 8, contraction=0.5)
    with torch.no_grad():
        cell.weight.mul_(10)
    assert float(torch.linalg.matrix_norm(cell.recurrent_weight().detach(), ord=2)) <= 0.5 + 1e-6


def test_gradcheck_deq() -> None:
    cell = DEQCell(2, 3, contraction=0.7).double()
    deq = DEQ(cell, 3, solver="anderson", tol=1e-12, max_iter=500)
    x = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert_gradcheck(deq, (x,), atol=1e-6, rtol=1e-4)


def test_bad_input() -> None:
    deq = DEQ(DEQCell(2, 3), 3)
    with pytest.raises(ValueError, match=r"x must have shape \(B, D\)"):
        deq(torch.zeros(2))
    with pytest.raises(TypeError, match="x must be a floating-point"):
        deq(torch.zeros(2, 2, dtype=torch.long))
