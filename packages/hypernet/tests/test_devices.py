"""Hypernetworks (MIP, NeuMeta) give the CPU's weights, outputs and gradients on the device.

On a CPU-only machine these tests check determinism; with ``TORCHLOOM_DEVICE=cuda`` they catch
CPU-only code paths (tensors made without ``device=``, host generators, CPU-only kernels).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchloom.core.testing import assert_matches_cpu
from torchloom.hypernet import MIPHyperNetwork, NeuMeta, hypernetize


@pytest.mark.parametrize("formulation", ["mip", "default"])
def test_mip_hypernetwork_matches_cpu(device: torch.device, formulation: str) -> None:
    torch.manual_seed(0)
    target = hypernetize(nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double())
    hyper = MIPHyperNetwork(
        target, 2, hidden=(8,), formulation=formulation, generator=torch.Generator().manual_seed(0)
    ).double()
    z = torch.rand(4, 2, dtype=torch.float64)
    x = torch.randn(4, 6, 3, dtype=torch.float64)

    def predict(h: MIPHyperNetwork, t: nn.Module, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return t(h(z), x, batched_inputs=True)

    assert_matches_cpu(predict, [hyper, target, z, x], device)


def test_neumeta_matches_cpu(device: torch.device) -> None:
    torch.manual_seed(0)
    meta = NeuMeta(3, 2, depth=2, max_width=8, hidden=8, layers=2, num_freqs=2).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    for width in (4, 7):  # a trained-range width and one in between
        assert_matches_cpu(
            lambda m, x, w=width: m(
                x, w, noise=0.5, samples=2, generator=torch.Generator().manual_seed(1)
            ),
            [meta, x],
            device,
        )
    assert_matches_cpu(
        lambda m, x: m.sample(6, samples=2, generator=torch.Generator().manual_seed(2))(x),
        [meta, x],
        device,
    )
