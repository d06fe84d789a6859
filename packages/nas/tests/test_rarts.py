"""RARTS: one step is the Gauss–Seidel sweep of the relaxed objective; network splitting."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from torchloom.nas.rarts import RARTS, coupling_pairs, coupling_penalty
from torchloom.nas.search import search
from torchloom.nas.supernet import Supernet

OPS = ("none", "skip_connect", "avg_pool_3x3", "conv_1x1")


def net(C: int, seed: int) -> Supernet:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    return Supernet(
        C=C, layers=2, steps=2, ops=OPS, reductions=(1,), alpha_init_std=0.5, generator=g
    ).double()


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(
        0, 10, (8,), generator=g
    )


def test_coupling_pairs_network_splitting() -> None:
    w, y = net(4, 0), net(2, 1)
    pairs = coupling_pairs(w, y)
    assert len(pairs) == len(list(y.weight_parameters()))
    assert all(a.shape == b.shape for a, b in pairs)
    ref = 0.5 * sum(((a - b) ** 2).sum() for a, b in pairs)
    torch.testing.assert_close(coupling_penalty(w, y), ref)
    torch.testing.assert_close(coupling_penalty(w, w), torch.zeros((), dtype=torch.float64))
    with pytest.raises(ValueError, match="must fit inside"):
        coupling_pairs(y, w)


@pytest.mark.parametrize("y_width", [4, 2])
def test_step_is_gauss_seidel_sweep(y_width: int) -> None:
    lr, beta, lam = 0.05, 0.7, 0.3
    w_net, y_net = net(4, 0), net(y_width, 1)
    train, val = batch(2), batch(3)
    ref_w, ref_y = copy.deepcopy(w_net), copy.deepcopy(y_net)

    s = RARTS(
        y_net,
        beta=beta,
        lam=lam,
        w_lr=lr,
        w_lr_min=lr,
        w_momentum=0.0,
        w_weight_decay=0.0,
        w_grad_clip=None,
        a_weight_decay=0.0,
    )
    s.setup(w_net, 1)
    s.a_opt = torch.optim.SGD(w_net.arch_parameters(), lr=lr)  # plain gradient step for α
    s.step(w_net, train, val, 0)

    # the same sweep written out by hand
    alphas = ref_w.arch_parameters()
    wp = list(ref_w.weight_parameters())
    loss = F.cross_entropy(ref_w(train[0]), train[1]) + lam * coupling_penalty(ref_w, ref_y)
    gw = torch.autograd.grad(loss, wp)
    with torch.no_grad():
        for p, g in zip(wp, gw):
            p -= lr * g
    yp = list(ref_y.weight_parameters())
    weights = {k: a.softmax(-1).detach() for k, a in ref_w.alphas().items()}
    loss = beta * F.cross_entropy(ref_y(val[0], weights=weights), val[1]) + lam * coupling_penalty(
        ref_w, ref_y
    )
    gy = torch.autograd.grad(loss, yp)
    with torch.no_grad():
        for p, g in zip(yp, gy):
            p -= lr * g
    weights = {k: a.softmax(-1) for k, a in ref_w.alphas().items()}
    loss = F.cross_entropy(ref_w(train[0]), train[1]) + beta * F.cross_entropy(
        ref_y(val[0], weights=weights), val[1]
    )
    ga = torch.autograd.grad(loss, alphas)
    with torch.no_grad():
        for p, g in zip(alphas, ga):
            p -= lr * g

    for a, b in zip(w_net.parameters(), ref_w.parameters()):
        torch.testing.assert_close(a, b)
    for a, b in zip(y_net.weight_parameters(), ref_y.weight_parameters()):
        torch.testing.assert_close(a, b)


def test_rarts_search_resumable_state() -> None:
    w_net, y_net = net(4, 0).float(), net(2, 1).float()
    data = [(x.float(), y) for x, y in (batch(4), batch(5))]
    s = RARTS(y_net)
    res = search(s, w_net, data, data, epochs=1)
    assert {"val_loss", "arch_loss", "train_loss"} <= set(res.history[0])
    state = s.state_dict()
    s2 = RARTS(net(2, 9).float())
    s2.setup(w_net, 1)
    s2.load_state_dict(state)
    for a, b in zip(s2.y_model.parameters(), y_net.parameters()):
        torch.testing.assert_close(a, b)


def test_rarts_bad_inputs() -> None:
    with pytest.raises(TypeError, match="y_model must be a Supernet"):
        RARTS(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    s = RARTS(Supernet(C=2, layers=2, steps=3, ops=OPS))
    with pytest.raises(ValueError, match="ops and steps"):
        s.setup(net(4, 0), 1)
