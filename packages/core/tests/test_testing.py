"""``torchloom.core.testing``: ``assert_matches_cpu`` and ``assert_central_differences`` pass on
faithful code and catch drift."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchloom.core.testing import assert_central_differences, assert_matches_cpu


def test_matches_for_a_module_and_nested_outputs(device: torch.device) -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(5, 3, dtype=torch.float64)

    def fn(m: nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list]:
        y = m(inputs["x"])
        return y, [y.sum(0), inputs["idx"] + 1]

    assert_matches_cpu(fn, [net, {"x": x, "idx": torch.arange(3)}], device)


def test_catches_outputs_left_on_another_device() -> None:
    # the meta device stands in for an accelerator: a fresh CPU tensor is caught
    with pytest.raises(AssertionError, match="output 1 is on cpu"):
        assert_matches_cpu(lambda x: (2 * x, torch.zeros(3)), [torch.ones(3)], "meta", grad=False)


def test_catches_values_and_gradients_that_differ() -> None:
    calls = []

    def drifting(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return x * len(calls)

    with pytest.raises(AssertionError, match="output 0"):
        assert_matches_cpu(drifting, [torch.ones(3)], "cpu")

    def detaches_second_time(w: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return (w.detach() if len(calls) % 2 else w) * 1.0 + w.detach()

    with pytest.raises(AssertionError, match="None on one device"):
        assert_matches_cpu(detaches_second_time, [torch.ones(2)], "cpu")


def test_host_draws_inside_fn_are_reproducible(device: torch.device) -> None:
    def noisy(x: torch.Tensor) -> torch.Tensor:
        return x + torch.randn(x.shape, dtype=x.dtype).to(x.device)

    assert_matches_cpu(noisy, [torch.zeros(4, dtype=torch.float64)], device)


def test_central_differences_pass_for_a_true_gradient_and_restore_the_parameter() -> None:
    w = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    before = w.detach().clone()
    assert_central_differences(lambda: (torch.sin(w) ** 2).sum(), w, [(0, 0), (2, 3)], 1e-5)
    assert torch.equal(w.detach(), before)


def test_central_differences_catch_a_wrong_gradient() -> None:
    class Wrong(torch.autograd.Function):  # forward sin, backward claims 2 cos
        @staticmethod
        def forward(ctx, x):  # type: ignore[no-untyped-def, override]
            ctx.save_for_backward(x)
            return torch.sin(x)

        @staticmethod
        def backward(ctx, g):  # type: ignore[no-untyped-def, override]
            (x,) = ctx.saved_tensors
            return 2 * g * torch.cos(x)

    w = torch.randn(4, dtype=torch.float64, requires_grad=True)
    with pytest.raises(AssertionError, match=r"gradient at \(1,\)"):
        assert_central_differences(lambda: Wrong.apply(w).sum(), w, [(1,)], 1e-6)
