"""Every recipe of torchloom.vision runs in quick mode and its checked claims hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from torchloom.core.recipes import Recipe, recipes_in
from torchloom.core.testing import assert_recipe_holds
from torchloom.vision import recipes as recipes_module

RECIPES = recipes_in(recipes_module)


def test_recipes_are_registered() -> None:
    assert set(RECIPES) >= {"vision.dta", "vision.msssim", "vision.nafdpm", "vision.skeleton"}
    for r in RECIPES.values():
        assert r.package == "vision" and r.claims and r.papers


# each quick mode takes <= ~15 s of CPU time (vision.dta and vision.nafdpm are the longest)
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_quick(name: str, tmp_path: Path) -> None:
    r: Recipe = RECIPES[name]
    if name == "vision.skeleton":
        pytest.importorskip("skimage", reason="vision.skeleton compares with scikit-image")
    result = assert_recipe_holds(r, tmp_path)
    record = tmp_path / name / "result.json"
    assert record.exists()
    assert json.loads(record.read_text())["recipe"] == name
    assert result.figures and all(Path(p).exists() for p in result.figures)
    assert result.tables
