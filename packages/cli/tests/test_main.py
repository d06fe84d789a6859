"""The loom CLI driven in-process on toy recipes: exit codes, tables, JSON written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from torchloom.cli.main import main, resolve
from torchloom.core.recipes import Claim, Recipe, Result, RunContext, recipe


@recipe(name="toy.good", papers=(7,), claims=[Claim("acc", ">=", 0.5, paper="0.9 (Tab. 1)")])
def good(ctx: RunContext) -> Result:
    """Measures a fixed accuracy."""
    total = sum(1 for _ in ctx.progress(range(3), description="steps"))
    return Result(metrics={"acc": 0.25 * total})


@recipe(name="toy.bad", papers=(7,), claims=[Claim("acc", ">=", 0.5)])
def bad(ctx: RunContext) -> Result:
    return Result(metrics={"acc": 0.1})


@recipe(name="other.crash", papers=(1,), claims=[Claim("acc", ">=", 0.5)])
def crash(ctx: RunContext) -> Result:
    raise RuntimeError("boom")


RECIPES: dict[str, Recipe] = {r.name: r for r in (good, bad, crash)}


def run(argv: list[str]) -> int:
    return main(argv, recipes=RECIPES)


def test_list_shows_every_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["list"]) == 0
    out = capsys.readouterr().out
    for name in RECIPES:
        assert name in out


def test_repro_passing_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["repro", "toy.good", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    data = json.loads((tmp_path / "toy.good" / "result.json").read_text())
    assert data["ok"] and data["metrics"]["acc"] == 0.75 and data["config"]["quick"]
    out = capsys.readouterr().out
    assert "0.9 (Tab. 1)" in out and "0.75" in out


def test_repro_failing_claim_exits_1(tmp_path: Path) -> None:
    assert run(["repro", "toy.good", "toy.bad", "--out", str(tmp_path), "--no-progress"]) == 1
    assert not json.loads((tmp_path / "toy.bad" / "result.json").read_text())["ok"]
    assert (tmp_path / "toy.good" / "result.json").exists()


def test_repro_crash_exits_3_and_runs_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["repro", "all", "--quick", "--out", str(tmp_path), "--no-progress"]) == 3
    out = capsys.readouterr().out
    assert "boom" in out and "crashed" in out
    assert (tmp_path / "toy.good" / "result.json").exists()


def test_unknown_name_suggests_closest(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["repro", "toy.godo"]) == 2
    assert "did you mean toy.good" in capsys.readouterr().err


def test_resolve_package_and_all() -> None:
    assert [r.name for r in resolve(["toy"], RECIPES)] == ["toy.good", "toy.bad"]
    assert len(resolve(["all"], RECIPES)) == 3


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["repro"]) == 2
    assert run(["frobnicate"]) == 2


def test_distributed_refuses_non_distributed_recipe(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert run(["repro", "toy.good"]) == 2
    assert "not marked distributed" in capsys.readouterr().err


def test_info_lists_versions(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["info"]) == 0
    out = capsys.readouterr().out
    assert "torchloom-core" in out and "devices: cpu" in out


def test_bench_runs_package_scripts(tmp_path: Path) -> None:
    bench = tmp_path / "packages" / "toy" / "benchmarks"
    bench.mkdir(parents=True)
    (bench / "bench_ok.py").write_text(
        "import sys, pathlib\nout = pathlib.Path(sys.argv[sys.argv.index('--out') + 1])\n"
        "out.mkdir(parents=True, exist_ok=True)\n(out / 'toy.json').write_text('{}')\n"
    )
    out = tmp_path / "res"
    assert run(["bench", "toy", "--root", str(tmp_path), "--out", str(out), "--quick"]) == 0
    assert (out / "toy.json").exists()
    (bench / "bench_fail.py").write_text("raise SystemExit(4)\n")
    assert run(["bench", "toy", "--root", str(tmp_path), "--out", str(out)]) == 3
    assert run(["bench", "nope", "--root", str(tmp_path)]) == 2


def test_discovery_loads_recipes_from_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from torchloom.core import recipes as rec

    class FakeEP:
        def __init__(self, name: str, module: object) -> None:
            self.name, self.module = name, module

        def load(self) -> object:
            return self.module

    this = sys.modules[__name__]
    monkeypatch.setattr(rec, "entry_points", lambda group: [FakeEP("toy", this)])
    assert set(rec.discover()) == set(RECIPES)
    clash = types.SimpleNamespace(
        x=recipe(name="toy.good", papers=(1,), claims=[Claim("a", ">", 0)])(lambda ctx: Result())
    )
    monkeypatch.setattr(
        rec, "entry_points", lambda group: [FakeEP("toy", this), FakeEP("dup", clash)]
    )
    with pytest.raises(rec.RecipeError, match="registered twice"):
        rec.discover()
