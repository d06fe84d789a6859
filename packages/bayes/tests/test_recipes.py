"""Every recipe of torchloom.bayes runs in quick mode, its checked claims hold, files exist."""

from __future__ import annotations

import pytest

from torchloom.bayes import recipes
from torchloom.core.recipes import recipes_in, run_recipe

RECIPES = recipes_in(recipes)


def test_recipes_registered():
    assert "bayes.ssvi" in RECIPES
    assert RECIPES["bayes.ssvi"].papers == (4,)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_quick(name, tmp_path):
    result = run_recipe(RECIPES[name], quick=True, out_dir=tmp_path, show_progress=False)
    failed = [c.to_json() for c in result.claims if c.checked and not c.holds]
    assert not failed, failed
    assert (tmp_path / name / "result.json").exists()
    assert result.figures
    for path in result.figures:
        assert path.exists()
    assert result.tables
    # the subspace never changed size while it was being rearranged
    if name == "bayes.ssvi":
        assert result.metrics["subspace_size_changes"] == 0.0
        assert result.metrics["swapped_total"] > 0
