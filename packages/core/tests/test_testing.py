"""``torchloom.core.testing.assert_matches_cpu``: it passes on faithful code and catches drift."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchloom.core.testing import assert_matches_cpu


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
