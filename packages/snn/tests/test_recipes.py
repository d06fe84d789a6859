"""Every recipe of torchloom.snn runs in quick mode, its checked claims hold, files exist."""

from __future__ import annotations

import pytest

from torchloom.core.recipes import recipes_in
from torchloom.core.testing import assert_recipe_holds
from torchloom.snn import recipes

RECIPES = recipes_in(recipes)


def test_recipes_registered():
    assert "snn.sltt" in RECIPES


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_quick(name, tmp_path):
    result = assert_recipe_holds(RECIPES[name], tmp_path)
    assert (tmp_path / name / "result.json").exists()
    assert result.figures
    for path in result.figures:
        assert path.exists()
    assert result.tables
