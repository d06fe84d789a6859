"""The authors' per-model hyperparameter search behind neural-de.stable-sde (search_configs)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from torchloom.core.recipes import RunContext
from torchloom.neural_de.recipes.irregular import (
    _SEARCHED,
    _SearchTrial,
    _stable_setup,
    search_configs,
)

SETUP: dict[str, Any] = {
    "n": 64,
    "length": 8,
    "index_time": True,
    "sde_kwargs": {"head": "mlp", "diffusion_init": 0.05},
    "noise": 0.25,
    "task": "oscillators",
    "classes": 2,
}


def _fwd(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return m(x)  # type: ignore[no-any-return]


def _trial(seed: int = 0) -> _SearchTrial:
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 3, generator=gen), torch.randint(0, 2, (40,), generator=gen)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    return _SearchTrial(model, _fwd, (x[:30], y[:30]), (x[30:], y[30:]), 16, 0.05, seed)


def test_trial_resumes_exactly() -> None:
    """Advancing a trial rung by rung (1, then 3, then 6 epochs) is the same training as one
    run of 6 epochs: successive halving only ever stops a trial, never changes it."""
    a, b = _trial(), _trial()
    a.run(1)
    a.run(3)
    a.run(6)
    b.run(6)
    assert a.epochs == b.epochs == 6
    assert a.losses == b.losses
    assert a.run(6) == a.losses[-1] and a.epochs == 6  # nothing more to train


def test_trial_learning_rate_halves_every_5_epochs() -> None:
    trial = _trial()
    trial.run(11)
    assert math.isclose(trial.opt.param_groups[0]["lr"], 0.05 / 4)
    assert math.isclose(trial.opt.param_groups[0]["weight_decay"], 0.05 / 100)


def test_successive_halving_and_selection() -> None:
    """8 configurations over rungs 1, 2, 4: 8 → 4 → 2 survive, the survivors of every rung
    are the best (lowest mean validation loss) at it, and the selection is the lowest last
    reported loss, averaged over the two seeds."""
    ctx = RunContext(quick=True, show_progress=False, log=lambda _: None)
    best, rows = search_configs(
        ctx, ["langevin", "ncde"], SETUP, samples=8, seeds=(3, 4), max_epochs=4, hidden=(4, 8)
    )
    for name in ("langevin", "ncde"):
        mine = [r for r in rows if r["model"] == name]
        assert len(mine) == 8
        assert sorted(r["epochs"] for r in mine) == [1, 1, 1, 1, 2, 2, 4, 4]
        for rung in (1, 2):
            stopped = [r["val_losses"][rung - 1] for r in mine if r["epochs"] == rung]
            went_on = [r["val_losses"][rung - 1] for r in mine if r["epochs"] > rung]
            assert max(went_on) <= min(stopped)
        for r in mine:
            assert len(r["val_losses"]) == r["epochs"]
            assert r["val_loss"] == r["val_losses"][-1]
            assert 1e-4 <= r["lr"] <= 1e-2 and r["hidden"] in (4, 8)
        winner = min(mine, key=lambda r: r["val_loss"])
        assert best[name] == {
            "lr": winner["lr"],
            "hidden": winner["hidden"],
            "val_loss": winner["val_loss"],
        }
    # the same sampled configurations for every model
    assert [(r["lr"], r["hidden"]) for r in rows if r["model"] == "langevin"] == [
        (r["lr"], r["hidden"]) for r in rows if r["model"] == "ncde"
    ]


def test_search_score_is_the_mean_over_seeds() -> None:
    """With one seed each, the two single-seed searches' epoch-1 losses average to the two-seed
    search's (one configuration, one epoch: no halving involved)."""
    ctx = RunContext(quick=True, show_progress=False, log=lambda _: None)
    kw: dict[str, Any] = {"samples": 1, "max_epochs": 1, "hidden": (4,)}
    one = search_configs(ctx, ["naive"], SETUP, seeds=(3,), **kw)[1][0]["val_loss"]
    two = search_configs(ctx, ["naive"], SETUP, seeds=(4,), **kw)[1][0]["val_loss"]
    both = search_configs(ctx, ["naive"], SETUP, seeds=(3, 4), **kw)[1][0]["val_loss"]
    assert math.isclose(both, (one + two) / 2, rel_tol=1e-6)


def test_search_script_writes_the_selection(tmp_path: Path) -> None:
    """``benchmarks/search_stable_sde.py --quick`` writes every trial and, per model, the
    trial with the lowest validation loss as the selection."""
    script = Path(__file__).parents[1] / "benchmarks" / "search_stable_sde.py"
    spec = importlib.util.spec_from_file_location("search_stable_sde", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "neural-de_stable_sde_search.json").read_text())
    assert set(report["selected"]) == {"langevin", "linear_noise", "geometric", "naive", "ncde"}
    for name, chosen in report["selected"].items():
        mine = [r for r in report["trials"] if r["model"] == name]
        winner = min(mine, key=lambda r: r["val_loss"])
        assert (chosen["lr"], chosen["hidden"]) == (winner["lr"], winner["hidden"])


@pytest.mark.slow
def test_searched_table_is_what_the_search_selects() -> None:
    """The recipe's full-mode table ``_SEARCHED`` is the selection that ``search_configs``
    makes with the script's full-mode settings (about 2 CPU-minutes)."""
    ctx = RunContext(quick=False, show_progress=False, log=lambda _: None)
    names = list(_SEARCHED)
    best, _ = search_configs(ctx, names, _stable_setup(ctx), samples=20, max_epochs=10)
    for name in names:
        lr, hidden = _SEARCHED[name]
        assert math.isclose(best[name]["lr"], lr, rel_tol=1e-12)
        assert best[name]["hidden"] == hidden
