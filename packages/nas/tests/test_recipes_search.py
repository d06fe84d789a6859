"""Every search recipe (RARTS, DARTS-PT, sharpDARTS, SD-DARTS) runs in quick mode and its
checked claims hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchloom.core.recipes import Recipe
from torchloom.core.testing import assert_recipe_holds, recipes_of
from torchloom.nas.recipes import search

RECIPES = recipes_of(search)


def test_all_search_recipes_are_registered() -> None:
    assert {r.name for r in RECIPES} == {
        "nas.rarts",
        "nas.selection",
        "nas.sharpdarts",
        "nas.sd-darts",
    }


@pytest.mark.parametrize("r", RECIPES, ids=[r.name for r in RECIPES])
def test_recipe_quick(r: Recipe, tmp_path: Path) -> None:
    assert_recipe_holds(r, tmp_path)
