"""Implicit differentiation: IFT gradient == unrolled gradient, gradcheck, memory, failures."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from torchloom.core.implicit import ConvergenceError, fixed_point, root_solve
from torchloom.core.warnings import TorchloomWarning

SOLVERS = ["anderson", "broyden", "picard"]
ROOT_SOLVERS = ["broyden", "newton"]
F64 = torch.float64


def _contraction(d: int, norm: float = 0.8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d, d, generator=g, dtype=F64)
    return norm * W / torch.linalg.matrix_norm(W, 2)


def _f(z: torch.Tensor, W: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # ‖W‖₂ < 1 and tanh 1-Lipschitz: a contraction in z
    return torch.tanh(z @ W.T + x)


def _unrolled(f: Any, z0: torch.Tensor, *params: Any, n: int = 300) -> torch.Tensor:
    z = z0
    for _ in range(n):
        z = f(z, *params)
    return z


@pytest.mark.parametrize("solver", SOLVERS)
def test_implicit_gradient_equals_unrolled_gradient(solver: str) -> None:
    W = _contraction(5).requires_grad_(True)
    x = torch.randn(4, 5, dtype=F64, requires_grad=True)
    z0 = torch.zeros(4, 5, dtype=F64)
    target = torch.randn(4, 5, dtype=F64)
    z_ref = _unrolled(_f, z0, W, x)
    g_ref = torch.autograd.grad((z_ref - target).square().sum(), (W, x))
    z = fixed_point(_f, z0, W, x, solver=solver, tol=1e-12, max_iter=300)  # type: ignore[arg-type]
    g = torch.autograd.grad((z - target).square().sum(), (W, x))
    torch.testing.assert_close(z, z_ref, rtol=0, atol=1e-10)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-8)


@pytest.mark.parametrize("solver", SOLVERS)
def test_gradient_reaches_closed_over_module_parameters(solver: str) -> None:
    torch.manual_seed(1)
    lin = nn.Linear(6, 6).double()
    with torch.no_grad():
        lin.weight.mul_(0.7 / torch.linalg.matrix_norm(lin.weight, 2))
    x = torch.randn(3, 6, dtype=F64)

    def f(z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(lin(z) + x)

    z0 = torch.zeros(3, 6, dtype=F64)
    ref = torch.autograd.grad(_unrolled(f, z0).sum(), list(lin.parameters()))
    z = fixed_point(f, z0, solver=solver, tol=1e-12, max_iter=300)  # type: ignore[arg-type]
    got = torch.autograd.grad(z.sum(), list(lin.parameters()))
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-8)


@pytest.mark.parametrize("solver", SOLVERS)
def test_fixed_point_gradcheck(solver: str) -> None:
    W = _contraction(3, norm=0.6).requires_grad_(True)
    x = torch.randn(2, 3, dtype=F64, requires_grad=True)
    z0 = torch.zeros(2, 3, dtype=F64)

    def fn(W: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return fixed_point(_f, z0, W, x, solver=solver, tol=1e-13, max_iter=200)  # type: ignore[arg-type]

    assert torch.autograd.gradcheck(fn, (W, x), eps=1e-5, atol=1e-6)


def test_fixed_point_unbatched_problem_gradcheck() -> None:
    # z of shape (2, 3) is ONE problem: W couples all six entries.
    W = _contraction(6, norm=0.6, seed=3).requires_grad_(True)
    x = torch.randn(2, 3, dtype=F64, requires_grad=True)

    def f(z: torch.Tensor, W: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh((W @ z.reshape(6)).reshape(2, 3) + x)

    def fn(W: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return fixed_point(f, torch.zeros(2, 3, dtype=F64), W, x, tol=1e-13, batched=False)

    z = fn(W, x)
    assert z.shape == (2, 3)
    torch.testing.assert_close(z, f(z, W, x), rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(fn, (W, x), eps=1e-5, atol=1e-6)


@pytest.mark.parametrize("solver", ROOT_SOLVERS)
def test_root_solve_gradcheck_and_analytic_gradient(solver: str) -> None:
    a = (torch.rand(3, 4, dtype=F64) + 0.5).requires_grad_(True)

    def g(z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return z**3 + z - a

    z0 = torch.zeros(3, 4, dtype=F64)
    z = root_solve(g, z0, a, solver=solver, tol=1e-13)  # type: ignore[arg-type]
    assert g(z, a).abs().max() < 1e-12
    (grad,) = torch.autograd.grad(z.sum(), a)
    torch.testing.assert_close(grad, 1 / (3 * z.detach() ** 2 + 1), rtol=1e-10, atol=0)

    def fn(a: torch.Tensor) -> torch.Tensor:
        return root_solve(g, z0, a, solver=solver, tol=1e-13)  # type: ignore[arg-type]

    assert torch.autograd.gradcheck(fn, (a,), eps=1e-5, atol=1e-6)


@pytest.mark.parametrize("solver", ROOT_SOLVERS)
def test_root_solve_coupled_system_gradcheck(solver: str) -> None:
    # g(z) = A z + 0.1 z³ − b with A of negative spectrum: Broyden must not assume J ≈ +I.
    A = -(torch.eye(3, dtype=F64) * 2 + 0.3 * _contraction(3, seed=5)).requires_grad_(True)
    b = torch.randn(2, 3, dtype=F64, requires_grad=True)

    def g(z: torch.Tensor, A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return z @ A.T + 0.1 * z**3 - b

    def fn(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return root_solve(g, torch.zeros(2, 3, dtype=F64), A, b, solver=solver, tol=1e-13)  # type: ignore[arg-type]

    z = fn(A, b)
    assert g(z, A, b).abs().max() < 1e-12
    assert torch.autograd.gradcheck(fn, (A, b), eps=1e-5, atol=1e-6)


def _graph_size(t: torch.Tensor) -> int:
    seen: set[Any] = set()
    stack = [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(n for n, _ in node.next_functions)
    return len(seen)


@pytest.mark.parametrize("solver", SOLVERS)
def test_backward_memory_does_not_grow_with_iterations(solver: str) -> None:
    W = _contraction(8, norm=0.9).requires_grad_(True)
    x = torch.randn(2, 8, dtype=F64, requires_grad=True)
    z0 = torch.zeros(2, 8, dtype=F64)
    sizes, saved, iters = [], [], []
    for tol in (1e-2, 1e-12):
        count = [0]

        def pack(t: torch.Tensor, count: list[int] = count) -> torch.Tensor:
            count[0] += 1
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            z, info = fixed_point(
                _f,
                z0,
                W,
                x,
                solver=solver,  # type: ignore[arg-type]
                tol=tol,
                max_iter=500,
                return_info=True,
            )
        sizes.append(_graph_size(z))
        saved.append(count[0])
        iters.append(info["iterations"])
    assert iters[1] >= 3 * iters[0], iters  # the tight solve ran many more iterations
    assert sizes[0] == sizes[1] and sizes[0] < 20, sizes
    assert saved[0] == saved[1], saved


def test_solution_and_gradient_do_not_depend_on_z0() -> None:
    W = _contraction(4).requires_grad_(True)
    x = torch.randn(3, 4, dtype=F64)
    out = []
    for z0 in (torch.zeros(3, 4, dtype=F64), torch.randn(3, 4, dtype=F64)):
        z = fixed_point(_f, z0, W, x, tol=1e-12)
        out.append((z, torch.autograd.grad(z.sum(), W)[0]))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=0, atol=1e-10)
    torch.testing.assert_close(out[0][1], out[1][1], rtol=0, atol=1e-9)


@pytest.mark.parametrize("solver", SOLVERS)
def test_batched_residual_per_element(solver: str, device: torch.device) -> None:
    # Batch elements contract at very different rates; every one must meet tol.
    rates = torch.tensor([0.1, 0.5, 0.95], device=device)
    b = torch.tensor([[1.0, -2.0], [3.0, 0.5], [-1.0, 1.0]], device=device)

    def f(z: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return rates[:, None] * torch.sin(z) + b

    z, info = fixed_point(
        f,
        torch.zeros(3, 2, device=device),
        b,
        solver=solver,  # type: ignore[arg-type]
        tol=1e-5,
        max_iter=500,
        return_info=True,
    )
    assert z.dtype == torch.float32 and z.device == device
    assert info["converged"] and info["residuals"].shape == (3,)
    assert bool((info["residuals"] <= 1e-5).all()) and info["residual"] <= 1e-5
    resid = (f(z, b) - z).norm(dim=1) / f(z, b).norm(dim=1)
    assert bool((resid <= 1e-5).all())


def test_no_graph_when_nothing_requires_grad() -> None:
    W = _contraction(4)
    z = fixed_point(_f, torch.zeros(2, 4, dtype=F64), W, torch.randn(2, 4, dtype=F64))
    assert not z.requires_grad
    r = root_solve(lambda z, a: z - a, torch.zeros(2, 3), torch.ones(2, 3))
    assert not r.requires_grad
    torch.testing.assert_close(r, torch.ones(2, 3))


def test_forward_non_convergence_raises_with_residual() -> None:
    def f(z: torch.Tensor) -> torch.Tensor:  # oscillates 0, 1, 0, 1, ...: residual stays 1
        return 1 - z

    with pytest.raises(ConvergenceError, match=r"residual 1\.000e\+00 > tol .* after 7 iter") as e:
        fixed_point(f, torch.zeros(2, 3), solver="picard", max_iter=7)
    assert isinstance(e.value, RuntimeError)
    assert e.value.iterations == 7 and e.value.residual == pytest.approx(1.0)

    with pytest.warns(TorchloomWarning, match="residual"):
        z, info = fixed_point(
            f, torch.zeros(2, 3), solver="picard", max_iter=7, on_fail="warn", return_info=True
        )
    assert not info["converged"] and info["iterations"] == 7 and z.shape == (2, 3)

    with pytest.raises(ConvergenceError, match="root_solve forward solve did not converge"):
        root_solve(lambda z: z**2 + 1, torch.zeros(2, 1), max_iter=20)


def test_backward_non_convergence_raises_or_warns() -> None:
    W = _contraction(6, norm=0.95).requires_grad_(True)
    x = torch.randn(2, 6, dtype=F64)
    z0 = torch.zeros(2, 6, dtype=F64)
    for on_fail in ("raise", "warn"):
        z = fixed_point(
            _f,
            z0,
            W,
            x,
            solver="picard",
            tol=1e-10,
            max_iter=1000,
            backward_tol=1e-12,
            backward_max_iter=3,
            on_fail=on_fail,  # type: ignore[arg-type]
        )
        if on_fail == "raise":
            with pytest.raises(ConvergenceError, match="backward .* residual"):
                z.sum().backward()
        else:
            with pytest.warns(TorchloomWarning, match="backward .* residual"):
                z.sum().backward()
            assert W.grad is not None and torch.isfinite(W.grad).all()


def test_bad_inputs() -> None:
    z0 = torch.zeros(2, 3)
    ident: Any = lambda z: 0.5 * z  # noqa: E731
    with pytest.raises(TypeError, match="f must be callable"):
        fixed_point(3, z0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="z0"):
        fixed_point(ident, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="solver"):
        fixed_point(ident, z0, solver="newton")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tol"):
        fixed_point(ident, z0, tol=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        fixed_point(ident, z0, max_iter=0)
    with pytest.raises(ValueError, match="on_fail"):
        fixed_point(ident, z0, on_fail="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="solver_options"):
        fixed_point(ident, z0, solver_options={"history": 3})
    with pytest.raises(ValueError, match="memory"):
        fixed_point(ident, z0, solver_options={"memory": 0})
    with pytest.raises(ValueError, match=r"f\(z, \*params\) must return .* \(2, 3\), got \(3, 2\)"):
        fixed_point(lambda z: z.T, z0)
    with pytest.raises(ValueError, match="batch dimension"):
        fixed_point(ident, torch.tensor(1.0))
    with pytest.raises(ValueError, match="solver"):
        root_solve(ident, z0, solver="picard")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="g must be callable"):
        root_solve(None, z0)  # type: ignore[arg-type]


def test_scalar_problem_unbatched() -> None:
    # x = cos(x): the Dottie number; dx/da of x = cos(x) + a at a = 0 is 1 / (1 + sin x*)
    a = torch.tensor(0.0, dtype=F64, requires_grad=True)
    x = fixed_point(
        lambda z, a: torch.cos(z) + a, torch.tensor(1.0, dtype=F64), a, tol=1e-14, batched=False
    )
    assert x.shape == ()
    torch.testing.assert_close(x.detach(), torch.tensor(0.7390851332151607, dtype=F64))
    (g,) = torch.autograd.grad(x, a)
    torch.testing.assert_close(g, 1 / (1 + torch.sin(x.detach())))
