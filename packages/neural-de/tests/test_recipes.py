"""Every recipe of the package runs in quick mode, its checked claims hold and it writes files."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchloom.core.recipes import Recipe
from torchloom.core.testing import assert_recipe_holds, recipes_of
from torchloom.neural_de import recipes

RECIPES = sorted(recipes_of(recipes), key=lambda r: r.name)


def test_recipes_are_registered() -> None:
    assert {r.name for r in RECIPES} == {
        "neural-de.ncde",
        "neural-de.regularize",
        "neural-de.sde-gan",
        "neural-de.stable-sde",
    }
    assert all(r.papers for r in RECIPES)


@pytest.mark.parametrize("r", RECIPES, ids=lambda r: r.name)
def test_recipe_quick(r: Recipe, tmp_path: Path) -> None:
    result = assert_recipe_holds(r, tmp_path)
    assert result.tables
    assert result.figures and all(Path(p).is_file() for p in result.figures)
