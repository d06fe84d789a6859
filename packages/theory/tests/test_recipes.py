"""Every kernel recipe (recipes.kernels) runs in quick mode and its checked claims hold; the
probe, dynamics and limits recipes have their own test files."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchloom.core.recipes import Recipe, run_recipe
from torchloom.theory.recipes import kernels as recipes

RECIPES = [r for r in vars(recipes).values() if isinstance(r, Recipe)]


@pytest.mark.parametrize("r", RECIPES, ids=[r.name for r in RECIPES])
def test_recipe_quick(r: Recipe, tmp_path: Path) -> None:
    result = run_recipe(r, quick=True, out_dir=tmp_path, show_progress=False)
    failed = [c.to_json() for c in result.claims if c.checked and not c.holds]
    assert not failed, failed
    assert (tmp_path / r.name / "result.json").exists()
    assert result.figures and all(Path(f).exists() for f in result.figures)
