"""Counterfactual search, TELL and the mode classifier give the CPU's values on the test device.

On a CPU-only machine these tests check determinism; with ``TORCHLOOM_DEVICE=cuda`` they catch
CPU-only code paths (tensors made without ``device=``, host generators, CPU-only kernels).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from torchloom.core.testing import assert_matches_cpu
from torchloom.explain import (
    TELL,
    ModeClassifier,
    feasibility_log_prob,
    stability,
    trex,
    wachter_counterfactual,
)


def _classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1), nn.Sigmoid()).double()


def test_counterfactual_searches_match_cpu(device: torch.device) -> None:
    x = torch.randn(4, 3, dtype=torch.float64)

    def searches(m: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        prob = lambda z: m(z).squeeze(-1)  # noqa: E731
        cf, valid = wachter_counterfactual(prob, x, steps=20)
        stab = stability(prob, cf, 0.1, k=16, generator=torch.Generator().manual_seed(1))
        moved = trex(
            prob, cf, 0.6, 0.1, k=16, max_steps=10, generator=torch.Generator().manual_seed(2)
        )
        return [cf, valid, stab, *dataclasses.astuple(moved)]

    assert_matches_cpu(searches, [_classifier(), x], device, grad=False, atol=1e-8, rtol=1e-6)


def test_tell_and_mode_models_match_cpu(device: torch.device) -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 5, dtype=torch.float64)
    tell = TELL(5, 3, latent=2, hidden=(8,)).double()
    assert_matches_cpu(lambda m, x: m(x), [tell, x], device)
    modes = ModeClassifier(3, hidden=8, features=4, generator=torch.Generator().manual_seed(0))
    pts = torch.rand(2, 5, 2, dtype=torch.float64)
    feasible = torch.tensor([[1, 1, 0], [0, 1, 1], [0, 0, 1]], dtype=torch.float64)

    def log_feasible(m: ModeClassifier, p: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(m(p), -1)
        return feasibility_log_prob(log_p, f, start=0, end=2)

    assert_matches_cpu(log_feasible, [modes.double(), pts, feasible], device)
