"""``torchloom.core.nn.mlp``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchloom.core.nn import mlp


def test_mlp_is_the_composition_of_its_layers() -> None:
    net = mlp([3, 5, 4, 2], nn.Tanh)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3, 5), (5, 4), (4, 2)]
    assert sum(isinstance(m, nn.Tanh) for m in net) == 2  # between layers, none after the last
    x = torch.randn(7, 3)
    h = x
    for i, lin in enumerate(linears):
        h = lin(h)
        if i < 2:
            h = torch.tanh(h)
    torch.testing.assert_close(net(x), h)
    assert len(mlp([3, 2])) == 1


@pytest.mark.parametrize("sizes", [[3], [], [3, 0], [3, 2.5]])
def test_mlp_rejects_bad_sizes(sizes: list) -> None:
    with pytest.raises(ValueError, match="sizes"):
        mlp(sizes)
