"""Every explain recipe runs in quick mode, its checked claims hold, and its outputs are written."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from torchloom.core.recipes import Recipe
from torchloom.core.testing import assert_recipe_holds, recipe_params
from torchloom.explain import recipes


@pytest.mark.parametrize("r", recipe_params(recipes))
def test_recipe_quick(r: Recipe, tmp_path: Path) -> None:
    res = assert_recipe_holds(r, tmp_path)
    if r.name == "explain.counterfactual" and importlib.util.find_spec("dice_ml") is not None:
        # the DiCE side by side ran on the same queries and reports proper rates and times
        m = res.metrics
        for key in (
            "dice_validity_original",
            "dice_validity_retrained",
            "trex_validity_retrained_dice_queries",
            "dice_validity_retrained_all",
            "trex_validity_original_dice_queries",
        ):
            assert 0.0 <= m[key] <= 1.0, (key, m[key])
        assert m["dice_seconds_per_instance"] > 0 and m["trex_seconds_per_instance"] > 0
        ratio = m["dice_seconds_per_instance"] / m["trex_seconds_per_instance"]
        assert math.isclose(m["time_ratio_dice_over_trex"], ratio, rel_tol=1e-9)
        assert m["dice_distance"] > 0 and m["trex_distance_dice_queries"] > 0
