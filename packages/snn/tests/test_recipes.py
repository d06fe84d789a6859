"""Every recipe of torchloom.snn runs in quick mode, its checked claims hold, files exist."""

from __future__ import annotations

import pytest

from torchloom.core.recipes import recipes_in, run_recipe
from torchloom.snn import recipes

RECIPES = recipes_in(recipes)


def test_recipes_registered():
    assert "snn.sltt" in RECIPES


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
