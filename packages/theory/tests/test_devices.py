"""Kernels, collapse metrics and random-network samplers give the CPU's values on the device.

On a CPU-only machine these tests check determinism; with ``TORCHLOOM_DEVICE=cuda`` they catch
CPU-only code paths (tensors made without ``device=``, host generators, CPU-only kernels).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from torchloom.core.testing import assert_matches_cpu
from torchloom.theory import (
    infinite_width_kernels,
    kde_mutual_information,
    linear_cka,
    neural_collapse_metrics,
    nngp_kernel,
    ntk_kernel,
    sample_preactivations,
)


@pytest.mark.parametrize("method", ["closed", "quadrature"])
def test_infinite_width_kernels_match_cpu(device: torch.device, method: str) -> None:
    x = torch.randn(5, 3, dtype=torch.float64)
    y = torch.randn(4, 3, dtype=torch.float64)
    for act in ("relu", "erf"):
        assert_matches_cpu(
            lambda a, b, act=act: (
                nngp_kernel(a, b, depth=3, activation=act, method=method),
                ntk_kernel(a, b, depth=3, activation=act, method=method),
            ),
            [x, y],
            device,
            grad=False,
            atol=1e-9,
        )
    assert_matches_cpu(
        lambda a: infinite_width_kernels(a, depth=2, method=method), [x], device, grad=False
    )


def test_sampled_networks_and_representation_metrics_match_cpu(device: torch.device) -> None:
    x = torch.randn(6, 3, dtype=torch.float64)
    assert_matches_cpu(
        lambda x: sample_preactivations(
            x, 8, 3, 4, activation="tanh", generator=torch.Generator().manual_seed(0)
        ),
        [x],
        device,
        grad=False,
    )
    feats = torch.randn(12, 4, dtype=torch.float64)
    labels = torch.arange(12) % 3
    w = torch.randn(3, 4, dtype=torch.float64)

    def metrics(f: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> list[float]:
        nc = neural_collapse_metrics(f, y, w, torch.zeros(3, dtype=f.dtype, device=f.device))
        return [float(v) for v in dataclasses.astuple(nc)] + [
            linear_cka(f, f[:, :2] ** 2),
            *kde_mutual_information(f, y),
        ]

    # floats come back: compare them through tensors
    assert_matches_cpu(
        lambda f, y, w: torch.tensor(metrics(f, y, w), device=f.device),
        [feats, labels, w],
        device,
        grad=False,
        atol=1e-9,
    )
