"""SD-DARTS: voting teacher, distillation loss and its gradient, snapshots, sharpness."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from torchloom.nas.sd_darts import (
    SDDARTS,
    distillation_loss,
    dominant_hessian_eigenvalue,
    voting_teacher,
)
from torchloom.nas.supernet import Supernet

OPS = ("none", "skip_connect", "avg_pool_3x3", "conv_1x1")


def test_voting_teacher_is_mean_of_soft_probabilities() -> None:
    zs = [torch.randn(5, 4, dtype=torch.float64) for _ in range(3)]
    q = voting_teacher(zs, temperature=2.0)
    ref = sum(F.softmax(z / 2.0, -1) for z in zs) / 3
    torch.testing.assert_close(q, ref)
    torch.testing.assert_close(q.sum(-1), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(voting_teacher(zs[:1]), zs[0].softmax(-1))
    with pytest.raises(ValueError, match="at least one"):
        voting_teacher([])


def test_distillation_loss_value_and_gradient() -> None:
    T = 3.0
    z = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    q = torch.softmax(torch.randn(6, 5, dtype=torch.float64), -1)
    loss = distillation_loss(z, q, T)
    p = torch.softmax(z / T, -1)
    ref = T**2 * (q * (q.log() - p.log())).sum() / 6
    torch.testing.assert_close(loss, ref)
    (g,) = torch.autograd.grad(loss, z)
    torch.testing.assert_close(g, T * (p - q).detach() / 6)
    # zero when the student already matches the teacher
    assert float(distillation_loss(T * q.log(), q, T)) == pytest.approx(0.0, abs=1e-12)


def net() -> Supernet:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    return Supernet(
        C=2, layers=2, steps=2, ops=OPS, reductions=(1,), generator=g, alpha_init_std=0.5
    )


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)


def _teacher_logits(s: SDDARTS, x: torch.Tensor) -> list[torch.Tensor]:
    """Logits of every stored snapshot (a fresh ``net()`` loaded with it, eval mode) on ``x``."""
    out = []
    for state in s.snapshots:
        t = net()
        t.load_state_dict(state)
        t.eval()
        out.append(t(x).detach())
    return out


def test_snapshots_and_distilled_weight_loss() -> None:
    m = net()
    s = SDDARTS(num_teachers=2, snapshot_every=2, distill_weight=0.5, temperature=2.0)
    s.setup(m, 1)
    s.on_epoch_start(m, 0)
    for i in range(5):
        s.step(m, batch(i), batch(100 + i), 0)
    assert len(s.snapshots) == 2 and s.steps_done == 5
    x, y = batch(7)
    m.eval()  # deterministic BatchNorm for the comparison
    loss, logits = s.weight_loss(m, (x, y))
    teachers = _teacher_logits(s, x)
    ref = F.cross_entropy(logits, y) + 0.5 * distillation_loss(
        logits, voting_teacher(teachers, 2.0), 2.0
    )
    torch.testing.assert_close(loss, ref)
    state = s.state_dict()
    s2 = SDDARTS(num_teachers=2)
    s2.setup(m, 1)
    s2.load_state_dict(state)
    assert s2.steps_done == 5 and len(s2.snapshots) == 2


@pytest.mark.parametrize("batch_stats", [False, True])
def test_dominant_hessian_eigenvalue_matches_dense_hessian(batch_stats: bool) -> None:
    torch.manual_seed(0)
    m = Supernet(C=2, layers=2, steps=1, ops=OPS, reductions=(1,), alpha_init_std=1.0)
    m = m.double().train(batch_stats)
    buffers = {k: v.clone() for k, v in m.state_dict().items()}
    batches = [(x[:4].double(), y[:4]) for x, y in (batch(1), batch(2))]
    alphas = m.arch_parameters()
    shapes = [a.shape for a in alphas]
    sizes = [a.numel() for a in alphas]

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        parts = torch.split(flat, sizes)
        w = {k: p.reshape(s).softmax(-1) for k, p, s in zip(("normal", "reduce"), parts, shapes)}
        return sum(F.cross_entropy(m(x, weights=w), y) for x, y in batches) / len(batches)

    flat = torch.cat([a.detach().flatten() for a in alphas])
    H = torch.autograd.functional.hessian(loss_of, flat)
    eigs = torch.linalg.eigvalsh(H)
    top = float(eigs[eigs.abs().argmax()])
    m.load_state_dict(buffers)  # the dense Hessian's train-mode forwards moved the statistics
    m.eval()
    est = dominant_hessian_eigenvalue(
        m, batches, iters=100, generator=torch.Generator().manual_seed(0), batch_stats=batch_stats
    )
    assert est == pytest.approx(top, rel=1e-3)
    assert not m.training
    for k, v in m.state_dict().items():
        assert torch.equal(v, buffers[k]), k


@pytest.mark.parametrize("distill_arch", [True, False])
def test_arch_step_distils_on_the_validation_batch(distill_arch: bool) -> None:
    m = net()
    s = SDDARTS(num_teachers=2, distill_weight=0.7, temperature=3.0, distill_arch=distill_arch)
    s.setup(m, 1)
    s.on_epoch_start(m, 0)
    for i in range(3):
        s.step(m, batch(i), batch(100 + i), 0)
    m.eval()  # deterministic BatchNorm for the comparison
    x, y = batch(50)
    teachers = _teacher_logits(s, x)
    logits = m(x)
    ref_loss = F.cross_entropy(logits, y)
    if distill_arch:
        ref_loss = ref_loss + 0.7 * distillation_loss(logits, voting_teacher(teachers, 3.0), 3.0)
    ref = torch.autograd.grad(ref_loss, m.arch_parameters())
    base = s.criterion
    s.arch_step(m, batch(0), (x, y))
    assert s.criterion is base  # the distilled criterion does not leak into the weight step
    for p, r in zip(m.arch_parameters(), ref):
        assert p.grad is not None
        torch.testing.assert_close(p.grad, r)


def test_dominant_hessian_eigenvalue_tolerance_stops_early_at_the_same_value() -> None:
    torch.manual_seed(0)
    m = Supernet(C=2, layers=2, steps=1, ops=OPS, reductions=(1,), alpha_init_std=1.0).double()
    batches = [(x[:4].double(), y[:4]) for x, y in (batch(1),)]
    calls = []
    m.register_forward_hook(lambda *_: calls.append(1))
    full = dominant_hessian_eigenvalue(
        m, batches, iters=200, generator=torch.Generator().manual_seed(0)
    )
    n_full = len(calls)
    calls.clear()
    early = dominant_hessian_eigenvalue(
        m, batches, iters=200, generator=torch.Generator().manual_seed(0), tol=1e-6
    )
    assert len(calls) < n_full  # stopped before the iteration budget
    assert early == pytest.approx(full, rel=1e-4)
    with pytest.raises(ValueError, match="tol"):
        dominant_hessian_eigenvalue(m, batches, tol=-1.0)


def test_dominant_hessian_eigenvalue_largest_finds_the_top_of_the_spectrum() -> None:
    torch.manual_seed(0)
    m = Supernet(C=2, layers=2, steps=1, ops=OPS, reductions=(1,), alpha_init_std=1.0).double()
    m.eval()
    x, y = batch(1)
    batches = [(x[:4].double(), y[:4])]
    alphas = m.arch_parameters()
    shapes, sizes = [a.shape for a in alphas], [a.numel() for a in alphas]

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        parts = torch.split(flat, sizes)
        w = {k: p.reshape(s).softmax(-1) for k, p, s in zip(("normal", "reduce"), parts, shapes)}
        return F.cross_entropy(m(batches[0][0], weights=w), batches[0][1])

    H = torch.autograd.functional.hessian(
        loss_of, torch.cat([a.detach().flatten() for a in alphas])
    )
    eigs = torch.linalg.eigvalsh(H)
    # flip the sign of the loss so that whichever end of the spectrum dominates is negative
    sign = 1.0 if float(eigs[eigs.abs().argmax()]) < 0 else -1.0
    spectrum = torch.linalg.eigvalsh(sign * H)
    assert float(spectrum[spectrum.abs().argmax()]) < 0

    def crit(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return sign * F.cross_entropy(z, t)

    g = torch.Generator
    dominant = dominant_hessian_eigenvalue(m, batches, 300, g().manual_seed(0), crit)
    top = dominant_hessian_eigenvalue(m, batches, 300, g().manual_seed(0), crit, largest=True)
    assert dominant == pytest.approx(float(spectrum[spectrum.abs().argmax()]), rel=1e-3)
    assert top == pytest.approx(float(spectrum.max()), rel=1e-2, abs=1e-6)
