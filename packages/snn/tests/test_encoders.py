"""Direct, Poisson and latency coding: shapes, rates, spike times and bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, strategies as st

from torchloom.core.testing.strategies import tensors
from torchloom.snn.encoders import direct_encode, latency_encode, poisson_encode


def test_direct_repeats(device):
    x = torch.rand(3, 5, device=device)
    s = direct_encode(x, 4)
    assert s.shape == (4, 3, 5)
    for t in range(4):
        torch.testing.assert_close(s[t], x)


def test_poisson_rate_matches_intensity(device):
    x = torch.rand(4, 6, device=device)
    g = torch.Generator(device=device).manual_seed(0)
    s = poisson_encode(x, 4000, generator=g)
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    # 4000 Bernoulli draws: std of the mean <= 0.008, allow 5 sigma
    torch.testing.assert_close(s.mean(0), x, atol=0.04, rtol=0)
    g2 = torch.Generator(device=device).manual_seed(0)
    torch.testing.assert_close(poisson_encode(x, 4000, generator=g2), s)


@given(
    x=tensors((3, 4), dtype=torch.float64, min_value=0.0, max_value=1.0), steps=st.integers(1, 9)
)
def test_latency_one_spike_at_the_right_time(x, steps):
    s = latency_encode(x, steps, threshold=0.1)
    fires = x > 0.1
    torch.testing.assert_close(s.sum(0), fires.to(s.dtype))
    t_first = s.argmax(0)
    expected = torch.round((1 - x) * (steps - 1)).long()
    assert torch.equal(t_first[fires], expected[fires])
    # larger intensity never fires later
    flat_x, flat_t = x[fires], t_first[fires]
    order = flat_x.argsort()
    assert bool((flat_t[order].diff() <= 0).all())


def test_bad_input():
    with pytest.raises(ValueError, match="steps"):
        direct_encode(torch.rand(2), 0)
    with pytest.raises(TypeError, match="steps"):
        direct_encode(torch.rand(2), 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        poisson_encode(torch.tensor([0.5, 1.5]), 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        latency_encode(torch.tensor([float("nan")]), 3)
    with pytest.raises(TypeError, match="floating"):
        poisson_encode(torch.ones(3, dtype=torch.long), 3)


def test_poisson_same_spikes_on_every_device_from_a_cpu_generator(device):
    # recipes hand out one CPU generator; the spikes must not depend on the model's device
    x = torch.rand(3, 7, generator=torch.Generator().manual_seed(1))
    ref = poisson_encode(x, 5, generator=torch.Generator().manual_seed(2))
    got = poisson_encode(x.to(device), 5, generator=torch.Generator().manual_seed(2))
    assert got.device.type == device.type
    torch.testing.assert_close(got.cpu(), ref, rtol=0, atol=0)
