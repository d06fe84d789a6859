"""Every recipe of the package runs in quick mode, its checked claims hold, files are written."""

import json

import pytest

from torchloom.core.recipes import Recipe, recipes_in
from torchloom.core.testing import assert_recipe_holds
from torchloom.ssm import recipes as ssm_recipes

RECIPES = recipes_in(ssm_recipes)


def test_recipes_registered() -> None:
    assert set(RECIPES) == {"ssm.lssl", "ssm.pointer", "ssm.seqboat"}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_quick(name: str, tmp_path) -> None:
    r: Recipe = RECIPES[name]
    result = assert_recipe_holds(r, tmp_path)
    assert any(c.checked for c in result.claims), "each recipe checks a claim in quick mode"
    record = json.loads((tmp_path / name / "result.json").read_text())
    assert record["recipe"] == name and result.figures
    assert result.tables and all(rows for rows in result.tables.values())
