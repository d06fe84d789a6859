"""Every recipe of the package runs in quick mode, its checked claims hold and it saves files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from torchloom.core.recipes import Recipe, recipes_in
from torchloom.core.testing import assert_recipe_holds
from torchloom.quantize import recipes

RECIPES = sorted(recipes_in(recipes).values(), key=lambda r: r.name)


def test_recipes_registered() -> None:
    assert {r.name for r in RECIPES} == {"quantize.biper", "quantize.distill"}


@pytest.mark.parametrize("r", RECIPES, ids=lambda r: r.name)
def test_recipe_quick(r: Recipe, tmp_path: Path) -> None:
    result = assert_recipe_holds(r, tmp_path)
    record = json.loads((tmp_path / r.name / "result.json").read_text())
    assert record["recipe"] == r.name
    assert result.figures and all(Path(p).is_file() for p in result.figures)
    assert result.tables
