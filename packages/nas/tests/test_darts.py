"""DARTS: the finite-difference hypergradient equals the exact one; steps descend."""

from __future__ import annotations

import pytest
import torch

from torchloom.nas.darts import DARTS, darts_hypergradient
from torchloom.nas.search import Strategy
from torchloom.nas.supernet import Supernet

OPS = ("none", "skip_connect", "max_pool_3x3", "sep_conv_3x3")


def tiny(seed: int = 0, **kw: object) -> Supernet:
    g = torch.Generator().manual_seed(seed)
    args: dict[str, object] = {
        "C": 2,
        "layers": 2,
        "steps": 2,
        "ops": OPS,
        "reductions": (1,),
        "alpha_init_std": 0.5,
        "generator": g,
    }
    args.update(kw)
    return Supernet(**args).double()  # type: ignore[arg-type]


def batches(
    n: int = 8,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, n, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (2, n), generator=g)
    return (x[0], y[0]), (x[1], y[1])


@pytest.mark.parametrize("with_momentum", [False, True])
def test_finite_difference_hypergradient_matches_exact(with_momentum: bool) -> None:
    m = tiny()
    train, val = batches()
    bufs = [torch.randn_like(p) for p in m.weight_parameters()] if with_momentum else None
    kw = {"momentum": 0.9, "momentum_buffers": bufs, "weight_decay": 3e-4}
    exact, _ = darts_hypergradient(m, train, val, 0.5, exact=True, **kw)  # type: ignore[arg-type]
    fd, _ = darts_hypergradient(m, train, val, 0.5, eps=1e-5, **kw)  # type: ignore[arg-type]
    first, _ = darts_hypergradient(m, train, val, 0.0)
    for e, f, f1 in zip(exact, fd, first):
        torch.testing.assert_close(f, e, rtol=1e-6, atol=1e-8)
        # the second-order term is not negligible here, so the check above can fail
        assert (f1 - e).abs().max() > 1e3 * (f - e).abs().max()


def test_first_order_is_plain_validation_gradient() -> None:
    m = tiny()
    train, val = batches()
    g0, _ = darts_hypergradient(m, train, val, 0.0)
    loss = torch.nn.functional.cross_entropy(m(val[0]), val[1])
    ref = torch.autograd.grad(loss, m.arch_parameters())
    for a, b in zip(g0, ref):
        torch.testing.assert_close(a, b)


def test_hypergradient_leaves_model_untouched() -> None:
    m = tiny()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    darts_hypergradient(m, *batches(), 0.5)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("order", [1, 2])
def test_darts_arch_step_descends(order: int) -> None:
    m = tiny()
    train, val = batches(16)
    s = DARTS(order=order, a_lr=1e-2, a_weight_decay=0.0, xi=0.0 if order == 1 else 1e-3)
    assert isinstance(s, Strategy)
    s.setup(m, 1)
    s.on_epoch_start(m, 0)

    def val_loss() -> float:
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(m(val[0]), val[1]))

    before = val_loss()
    s.arch_step(m, train, val)
    assert val_loss() < before


def test_darts_rejects_bad_order() -> None:
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        DARTS(order=3)
