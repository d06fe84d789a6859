"""Every dsp recipe runs in quick mode, its checked claims hold and its files are written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from torchloom.core.recipes import recipes_in
from torchloom.core.testing import assert_recipe_holds
from torchloom.dsp import recipes
from torchloom.dsp.io import read_wav

RECIPES = recipes_in(recipes)


def test_recipes_registered() -> None:
    assert set(RECIPES) == {"dsp.fit", "dsp.autoencoder"}
    assert all(r.papers == (10,) for r in RECIPES.values())


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_quick(name: str, tmp_path: Path) -> None:
    result = assert_recipe_holds(RECIPES[name], tmp_path)
    record = json.loads((tmp_path / name / "result.json").read_text())
    assert record["ok"] is True
    assert result.figures and all(Path(f).exists() for f in result.figures)
    assert result.tables
    if name == "dsp.autoencoder":
        for wav in ("target.wav", "resynthesis.wav", "pitch_up_5_semitones.wav"):
            audio, sr = read_wav(tmp_path / name / wav)
            assert sr == 16000 and audio.abs().max() > 0.1
