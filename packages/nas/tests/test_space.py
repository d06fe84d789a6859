"""Candidate ops, the op registry, mixing rules, mixed edges and DARTS search cells."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, strategies as st
from torch import nn

from torchloom.nas import space
from torchloom.nas.space import (
    PRIMITIVES,
    BinaryPathMixing,
    GumbelMixing,
    MaxWMixing,
    MixedEdge,
    Mixture,
    SearchCell,
    SharpSepConv,
    SoftmaxMixing,
    as_mixture,
    available_ops,
    cell_edges,
    make_op,
    max_w_coefficients,
    num_edges,
    register_op,
)

BUILTIN = [
    *PRIMITIVES,
    "sep_conv_7x7",
    "conv_1x1",
    "conv_3x3",
    "sharp_sep_conv_3x3",
    "sharp_sep_conv_5x5",
]


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("stride", [1, 2])
def test_op_shapes(name: str, stride: int, device: torch.device) -> None:
    op = make_op(name, 4, stride).to(device)
    x = torch.randn(3, 4, 8, 8, device=device)
    y = op(x)
    assert y.shape == (3, 4, 8 // stride, 8 // stride)
    assert y.device == x.device and y.dtype == x.dtype


def test_zero_is_zero_and_skip_is_identity() -> None:
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(make_op("none", 4, 2)(x), torch.zeros(2, 4, 4, 4))
    assert make_op("skip_connect", 4, 1)(x) is x


def test_unknown_op_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown op 'conv_9x9'.*sep_conv_3x3"):
        make_op("conv_9x9", 4)
    with pytest.raises(ValueError, match="unknown op"):
        MixedEdge(4, 1, ("skip_connect", "nope"))
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        make_op("skip_connect", 4, 3)


def test_register_op_and_duplicates() -> None:
    name = "test_scaled_identity"
    if name not in available_ops():
        register_op(name, lambda C, stride, affine: nn.AvgPool2d(1, stride=stride))
    with pytest.raises(ValueError, match="already registered"):
        register_op(name, lambda C, stride, affine: nn.Identity())
    with pytest.raises(TypeError, match="factory must be callable"):
        register_op("test_other", 3)  # type: ignore[arg-type]
    edge = MixedEdge(4, 2, ("none", name))
    x = torch.randn(2, 4, 8, 8)
    out = edge(x, torch.tensor([0.3, 0.7]))
    torch.testing.assert_close(out, 0.7 * x[:, :, ::2, ::2])


def test_mixed_edge_is_weighted_sum_and_active_subset() -> None:
    edge = MixedEdge(4, 1, PRIMITIVES).double()
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    w = torch.rand(len(PRIMITIVES), dtype=torch.float64)
    ref = sum(w[i] * op(x) for i, op in enumerate(edge.ops))
    torch.testing.assert_close(edge(x, w), ref)
    active = torch.tensor([4, 1])
    torch.testing.assert_close(edge(x, w, active), w[4] * edge.ops[4](x) + w[1] * edge.ops[1](x))
    with pytest.raises(ValueError, match="weights must have shape"):
        edge(x, w[:3])


def test_pool_ops_get_batchnorm_in_search() -> None:
    edge = MixedEdge(4, 1, ("max_pool_3x3", "avg_pool_3x3", "skip_connect"))
    assert all(isinstance(edge.ops[i][1], nn.BatchNorm2d) for i in (0, 1))
    bare = MixedEdge(4, 1, ("max_pool_3x3",), pool_bn=False)
    assert isinstance(bare.ops[0], nn.MaxPool2d)


def test_softmax_mixing_rows_and_temperature() -> None:
    a = torch.randn(5, 8)
    w = SoftmaxMixing(0.5)(a).weights
    torch.testing.assert_close(w.sum(-1), torch.ones(5))
    torch.testing.assert_close(w, torch.softmax(2 * a, -1))


def test_max_w_coefficients() -> None:
    a = torch.randn(6, 5, dtype=torch.float64)
    c = max_w_coefficients(a)
    w = a.softmax(-1)
    # the strongest op has coefficient exactly 1, the others keep their gaps in softmax weight
    assert torch.equal(c.max(-1).values, torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(c - c[:, :1], w - w[:, :1])
    for e in range(6):  # elementwise definition, 1 - max_j w_j + w_i
        for i in range(5):
            assert c[e, i].item() == pytest.approx(1 - max(w[e].tolist()) + w[e, i].item())
    assert torch.equal(MaxWMixing()(a).weights, c)


def test_gumbel_mixing_argmax_follows_softmax() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[1.0, 0.0, -1.0, 0.5]]).expand(20000, 4).contiguous()
    w = GumbelMixing(tau=0.7, generator=g)(logits).weights
    freq = torch.bincount(w.argmax(-1), minlength=4).float() / w.shape[0]
    torch.testing.assert_close(freq, logits[0].softmax(-1), atol=0.015, rtol=0)
    hard = GumbelMixing(tau=0.7, hard=True, generator=g)(logits[:10]).weights
    assert torch.equal(hard.sum(-1), torch.ones(10))
    assert set(hard.unique().tolist()) <= {0.0, 1.0}


def test_binary_path_mixing_modes() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randn(7, 5, requires_grad=True)
    one = BinaryPathMixing(generator=g)(a)
    assert one.active is None and torch.equal(one.weights.sum(-1), torch.ones(7))
    two = BinaryPathMixing(two_path=True, generator=g)(a)
    assert two.active is not None and two.active.shape == (7, 2)
    chosen = two.weights.argmax(-1)
    assert all(int(c) in two.active[e].tolist() for e, c in enumerate(chosen))


def test_two_path_evaluates_only_two_ops() -> None:
    calls: list[int] = []
    edge = MixedEdge(4, 1, PRIMITIVES)
    for i, op in enumerate(edge.ops):
        op.register_forward_hook(lambda m, inp, out, i=i: calls.append(i))
    mix = BinaryPathMixing(two_path=True)(torch.zeros(1, len(PRIMITIVES)))
    assert mix.active is not None
    edge(torch.randn(2, 4, 8, 8), mix.weights[0], mix.active[0])
    assert sorted(calls) == sorted(mix.active[0].tolist())


def test_as_mixture_checks() -> None:
    w = torch.rand(3, 4)
    assert as_mixture(w, (3, 4)).weights is w
    with pytest.raises(ValueError, match="mixture weights must have shape"):
        as_mixture(w, (3, 5))
    with pytest.raises(ValueError, match="active must be int64"):
        as_mixture(Mixture(w, torch.zeros(3, 2)), (3, 4))


def test_sharp_sep_conv_structure() -> None:
    op = SharpSepConv(4, 6, 3, stride=2, padding=1, mid_mult=2.0)
    kinds = [type(m).__name__ for m in op]
    assert kinds == [
        "ReLU",
        "Conv2d",
        "Conv2d",
        "BatchNorm2d",
        "ReLU",
        "Conv2d",
        "Conv2d",
        "BatchNorm2d",
    ]
    assert op[1].groups == 4 and op[1].stride == (2, 2)  # depthwise, strided
    assert op[2].out_channels == 8 and op[5].groups == 8  # widened middle, depthwise
    assert op(torch.randn(2, 4, 8, 8)).shape == (2, 6, 4, 4)


def test_edge_counting() -> None:
    assert num_edges(4) == 14 == len(cell_edges(4))
    assert cell_edges(2) == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]


@given(
    steps=st.integers(1, 4),
    mult=st.integers(1, 4),
    reduction=st.booleans(),
    reduction_prev=st.booleans(),
)
def test_search_cell_shapes(steps: int, mult: int, reduction: bool, reduction_prev: bool) -> None:
    mult = min(mult, steps)
    ops = ("none", "skip_connect", "avg_pool_3x3", "conv_1x1")
    cell = SearchCell(steps, mult, 6, 5, 4, reduction, reduction_prev, ops)
    h = 8
    s0 = torch.randn(2, 6, 2 * h if reduction_prev else h, 2 * h if reduction_prev else h)
    s1 = torch.randn(2, 5, h, h)
    w = torch.rand(num_edges(steps), len(ops))
    out = cell(s0, s1, w)
    r = 2 if reduction else 1
    assert out.shape == (2, mult * 4, h // r, h // r)


def test_search_cell_node_is_sum_of_edges() -> None:
    ops = ("skip_connect", "conv_1x1")
    cell = SearchCell(2, 1, 4, 4, 4, False, False, ops).double().eval()
    s0, s1 = torch.randn(2, 2, 4, 8, 8, dtype=torch.float64)
    w = torch.rand(5, 2, dtype=torch.float64)
    h0, h1 = cell.preprocess0(s0), cell.preprocess1(s1)
    n0 = cell.edges[0](h0, w[0]) + cell.edges[1](h1, w[1])
    n1 = cell.edges[2](h0, w[2]) + cell.edges[3](h1, w[3]) + cell.edges[4](n0, w[4])
    torch.testing.assert_close(cell(s0, s1, w), n1)


def test_cell_rejects_too_few_nodes() -> None:
    with pytest.raises(ValueError, match="steps"):
        SearchCell(0, 1, 4, 4, 4, False, False)
    with pytest.raises(ValueError, match="multiplier must be <= steps"):
        SearchCell(2, 3, 4, 4, 4, False, False)


def test_module_docstring_explains_extension() -> None:
    assert space.__doc__ is not None
    assert "register_op" in space.__doc__ and "Mixture" in space.__doc__
