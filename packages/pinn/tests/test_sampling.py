"""Collocation samplers: inside the box, low discrepancy beats i.i.d., bad domains rejected."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import qmc

from torchloom.pinn.sampling import box_bounds, hammersley, sample_boundary, sample_box


@pytest.mark.parametrize("method", ["uniform", "grid", "hammersley", "sobol"])
def test_points_lie_in_box(method: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = sample_box([-1.0, 2.0], [3.0, 2.5], 64, method, generator=g, dtype=torch.float64)
    assert x.shape[1] == 2 and x.shape[0] <= 64
    assert bool((x[:, 0] >= -1).all() and (x[:, 0] <= 3).all())
    assert bool((x[:, 1] >= 2).all() and (x[:, 1] <= 2.5).all())


def test_hammersley_matches_definition_and_is_low_discrepancy() -> None:
    h = hammersley(8, 2)
    # radical inverse in base 2 of 0..7: 0, .5, .25, .75, .125, .625, .375, .875
    np.testing.assert_allclose(h[:, 1], [0, 0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875])
    np.testing.assert_allclose(h[:, 0], np.arange(8) / 8)
    rng = np.random.default_rng(0)
    d_h = qmc.discrepancy(hammersley(256, 2))
    d_u = np.mean([qmc.discrepancy(rng.random((256, 2))) for _ in range(5)])
    assert d_h < 0.2 * d_u


def test_sobol_seeded_by_generator() -> None:
    a = sample_box(0.0, 1.0, 32, "sobol", generator=torch.Generator().manual_seed(1))
    b = sample_box(0.0, 1.0, 32, "sobol", generator=torch.Generator().manual_seed(1))
    c = sample_box(0.0, 1.0, 32, "sobol", generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_boundary_points_on_faces() -> None:
    x = sample_boundary([0.0, 0.0], [1.0, 2.0], 5, generator=torch.Generator().manual_seed(0))
    on_face = (x[:, 0] == 0) | (x[:, 0] == 1) | (x[:, 1] == 0) | (x[:, 1] == 2)
    assert x.shape == (20, 2) and bool(on_face.all())
    assert sample_boundary(0.0, 1.0, 3).flatten().tolist() == [0.0, 1.0]


@pytest.mark.parametrize(("lo", "hi"), [(1.0, 1.0), ([0.0, 1.0], [1.0, 0.5]), ([0.0], [1.0, 2.0])])
def test_bad_domains_rejected(lo: object, hi: object) -> None:
    with pytest.raises(ValueError, match="width|length"):
        box_bounds(lo, hi)  # type: ignore[arg-type]


def test_bad_method_rejected() -> None:
    with pytest.raises(ValueError, match="method"):
        sample_box(0.0, 1.0, 4, "halton")  # type: ignore[arg-type]
