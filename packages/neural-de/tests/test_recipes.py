"""Every recipe of the package runs in quick mode, its checked claims hold and it writes files."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchloom.core.recipes import Recipe, recipes_in, run_recipe
from torchloom.neural_de import recipes

RECIPES = sorted(recipes_in(recipes).values(), key=lambda r: r.name)


def test_recipes_are_registered() -> None:
    assert {r.name for r in RECIPES} >= {"neural-de.regularize"}
    for r in RECIPES:
        assert r.name.startswith("neural-de.")


@pytest.mark.parametrize("r", RECIPES, ids=lambda r: r.name)
def test_recipe_quick(r: Recipe, tmp_path: Path) -> None:
    result = run_recipe(r, quick=True, out_dir=tmp_path, show_progress=False)
    failed = [c.to_json() for c in result.claims if c.checked and not c.holds]
    assert not failed, failed
    assert (tmp_path / r.name / "result.json").is_file()
    assert result.figures and all(Path(p).is_file() for p in result.figures)
    assert result.tables
