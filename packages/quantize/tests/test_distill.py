"""Quantized distillation and differentiable quantization."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from torchloom.quantize.distill import (
    DifferentiableQuantization,
    DistillationLoss,
    LearnedPointsQuantizer,
    QuantizedDistillation,
    distillation_loss,
)
from torchloom.quantize.uniform import model_size_bits, scale_buckets, uniform_quantize


def _hand_loss(s: np.ndarray, t: np.ndarray, y: np.ndarray, temp: float, alpha: float) -> float:
    total_kl, total_ce = 0.0, 0.0
    for i in range(s.shape[0]):
        ps = np.exp(s[i] / temp) / np.exp(s[i] / temp).sum()
        pt = np.exp(t[i] / temp) / np.exp(t[i] / temp).sum()
        total_kl += float(sum(pt[k] * math.log(pt[k] / ps[k]) for k in range(s.shape[1])))
        p1 = np.exp(s[i]) / np.exp(s[i]).sum()
        total_ce += -math.log(p1[y[i]])
    b = s.shape[0]
    return alpha * temp**2 * total_kl / b + (1 - alpha) * total_ce / b


@pytest.mark.parametrize(("temp", "alpha"), [(1.0, 0.7), (4.0, 0.7), (2.5, 0.0), (3.0, 1.0)])
def test_distillation_loss_against_hand_computation(temp: float, alpha: float) -> None:
    s = torch.randn(5, 4, dtype=torch.float64)
    t = torch.randn(5, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (5,))
    got = distillation_loss(s, t, y, temperature=temp, alpha=alpha)
    ref = _hand_loss(s.numpy(), t.numpy(), y.numpy(), temp, alpha)
    assert float(got) == pytest.approx(ref, rel=1e-10)
    mod = DistillationLoss(temp, alpha)
    assert float(mod(s, t, y)) == pytest.approx(ref, rel=1e-10)


def test_soft_gradient_is_t_times_probability_gap(device: str) -> None:
    s = torch.randn(6, 5, device=device, dtype=torch.float64, requires_grad=True)
    t = torch.randn(6, 5, device=device, dtype=torch.float64)
    y = torch.zeros(6, dtype=torch.long, device=device)
    (g,) = torch.autograd.grad(distillation_loss(s, t, y, temperature=3.0, alpha=1.0), s)
    ref = 3.0 * (torch.softmax(s.detach() / 3, 1) - torch.softmax(t / 3, 1)) / 6
    torch.testing.assert_close(g, ref)
    # no gradient reaches the teacher
    t2 = t.clone().requires_grad_()
    distillation_loss(s, t2, y).backward()
    assert t2.grad is None


def _mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def test_quantized_distillation_step_updates_shadow_with_quantized_gradient(device: str) -> None:
    teacher = _mlp(0).to(device)
    student = _mlp(1).to(device)
    x = torch.randn(12, 8, device=device)
    y = torch.randint(0, 3, (12,), device=device)
    qd = QuantizedDistillation(student, teacher, bits=2, bucket_size=32, temperature=2.0)
    shadow0 = [p.detach().clone() for p in student.parameters()]

    # reference: a plain copy whose weights are set to the quantised shadow weights
    ref = _mlp(1).to(device)
    with torch.no_grad():
        for r, m in zip((ref[0], ref[2]), (student[0], student[2])):
            r.weight.copy_(uniform_quantize(m.parametrizations.weight.original, 2, 32))
            r.bias.copy_(m.bias)
    loss_ref = distillation_loss(ref(x), teacher(x), y, temperature=2.0)
    grads = torch.autograd.grad(loss_ref, list(ref.parameters()))

    lr = 0.1
    loss = qd.step(x, y, torch.optim.SGD(student.parameters(), lr=lr))
    assert loss == pytest.approx(loss_ref.item(), rel=1e-5)
    # parameters() order: weight/bias of each layer; a parametrised weight yields its original
    got = {n: p for n, p in student.named_parameters()}
    pairs = [
        ("0.parametrizations.weight.original", 0),
        ("0.bias", 1),
        ("2.parametrizations.weight.original", 2),
        ("2.bias", 3),
    ]
    names = [n for n, _ in student.named_parameters()]
    for name, i in pairs:
        before = shadow0[names.index(name)]
        torch.testing.assert_close(got[name].detach(), before - lr * grads[i])


def test_quantized_student_forward_uses_quantized_weights_and_exports() -> None:
    teacher, student = _mlp(0), _mlp(1)
    qd = QuantizedDistillation(student, teacher, bits=3, bucket_size=16)
    w = student[0].weight
    for i in range(0, w.numel(), 16):
        assert w.reshape(-1)[i : i + 16].unique().numel() <= 8
    x = torch.randn(4, 8)
    student.eval()
    plain = qd.export()
    assert not hasattr(plain[0], "parametrizations")
    assert torch.equal(plain(x), student(x))
    assert hasattr(student[0], "parametrizations")  # exporting leaves the student untouched
    assert torch.equal(plain(x), student(x))
    # state_dict round-trip into a freshly prepared student
    other = QuantizedDistillation(_mlp(2), teacher, bits=3, bucket_size=16).student.eval()
    other.load_state_dict(student.state_dict())
    assert torch.equal(other(x), student(x))


def test_learned_points_init() -> None:
    w = torch.randn(10, 10, dtype=torch.float64)
    qu = LearnedPointsQuantizer(w, 2, 50, init="uniform")
    torch.testing.assert_close(qu.points.detach(), torch.tensor([0, 1 / 3, 2 / 3, 1.0]).double())
    qq = LearnedPointsQuantizer(w, 2, 50, init="quantiles")
    v, _, _ = scale_buckets(w, 50)
    emp = np.quantile(v.numpy().reshape(-1), [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_allclose(qq.points.detach().numpy(), emp)
    assert qq.storage_bits(100) == 100 * 2 + 2 * 64 + 4 * 32


def test_differentiable_quantization_learns_sorted_points_and_lowers_loss() -> None:
    torch.manual_seed(0)
    teacher = _mlp(0)
    student = copy.deepcopy(teacher)  # the full-precision student to compress
    x = torch.randn(256, 8)
    y = teacher(x).argmax(1).detach()
    dq = DifferentiableQuantization(
        student, teacher, bits=1, bucket_size=None, init="uniform", alpha=1.0
    )
    weights_before = [m.parametrizations.weight.original.clone() for m in (student[0], student[2])]
    opt = torch.optim.Adam(dq.point_parameters(), lr=0.02)
    with torch.no_grad():
        start = float(dq.loss(x, y))
    for _ in range(60):
        dq.step(x, y, opt)
    with torch.no_grad():
        end = float(dq.loss(x, y))
    assert end < 0.2 * start  # 1-bit points at {0, 1} are far from the best pair
    for q in dq.quantizers:
        p = q.points.detach()
        assert torch.equal(p, p.sort().values)
    for m, w0 in zip((student[0], student[2]), weights_before):
        assert torch.equal(m.parametrizations.weight.original, w0)  # weights fixed
    plain = dq.export()
    assert plain[0].weight.unique().numel() <= 2
    # codes + (α, β) + 2 points per weight tensor, biases in 32 bits
    expected = (8 * 16 + 64 + 64) + (16 * 3 + 64 + 64) + 32 * (16 + 3)
    assert model_size_bits(student) == expected


def test_bad_input() -> None:
    s, t = torch.randn(3, 4), torch.randn(3, 4)
    y = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(s, t, y, temperature=0.0)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(s, t, y, alpha=1.5)
    with pytest.raises(ValueError, match="teacher_logits"):
        distillation_loss(s, torch.randn(3, 5), y)
    with pytest.raises(ValueError, match="targets"):
        distillation_loss(s, t, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="bits"):
        QuantizedDistillation(_mlp(0), _mlp(1), bits=0)
    with pytest.raises(ValueError, match="init"):
        LearnedPointsQuantizer(torch.randn(4), 2, init="kmeans")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no nn.Linear"):
        DifferentiableQuantization(nn.ReLU(), _mlp(0), bits=2)
    student = _mlp(0)
    qd = QuantizedDistillation(student, _mlp(1), bits=2)
    with torch.no_grad():
        student[2].bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="not applied"):
        qd.step(
            torch.randn(2, 8),
            torch.zeros(2, dtype=torch.long),
            torch.optim.SGD(student.parameters(), lr=0.1),
        )
