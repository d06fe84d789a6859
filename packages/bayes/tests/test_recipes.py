"""Every recipe of torchloom.bayes runs in quick mode, its checked claims hold, files exist."""

from __future__ import annotations

import pytest

from torchloom.bayes import recipes
from torchloom.core.recipes import recipes_in
from torchloom.core.testing import assert_recipe_holds

RECIPES = recipes_in(recipes)


def test_recipes_registered():
    assert "bayes.ssvi" in RECIPES
    assert RECIPES["bayes.ssvi"].papers == (4,)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_quick(name, tmp_path):
    result = assert_recipe_holds(RECIPES[name], tmp_path)
    assert (tmp_path / name / "result.json").exists()
    assert result.figures
    for path in result.figures:
        assert path.exists()
    assert result.tables
    # the subspace never changed size while it was being rearranged
    if name == "bayes.ssvi":
        assert result.metrics["subspace_size_changes"] == 0.0
        assert result.metrics["swapped_total"] > 0
