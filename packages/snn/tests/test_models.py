"""Spiking models: multi-step == single-step, shapes, state_dict round trips, bad input."""

from __future__ import annotations

import pytest
import torch

from torchloom.snn.models import MultiStep, SpikingCNN, SpikingMLP, SpikingResBlock
from torchloom.snn.neurons import PLIF, reset_states, step_mode


def run_single(model, x):
    with step_mode(model, "single"):
        reset_states(model)
        out = torch.stack([model(x[t]) for t in range(x.shape[0])])
        reset_states(model)
    return out


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: SpikingMLP(6, 3, hidden=(8, 8)), (4, 5, 6)),
        (lambda: SpikingMLP(6, 3, hidden=(8,), neuron=lambda: PLIF(0.4)), (4, 5, 6)),
        (lambda: SpikingCNN(2, 3, image_size=8, channels=(4, 6), residual=True), (3, 5, 2, 8, 8)),
    ],
)
def test_multi_step_equals_single_step(device, make, shape):
    model = make().to(device).eval()  # eval: batch norm uses running statistics in both modes
    x = torch.rand(shape, device=device) * 3
    multi = model(x)
    assert multi.shape == (shape[0], shape[1], 3)
    torch.testing.assert_close(multi, run_single(model, x))


def test_resblock_keeps_shape_and_spikes():
    block = SpikingResBlock(4)
    x = (torch.rand(3, 2, 4, 6, 6) > 0.5).float()
    s = block(x)
    assert s.shape == x.shape
    assert set(s.unique().tolist()) <= {0.0, 1.0}


def test_state_dict_round_trip():
    a = SpikingCNN(1, 4, image_size=8, channels=(4,), neuron=lambda: PLIF(0.3))
    b = SpikingCNN(1, 4, image_size=8, channels=(4,), neuron=lambda: PLIF(0.8))
    b.load_state_dict(a.state_dict())
    x = torch.rand(3, 2, 1, 8, 8) * 3
    a.eval(), b.eval()
    torch.testing.assert_close(a(x), b(x))


def test_root_step_mode_propagates():
    model = SpikingMLP(4, 2, hidden=(5,))
    model.step_mode = "single"
    assert all(m.step_mode == "single" for m in model.modules() if hasattr(m, "step_mode"))
    assert model(torch.rand(3, 4)).shape == (3, 2)


def test_bad_input():
    model = SpikingMLP(4, 2)
    with pytest.raises(ValueError, match=r"\(T, B, F\)"):
        model(torch.rand(3, 4))
    with pytest.raises(ValueError, match="image_size"):
        SpikingCNN(1, 2, image_size=6, channels=(4, 4))
    with pytest.raises(ValueError, match=r"\(T, B, \*\)"):
        MultiStep(torch.nn.Identity())(torch.rand(3))
