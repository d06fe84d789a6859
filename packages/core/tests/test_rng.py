"""torchloom.core.rng: draws follow the generator's device and land on the requested one."""

from __future__ import annotations

import pytest
import torch

from torchloom.core import rng
from torchloom.core.relax import binary_gate, gumbel_softmax, hard_concrete


def _gen(seed: int = 3) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (
            lambda g, d: rng.rand((4, 5), generator=g, device=d),
            lambda g: torch.rand(4, 5, generator=g),
        ),
        (
            lambda g, d: rng.randn((4, 5), generator=g, device=d),
            lambda g: torch.randn(4, 5, generator=g),
        ),
        (
            lambda g, d: rng.randint(0, 7, (9,), generator=g, device=d),
            lambda g: torch.randint(0, 7, (9,), generator=g),
        ),
        (
            lambda g, d: rng.randperm(11, generator=g, device=d),
            lambda g: torch.randperm(11, generator=g),
        ),
    ],
)
def test_cpu_generator_gives_the_cpu_draws_on_every_device(ours, theirs, device) -> None:
    # the same seed gives the same numbers whatever the target device: recipes are reproducible
    got = ours(_gen(), device)
    assert got.device.type == device.type
    torch.testing.assert_close(got.cpu(), theirs(_gen()), rtol=0, atol=0)


def test_target_device_differs_from_generator_device() -> None:
    # "meta" stands in for CUDA on a CPU-only machine (the CUDA case runs in test_* with device)
    assert rng.randn((3,), generator=_gen(), device="meta").device.type == "meta"
    like = torch.empty(2, 3, device="meta")
    assert rng.exponential(like, generator=_gen()).device.type == "meta"


def test_exponential_and_multinomial_distributions() -> None:
    e = rng.exponential(torch.empty(200_000, dtype=torch.float64), generator=_gen())
    assert e.min() > 0
    assert abs(e.mean().item() - 1.0) < 0.01
    p = torch.tensor([0.1, 0.2, 0.7])
    idx = rng.multinomial(p, 50_000, replacement=True, generator=_gen())
    freq = torch.bincount(idx, minlength=3).double() / idx.numel()
    torch.testing.assert_close(freq, p.double(), atol=0.01, rtol=0)


def test_multinomial_half_precision_and_device(device) -> None:
    p = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float16, device=device)
    idx = rng.multinomial(p, 1, generator=_gen())
    assert idx.device.type == device.type
    assert idx.view(-1).tolist() == [1, 0]


def test_relaxations_accept_a_cpu_generator_on_any_device(device) -> None:
    # RunContext hands out a CPU generator; the relaxations must work with it on CUDA too
    logits = torch.randn(4, 5, device=device)
    y = gumbel_softmax(logits, tau=0.5, hard=True, generator=_gen())
    assert y.device.type == device.type
    torch.testing.assert_close(y.sum(-1), torch.ones(4, device=device))
    g = binary_gate(logits, generator=_gen())
    assert g.device.type == device.type and g.sum().item() == 4
    z = hard_concrete(logits, generator=_gen())
    assert z.device.type == device.type and ((z >= 0) & (z <= 1)).all()
    # identical noise on every device for the same seed
    torch.testing.assert_close(
        gumbel_softmax(logits.cpu(), generator=_gen()),
        gumbel_softmax(logits, generator=_gen()).cpu(),
    )


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="size"):
        rng.randn((2, -1))
    with pytest.raises(ValueError, match="high"):
        rng.randint(3, 3, (2,))
    with pytest.raises(ValueError, match="n must"):
        rng.randperm(-1)
    with pytest.raises(TypeError, match="generator"):
        rng.rand((2,), generator=3)  # type: ignore[arg-type]
