"""LIF/IF/PLIF dynamics against a hand-written recurrence, the fused backend against autograd,
and the neuron conventions of snnTorch and SpikingJelly mapped onto ours."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, strategies as st

from torchloom.core.autograd import atan, fast_sigmoid, rectangular, sigmoid
from torchloom.core.testing import assert_gradcheck
from torchloom.snn.neurons import (
    IF,
    LIF,
    PLIF,
    lif_multistep,
    lif_step,
    reset_states,
    set_step_mode,
    step_mode,
)


def reference(x, decay, threshold, reset, v0=None):
    """Plain recurrence on Python floats, one neuron at a time (no torch ops on tensors)."""
    t_steps = x.shape[0]
    flat = x.reshape(t_steps, -1).tolist()
    n = len(flat[0])
    v = [0.0] * n if v0 is None else v0.reshape(-1).tolist()
    spikes = []
    for t in range(t_steps):
        row = []
        for i in range(n):
            u = decay * v[i] + flat[t][i]
            s = 1.0 if u - threshold >= 0 else 0.0
            v[i] = u - threshold * s if reset == "soft" else u * (1.0 - s)
            row.append(s)
        spikes.append(row)
    return torch.tensor(spikes, dtype=x.dtype).reshape(x.shape), torch.tensor(v).reshape(
        x.shape[1:]
    )


@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 3), st.integers(1, 4)),
    decay=st.floats(0.05, 1.0),
    threshold=st.floats(0.1, 2.0),
    reset=st.sampled_from(["soft", "hard"]),
    backend=st.sampled_from(["loop", "fused"]),
    seed=st.integers(0, 2**16),
)
def test_multistep_matches_reference(shape, decay, threshold, reset, backend, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 1.5
    v0 = torch.randn(shape[1:], generator=g, dtype=torch.float64)
    s, v = lif_multistep(x, v0, decay=decay, threshold=threshold, reset=reset, backend=backend)
    s_ref, v_ref = reference(x, decay, threshold, reset, v0)
    torch.testing.assert_close(s, s_ref)
    torch.testing.assert_close(v, v_ref.to(v.dtype))


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("surrogate", [rectangular(1.0), sigmoid(4.0), atan(2.0)])
def test_fused_backward_equals_autograd_of_loop(device, reset, detach_reset, surrogate):
    x = torch.randn(7, 3, 5, dtype=torch.float64, device=device) * 1.5
    v0 = torch.randn(3, 5, dtype=torch.float64, device=device)
    decay = torch.tensor(0.7, dtype=torch.float64, device=device)
    w = torch.randn_like(x)
    wv = torch.randn_like(v0)
    grads = []
    for backend in ("loop", "fused"):
        leaves = [t.clone().requires_grad_() for t in (x, v0, decay)]
        s, v = lif_multistep(
            leaves[0],
            leaves[1],
            decay=leaves[2],
            threshold=0.8,
            reset=reset,
            surrogate=surrogate,
            detach_reset=detach_reset,
            backend=backend,
        )
        loss = (s * w).sum() + (v * wv).sum()
        grads.append(torch.autograd.grad(loss, leaves))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
    assert grads[0][0].abs().sum() > 0  # the comparison is not between two zero tensors


@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_fused_gradcheck_subthreshold(reset):
    # below threshold and outside the rectangle's support the neuron is linear (s = 0, g = 0),
    # so the hand-written backward must equal finite differences exactly
    x = (torch.rand(5, 2, 3, dtype=torch.float64) * 0.3 - 0.3).requires_grad_()
    v0 = (torch.rand(2, 3, dtype=torch.float64) * 0.2).requires_grad_()
    decay = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)

    def fn(x, v0, decay):
        s, v = lif_multistep(x, v0, decay=decay, reset=reset, surrogate=rectangular(1.0))
        return s, v

    assert_gradcheck(fn, (x, v0, decay))


@pytest.mark.parametrize("cls", [LIF, IF, PLIF])
@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_multistep_equals_repeated_single_step(device, cls, reset):
    neuron = cls(reset=reset).to(device)
    x = torch.randn(6, 4, 3, device=device) * 2
    s_multi = neuron(x)
    neuron.step_mode = "single"
    s_single = torch.stack([neuron(x[t]) for t in range(6)])
    torch.testing.assert_close(s_multi, s_single)
    assert s_multi.sum() > 0
    # state kept between single steps; a different shape is an error, not a silent reset
    with pytest.raises(ValueError, match="reset_states"):
        neuron(torch.randn(2, 3, device=device))
    reset_states(neuron)
    assert neuron(torch.randn(2, 3, device=device)).shape == (2, 3)


def test_single_step_state_gradient_matches_multistep():
    x = torch.randn(5, 3, 4, requires_grad=True)
    lif = LIF(decay=0.8, surrogate=sigmoid(3.0))
    g_multi = torch.autograd.grad(lif(x).sum(), x)[0]
    with step_mode(lif, "single"):
        out = torch.stack([lif(x[t]) for t in range(5)])
    g_single = torch.autograd.grad(out.sum(), x)[0]
    torch.testing.assert_close(g_multi, g_single)
    assert lif.step_mode == "multi"  # restored by the context manager


def test_if_is_lif_with_unit_decay():
    x = torch.randn(6, 2, 3)
    torch.testing.assert_close(IF(threshold=0.5)(x), LIF(decay=1.0, threshold=0.5)(x))


def test_detach_reset_changes_only_the_backward():
    x = torch.randn(6, 3, 4, requires_grad=True)
    a, b = LIF(surrogate=sigmoid(4.0)), LIF(surrogate=sigmoid(4.0), detach_reset=True)
    sa, sb = a(x), b(x)
    torch.testing.assert_close(sa, sb)
    ga = torch.autograd.grad(sa.sum(), x)[0]
    gb = torch.autograd.grad(sb.sum(), x)[0]
    assert not torch.allclose(ga, gb)


def test_plif_decay_is_learned_and_round_trips():
    plif = PLIF(init_decay=0.3)
    torch.testing.assert_close(plif.decay, torch.tensor(0.3))
    x = torch.randn(5, 4, 3) * 2
    plif(x).sum().backward()
    assert plif.w.grad is not None and plif.w.grad.abs() > 0
    other = PLIF(init_decay=0.9)
    other.load_state_dict(plif.state_dict())
    torch.testing.assert_close(other(x), plif(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_follow_input(device, dtype):
    x = torch.randn(3, 2, 4, dtype=dtype, device=device)
    for neuron in (LIF(), PLIF()):
        s = neuron.to(device)(x)
        assert s.dtype == dtype and s.device == x.device
        assert set(s.unique().tolist()) <= {0.0, 1.0}


def test_snntorch_leaky_convention():
    snntorch = pytest.importorskip("snntorch")
    from snntorch import surrogate

    x = (torch.randn(8, 4, 5) * 1.2).requires_grad_()
    w = torch.arange(8.0).view(8, 1, 1) + 1
    # snnTorch subtracts θ·s[t-1] without the decay, so "subtract" maps to ours only for β = 1;
    # its "zero" reset is ours (hard) for any β. snnTorch always detaches the reset signal.
    for mech, beta, reset in (("zero", 0.7, "hard"), ("subtract", 1.0, "soft")):
        leaky = snntorch.Leaky(
            beta=beta,
            threshold=0.8,
            spike_grad=surrogate.fast_sigmoid(slope=25),
            reset_mechanism=mech,
        )
        mem = leaky.init_leaky()
        spikes = []
        for t in range(8):
            s, mem = leaky(x[t], mem)
            spikes.append(s)
        theirs = torch.stack(spikes)
        ours, _ = lif_multistep(
            x,
            decay=beta,
            threshold=0.8,
            reset=reset,
            surrogate=fast_sigmoid(25.0),
            detach_reset=True,
        )
        torch.testing.assert_close(ours, theirs)
        g_t = torch.autograd.grad((theirs * w).sum(), x)[0]
        g_o = torch.autograd.grad((ours * w).sum(), x)[0]
        torch.testing.assert_close(g_o, g_t)


@pytest.mark.parametrize("v_reset", [None, 0.0])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_spikingjelly_lifnode_convention(v_reset, detach_reset):
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import neuron, surrogate

    decay = 0.6
    # LIFNode(decay_input=False): H[t] = (1 - 1/τ) V[t-1] + X[t], so λ = 1 - 1/τ and our u is
    # their H (the potential before the reset); v_reset=None is the soft reset
    node = neuron.LIFNode(
        tau=1.0 / (1.0 - decay),
        decay_input=False,
        v_threshold=0.8,
        v_reset=v_reset,
        surrogate_function=surrogate.ATan(alpha=2.0),
        detach_reset=detach_reset,
        step_mode="m",
    )
    x = (torch.randn(8, 4, 5) * 1.2).requires_grad_()
    w = torch.arange(8.0).view(8, 1, 1) + 1
    theirs = node(x)
    ours, _ = lif_multistep(
        x,
        decay=decay,
        threshold=0.8,
        reset="soft" if v_reset is None else "hard",
        surrogate=atan(2.0),
        detach_reset=detach_reset,
    )
    torch.testing.assert_close(ours, theirs)
    g_t = torch.autograd.grad((theirs * w).sum(), x)[0]
    g_o = torch.autograd.grad((ours * w).sum(), x)[0]
    torch.testing.assert_close(g_o, g_t)


def test_bad_input():
    with pytest.raises(ValueError, match="threshold"):
        LIF(threshold=0.0)
    with pytest.raises(ValueError, match="decay"):
        LIF(decay=1.5)
    with pytest.raises(ValueError, match="decay"):
        LIF(decay=0.0)
    with pytest.raises(ValueError, match="init_decay"):
        PLIF(init_decay=1.0)
    with pytest.raises(ValueError, match="reset"):
        LIF(reset="zero")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="surrogate"):
        LIF(surrogate="atan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend"):
        LIF(backend="cuda")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(T, B, \*\)"):
        LIF()(torch.randn(5))
    with pytest.raises(ValueError, match="v0"):
        lif_multistep(torch.randn(3, 2, 4), torch.randn(2, 5))
    with pytest.raises(TypeError, match="v0 must have x's dtype"):
        lif_multistep(torch.randn(3, 2, 4, dtype=torch.float64), torch.randn(2, 4))
    with pytest.raises(TypeError, match="floating"):
        LIF()(torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="v must have the shape"):
        lif_step(torch.randn(2, 3), torch.randn(3, 3))
    with pytest.raises(ValueError, match="mode"):
        set_step_mode(LIF(), "both")  # type: ignore[arg-type]
