"""DASS: sparse ops, masks with straight-through gradients, pruning, sparsity-aware search."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchloom.nas.dass import (
    DASS,
    SPARSE_OPS,
    MagnitudeMask,
    SparseConv2d,
    SparseLinear,
    magnitude_prune_,
    sparsify_,
    sparsity_of,
    topk_mask,
)
from torchloom.nas.search import search
from torchloom.nas.space import available_ops, make_op
from torchloom.nas.supernet import Supernet


def test_topk_mask_keeps_largest() -> None:
    w = torch.tensor([[0.1, -3.0, 2.0], [0.5, -0.2, 1.0]])
    m = topk_mask(w.abs(), 0.5)
    assert m.tolist() == [[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]]
    assert topk_mask(w, 0.0).sum() == 6 and topk_mask(w, 1.0).sum() == 1  # at least one kept
    with pytest.raises(ValueError, match="sparsity"):
        topk_mask(w, 1.5)


@pytest.mark.parametrize("mask", ["magnitude", "scores"])
def test_sparse_conv_equals_dense_conv_with_masked_weight(mask: str) -> None:
    conv = SparseConv2d(3, 4, 3, padding=1, sparsity=0.75, mask=mask)  # type: ignore[arg-type]
    x = torch.randn(2, 3, 5, 5)
    w = conv.effective_weight().detach()
    importance = conv.weight.abs() if mask == "magnitude" else conv.scores.abs()  # type: ignore[union-attr]
    expected_mask = topk_mask(importance.detach(), 0.75)
    assert torch.equal(w, conv.weight.detach() * expected_mask)
    assert float((w == 0).float().mean()) == pytest.approx(0.75, abs=1 / w.numel())
    assert torch.allclose(conv(x), F.conv2d(x, w, padding=1), atol=1e-6)


def test_straight_through_gradients() -> None:
    lin = SparseLinear(6, 5, bias=False, sparsity=0.8)
    x = torch.randn(4, 6)
    lin(x).pow(2).sum().backward()
    w_eff = lin.effective_weight().detach()
    # STE: the gradient w.r.t. the weight is the gradient w.r.t. the masked weight, everywhere
    expected = 2 * (x @ w_eff.T).T @ x
    assert lin.weight.grad is not None
    assert torch.allclose(lin.weight.grad, expected, atol=1e-5)
    assert bool((lin.weight.grad[w_eff == 0] != 0).any())  # pruned weights still learn
    scored = SparseLinear(6, 5, bias=False, sparsity=0.5, mask="scores")
    scored(x).sum().backward()
    assert scored.scores is not None and scored.scores.grad is not None
    assert bool((scored.scores.grad != 0).any())


def test_sparse_ops_registered_with_shapes() -> None:
    assert set(SPARSE_OPS) <= set(available_ops())
    x = torch.randn(2, 4, 8, 8)
    for name in SPARSE_OPS:
        for stride in (1, 2):
            assert make_op(name, 4, stride)(x).shape == (2, 4, 8 // stride, 8 // stride)


def test_prune_fixes_masks_and_ratio() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), SparseConv2d(8, 8, 1))
    x = torch.randn(3, 1, 8, 8)
    magnitude_prune_(net, 0.9)
    assert sparsity_of(net) == pytest.approx(0.9, abs=0.01)
    before = net(x).detach()
    zero = [m.weight == 0 for m in net.modules() if isinstance(m, nn.Conv2d)]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()
    after = [m.weight == 0 for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert all(torch.equal(a, b) for a, b in zip(zero, after))  # pruned weights stay pruned
    assert not torch.allclose(net(x), before)  # the survivors were trained


def test_magnitude_mask_parametrisation_and_schedule() -> None:
    conv = nn.Conv2d(2, 3, 3)
    masks = sparsify_(conv, 0.5)
    assert len(masks) == 1 and isinstance(masks[0], MagnitudeMask)
    assert float((conv.weight == 0).float().mean()) == pytest.approx(0.5, abs=0.02)
    sparsify_(conv, 0.8)  # re-scheduling updates the same mask
    assert float((conv.weight == 0).float().mean()) == pytest.approx(0.8, abs=0.02)
    d = DASS(sparsity=0.9, ramp_epochs=2)
    assert [d.sparsity_at(e) for e in range(4)] == pytest.approx([0.3, 0.6, 0.9, 0.9])


def test_dass_search_prunes_the_supernet_in_the_loop() -> None:
    torch.manual_seed(0)
    net = Supernet(C=4, layers=3, steps=2, ops=("skip_connect", "sep_conv_3x3", *SPARSE_OPS))
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    strat = DASS(sparsity=0.8, ramp_epochs=0)
    result = search(strat, net, [(x, y)] * 2, [(x, y)], 1)
    cells = nn.ModuleList(net.cells)
    assert sparsity_of(cells) == pytest.approx(0.8, abs=0.02)
    assert result.history[0]["sparsity"] == 0.8
    assert result.genotype is not None
