"""Every theory recipe (kernels, probes, dynamics, limits) runs in quick mode, its checked claims
hold, and it writes result.json and its figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchloom.core.recipes import Recipe
from torchloom.core.testing import assert_recipe_holds, recipe_params
from torchloom.theory.recipes import dynamics, kernels, limits, probes


@pytest.mark.parametrize("r", recipe_params(kernels, probes, dynamics, limits))
def test_recipe_quick(r: Recipe, tmp_path: Path) -> None:
    res = assert_recipe_holds(r, tmp_path)
    assert set(res.metrics) >= {c.metric for c in r.claims}
    assert res.figures
