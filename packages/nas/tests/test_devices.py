"""Supernets, mixing rules, hypergradients and derived networks give the CPU's values on the device.

On a CPU-only machine these tests check determinism; with ``TORCHLOOM_DEVICE=cuda`` they catch
CPU-only code paths (tensors made without ``device=``, host generators, CPU-only kernels).
"""

from __future__ import annotations

import pytest
import torch

from torchloom.core.testing import assert_matches_cpu
from torchloom.nas import (
    BinaryPathMixing,
    ChainSupernet,
    GumbelMixing,
    MaxWMixing,
    SoftmaxMixing,
    Supernet,
    build_from_supernet,
    darts_hypergradient,
    derive_genotype,
)

OPS = ("none", "skip_connect", "max_pool_3x3", "sep_conv_3x3", "dil_conv_3x3")


def _supernet(mixing: object = None) -> Supernet:
    g = torch.Generator().manual_seed(0)
    return Supernet(
        C=2,
        layers=2,
        steps=2,
        ops=OPS,
        reductions=(1,),
        alpha_init_std=0.5,
        generator=g,
        mixing=mixing,  # type: ignore[arg-type]
    ).double()


@pytest.mark.parametrize(
    "mixing",
    [
        SoftmaxMixing(),
        MaxWMixing(),
        GumbelMixing(tau=0.5, generator=torch.Generator().manual_seed(3)),
        BinaryPathMixing(two_path=True, generator=torch.Generator().manual_seed(4)),
    ],
    ids=["softmax", "maxw", "gumbel", "binary"],
)
def test_supernet_forward_backward_matches_cpu(device: torch.device, mixing: object) -> None:
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    assert_matches_cpu(lambda m, x: m(x), [_supernet(mixing).eval(), x], device)


def test_hypergradient_and_derived_network_match_cpu(device: torch.device) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (2, 6), generator=g)

    def hypergradient(m: Supernet, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        grads, _ = darts_hypergradient(m, (x[0], y[0]), (x[1], y[1]), 0.5, eps=1e-5)
        return list(grads)

    assert_matches_cpu(hypergradient, [_supernet(), x, y], device, grad=False, atol=1e-8)

    def derived(m: Supernet, x: torch.Tensor) -> torch.Tensor:
        net = build_from_supernet(derive_genotype(m), m)
        return net(x)

    assert_matches_cpu(derived, [_supernet().eval(), x[0]], device)


def test_chain_supernet_matches_cpu(device: torch.device) -> None:
    net = (
        ChainSupernet(
            stem_channels=4,
            stages=((4, 2, 1),),
            ops=("mb_k3_e3", "zero"),
            generator=torch.Generator().manual_seed(0),
        )
        .double()
        .eval()
    )
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    assert_matches_cpu(lambda m, x: m(x), [net, x], device)
