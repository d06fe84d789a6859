"""Every explain recipe runs in quick mode and its checked claims hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from torchloom.core.recipes import Recipe, recipes_in, run_recipe
from torchloom.explain import recipes

RECIPES = list(recipes_in(recipes).values())


@pytest.mark.parametrize("r", RECIPES, ids=lambda r: r.name)
def test_recipe_quick(r: Recipe, tmp_path: Path) -> None:
    res = run_recipe(r, quick=True, out_dir=tmp_path, show_progress=False)
    failed = [c.to_json() for c in res.claims if c.checked and not c.holds]
    assert not failed, failed
    data = json.loads((tmp_path / r.name / "result.json").read_text())
    assert data["ok"] and data["figures"]
    assert all(Path(p).exists() for p in data["figures"])
