"""BPTT, SLTT and SLTT-K against an independent hand-written spiking MLP, and their memory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st

from torchloom.core.autograd import heaviside, rectangular
from torchloom.snn.memory import SavedTensorMeter
from torchloom.snn.models import SpikingMLP
from torchloom.snn.sltt import bptt, predict, sltt, sltt_k

DECAY, THETA = 0.5, 1.0


def manual_grads(model, x, y, *, detach_temporal, steps=None, scale=None, batch_norm=False):
    """The same network written out with tensors (no neuron modules), one backward at the end.

    ``detach_temporal`` cuts u[t-1] -> u[t] (decay and reset); ``steps`` restricts the loss to
    those time steps, each weighted by ``scale``.
    """
    params = dict(model.named_parameters())
    linears = sorted({k.rsplit(".", 1)[0] for k in params if k.endswith("weight")})
    lin = [k for k in linears if params[k + ".weight"].dim() == 2]
    bns = [k for k in linears if params[k + ".weight"].dim() == 1]
    leaves = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    t_steps = x.shape[0]
    steps = range(t_steps) if steps is None else steps
    scale = 1.0 / t_steps if scale is None else scale
    n_hidden = len(lin) - 1
    v = [None] * n_hidden
    total = 0.0
    for t in range(t_steps):
        h = x[t]
        for i in range(n_hidden):
            h = F.linear(h, leaves[lin[i] + ".weight"], leaves.get(lin[i] + ".bias"))
            if batch_norm:
                h = F.batch_norm(
                    h, None, None, leaves[bns[i] + ".weight"], leaves[bns[i] + ".bias"], True
                )
            prev = v[i]
            if prev is not None and detach_temporal:
                prev = prev.detach()
            u = h if prev is None else DECAY * prev + h
            s = heaviside(u - THETA, rectangular(1.0))
            v[i] = u - THETA * s
            h = s
        o = F.linear(h, leaves[lin[-1] + ".weight"], leaves[lin[-1] + ".bias"])
        if t in steps:
            total = total + scale * F.cross_entropy(o, y)
    total.backward()
    return {k: leaves[k].grad for k in params}


def model_grads(model):
    return {k: p.grad.clone() for k, p in model.named_parameters()}


def make(batch_norm=False):
    torch.manual_seed(1)
    model = SpikingMLP(6, 4, hidden=(16, 12), batch_norm=batch_norm)
    x = torch.rand(5, 8, 6) * 3
    y = torch.randint(0, 4, (8,))
    return model, x, y


@pytest.mark.parametrize("batch_norm", [False, True])
def test_sltt_equals_bptt_with_temporal_route_detached(batch_norm):
    model, x, y = make(batch_norm)
    out = sltt(model, x, y)
    ours = model_grads(model)
    ref = manual_grads(model, x, y, detach_temporal=True, batch_norm=batch_norm)
    for k in ref:
        torch.testing.assert_close(ours[k], ref[k], msg=k)
    assert out.outputs.shape == (5, 8, 4)
    assert out.backward_steps == (0, 1, 2, 3, 4)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_bptt_equals_full_reference_and_differs_from_sltt(batch_norm):
    model, x, y = make(batch_norm)
    bptt(model, x, y)
    ours = model_grads(model)
    full = manual_grads(model, x, y, detach_temporal=False, batch_norm=batch_norm)
    cut = manual_grads(model, x, y, detach_temporal=True, batch_norm=batch_norm)
    for k in full:
        torch.testing.assert_close(ours[k], full[k], msg=k)
    # the temporal route contributes: SLTT's gradient is an approximation, not BPTT's
    diff = sum(float((full[k] - cut[k]).abs().sum()) for k in full)
    assert diff > 1e-4
    # ... but a small one, and pointing the same way (SLTT, Sec. 4.1)
    f = torch.cat([full[k].flatten() for k in full])
    c = torch.cat([cut[k].flatten() for k in full])
    assert F.cosine_similarity(f, c, dim=0) > 0.5


def test_sltt_k_with_k_equal_t_is_sltt():
    model, x, y = make()
    sltt(model, x, y)
    g_sltt = model_grads(model)
    model.zero_grad()
    sltt_k(model, x, y, k=5, generator=torch.Generator().manual_seed(3))
    for k, g in model_grads(model).items():
        torch.testing.assert_close(g, g_sltt[k])


def test_sltt_k_backpropagates_only_the_chosen_steps():
    model, x, y = make()
    out = sltt_k(model, x, y, k=2, generator=torch.Generator().manual_seed(7))
    assert len(out.backward_steps) == 2
    ref = manual_grads(model, x, y, detach_temporal=True, steps=set(out.backward_steps), scale=0.5)
    for k, g in model_grads(model).items():
        torch.testing.assert_close(g, ref[k], msg=k)
    # the same generator seed draws the same steps
    again = sltt_k(model, x, y, k=2, generator=torch.Generator().manual_seed(7))
    assert again.backward_steps == out.backward_steps


def test_loss_and_outputs_agree_between_modes():
    model, x, y = make()
    a, b, c = bptt(model, x, y), sltt(model, x, y), sltt_k(model, x, y, k=1)
    torch.testing.assert_close(a.outputs, b.outputs)
    torch.testing.assert_close(a.outputs, c.outputs)
    per_step = torch.stack([F.cross_entropy(a.outputs[t], y) for t in range(5)]).mean()
    for r in (a, b, c):
        assert r.loss == pytest.approx(float(per_step), rel=1e-5)
    torch.testing.assert_close(predict(model, x), a.outputs.mean(0))
    assert model.step_mode == "multi"  # trainers restore the model's mode


def _peak(fn, model, x):
    with SavedTensorMeter(exclude=[*model.parameters(), x]) as meter:
        fn()
    assert meter.current_bytes == 0  # everything saved was released after backward
    return meter.peak_bytes


def test_sltt_memory_is_flat_in_t_and_bptt_grows_linearly():
    torch.manual_seed(0)
    model = SpikingMLP(10, 3, hidden=(32, 32))
    y = torch.randint(0, 3, (16,))
    peaks = {}
    for t in (4, 32):
        x = torch.rand(t, 16, 10) * 2
        peaks["sltt", t] = _peak(lambda x=x: sltt(model, x, y), model, x)
        peaks["bptt", t] = _peak(lambda x=x: bptt(model, x, y), model, x)
        peaks["k", t] = _peak(lambda x=x: sltt_k(model, x, y, k=2), model, x)
    assert peaks["sltt", 4] == peaks["sltt", 32]
    assert peaks["k", 4] == peaks["k", 32] == peaks["sltt", 4]
    ratio = peaks["bptt", 32] / peaks["bptt", 4]
    assert 7.0 <= ratio <= 8.5
    assert peaks["sltt", 32] < peaks["bptt", 32] / 8


def test_bad_input():
    model, x, y = make()
    with pytest.raises(ValueError, match="k must satisfy"):
        sltt_k(model, x, y, k=6)
    with pytest.raises(ValueError, match="k must satisfy"):
        sltt_k(model, x, y, k=0)
    with pytest.raises(TypeError, match="k must be an int"):
        sltt_k(model, x, y, k=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch size"):
        sltt(model, x, y[:3])
    with pytest.raises(ValueError, match="time-first"):
        bptt(model, x[0, 0], y)
    with pytest.raises(ValueError, match="dimensions"):
        sltt(model, x.unsqueeze(-1), y)
    with pytest.raises(ValueError, match="NaN"):
        sltt(model, x, y, loss_fn=lambda o, t: o.sum() * float("nan"))


def test_sltt_on_residual_cnn_equals_one_backward_over_detached_steps():
    from torchloom.snn.models import SpikingCNN
    from torchloom.snn.neurons import detach_states, reset_states, step_mode

    torch.manual_seed(2)
    model = SpikingCNN(1, 3, image_size=8, channels=(4,), residual=True)
    x = torch.rand(4, 6, 1, 8, 8) * 3
    y = torch.randint(0, 3, (6,))
    sltt(model, x, y)
    ours = model_grads(model)
    model.zero_grad()
    # reference: one graph over all steps, states detached between steps, a single backward
    total = 0.0
    with step_mode(model, "single"):
        reset_states(model)
        for t in range(4):
            total = total + F.cross_entropy(model(x[t]), y) / 4
            detach_states(model)
        reset_states(model)
    total.backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(ours[k], p.grad, msg=k)
    assert sum(float(g.abs().sum()) for g in ours.values()) > 0


@given(t=st.integers(1, 5), b=st.integers(1, 4), seed=st.integers(0, 1000))
def test_sltt_k_full_is_sltt_property(t, b, seed):
    torch.manual_seed(seed)
    model = SpikingMLP(3, 2, hidden=(5,))
    x = torch.rand(t, b, 3) * 3
    y = torch.randint(0, 2, (b,))
    sltt(model, x, y)
    g1 = model_grads(model)
    model.zero_grad()
    sltt_k(model, x, y, k=t, generator=torch.Generator().manual_seed(seed))
    for k, g in model_grads(model).items():
        torch.testing.assert_close(g, g1[k])
