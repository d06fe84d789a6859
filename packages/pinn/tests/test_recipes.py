"""Every recipe of the package runs in quick mode and its checked claims hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchloom.core.recipes import Recipe
from torchloom.core.testing import assert_recipe_holds, recipes_of
from torchloom.pinn import recipes

RECIPES = recipes_of(recipes)


# every quick mode runs in well under 20 s on one core; none needs the slow session
_SLOW: set[str] = set()


@pytest.mark.parametrize(
    "r",
    [
        pytest.param(r, id=r.name, marks=[pytest.mark.slow] if r.name in _SLOW else [])
        for r in RECIPES
    ],
)
def test_recipe_quick(r: Recipe, tmp_path: Path) -> None:
    assert_recipe_holds(r, tmp_path)
