"""Every operator recipe runs in quick mode, its checked claims hold, and writes its outputs."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from torchloom.core.recipes import Recipe
from torchloom.core.testing import assert_recipe_holds, recipe_params
from torchloom.operator import recipes


@pytest.mark.parametrize("r", recipe_params(recipes))
def test_recipe_quick(r: Recipe, tmp_path: Path) -> None:
    res = assert_recipe_holds(r, tmp_path)
    if r.name == "operator.mgno" and importlib.util.find_spec("neuralop") is not None:
        # the peer ran side by side: parameter count matched, a proper error and ratio
        m = res.metrics
        assert abs(m["params_fno_neuralop"] / m["params_mgno"] - 1) < 0.15
        assert 0 < m["fno_neuralop_rel_l2"] < 1
        ratio = m["mgno_rel_l2"] / m["fno_neuralop_rel_l2"]
        assert math.isclose(m["mgno_over_fno_neuralop"], ratio, rel_tol=1e-9)
