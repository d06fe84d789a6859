"""Every recipe of the package runs in quick mode, its checked claims hold, files are written."""

import json

import pytest

from torchloom.core.recipes import Recipe, recipes_in, run_recipe
from torchloom.ssm import recipes as ssm_recipes

RECIPES = recipes_in(ssm_recipes)


def test_recipes_registered() -> None:
    assert set(RECIPES) == {"ssm.lssl", "ssm.pointer", "ssm.seqboat"}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_quick(name: str, tmp_path) -> None:
    r: Recipe = RECIPES[name]
    result = run_recipe(r, quick=True, out_dir=tmp_path, show_progress=False, log=lambda m: None)
    checked = [c for c in result.claims if c.checked]
    assert checked, "each recipe checks at least one claim in quick mode"
    for c in checked:
        assert c.holds, f"{c.claim.describe()}: measured {c.measured}"
    record = json.loads((tmp_path / name / "result.json").read_text())
    assert record["recipe"] == name and record["ok"]
    assert result.figures and all(p.exists() for p in result.figures)
    assert result.tables and all(rows for rows in result.tables.values())
