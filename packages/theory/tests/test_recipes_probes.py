"""The probe recipes (geometry, information plane, convergent learning) run in quick mode and
their checked claims hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchloom.core.recipes import Recipe
from torchloom.core.testing import assert_recipe_holds, recipes_of
from torchloom.theory.recipes import probes

RECIPES = recipes_of(probes)


@pytest.mark.parametrize("r", RECIPES, ids=[r.name for r in RECIPES])
def test_recipe_quick(r: Recipe, tmp_path: Path) -> None:
    res = assert_recipe_holds(r, tmp_path)
    assert set(res.metrics) >= {c.metric for c in r.claims}
