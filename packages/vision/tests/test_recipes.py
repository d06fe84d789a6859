"""Every recipe of torchloom.vision runs in quick mode and its checked claims hold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from torchloom.core.recipes import Recipe, recipes_in
from torchloom.core.testing import assert_recipe_holds
from torchloom.vision import recipes as recipes_module
from torchloom.vision.recipes import _paired_bootstrap_ratio

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


def test_paired_bootstrap_ratio_pairs_images() -> None:
    # the same indices are drawn for both nets: identical or proportional per-image errors
    # give a degenerate interval at exactly that ratio (unpaired resampling would not)
    gen = np.random.default_rng(0)
    a = [gen.poisson(0.5, 300).astype(float) + 1.0, gen.poisson(1.0, 50).astype(float) + 1.0]
    assert _paired_bootstrap_ratio(a, a, gen, n_boot=300) == pytest.approx((1.0, 1.0))
    doubled = [2.0 * x for x in a]
    assert _paired_bootstrap_ratio(doubled, a, gen, n_boot=300) == pytest.approx((2.0, 2.0))


def test_paired_bootstrap_ratio_matches_delta_method() -> None:
    # large sample: the percentile interval agrees with the delta-method normal interval of a
    # ratio of paired means, R ± 1.96·sd(a - R·b) / (sqrt(n)·mean(b))
    gen = np.random.default_rng(1)
    n = 2000
    b = gen.poisson(0.6, n).astype(float)
    a = b + gen.poisson(0.3, n) - gen.binomial(1, 0.2, n) * (b > 0)
    ratio = a.mean() / b.mean()
    half = 1.96 * np.std(a - ratio * b) / (np.sqrt(n) * b.mean())
    low, high = _paired_bootstrap_ratio([a], [b], gen, n_boot=2000)
    assert low < ratio < high
    assert low == pytest.approx(ratio - half, abs=0.25 * half)
    assert high == pytest.approx(ratio + half, abs=0.25 * half)
