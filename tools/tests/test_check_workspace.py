"""tools/check_workspace.py and tools/readme_table.py: a clean workspace passes, each kind of
broken package is rejected with a line naming the package and the problem."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def _snn(root: Path) -> Path:
    return root / "packages" / "snn"


def test_clean_workspace_passes(cw: ModuleType, workspace: Path) -> None:
    assert cw.check(workspace) == []


def test_real_workspace_lists_its_packages(cw: ModuleType) -> None:
    names = [p.name for p in cw.package_dirs(cw.ROOT)]
    assert names[:2] == ["core", "cli"]
    assert names[2:] == sorted(names[2:])


# Each breaker damages packages/snn (or the workspace) in one way; the check must name it.
def _namespace_init(root: Path) -> None:
    (_snn(root) / "src" / "torchloom" / "__init__.py").write_text("")


def _no_all(root: Path) -> None:
    init = _snn(root) / "src" / "torchloom" / "snn" / "__init__.py"
    init.write_text(re.sub(r"(?m)^__all__.*$", "", init.read_text()))


def _version_without_changelog(root: Path) -> None:
    _edit(_snn(root) / "pyproject.toml", 'version = "0.1.0"', 'version = "0.1.5"')


def _sibling_range_excludes(root: Path) -> None:
    _edit(_snn(root) / "pyproject.toml", "torchloom-core>=0.1,<0.2", "torchloom-core>=0.2,<0.3")


def _extra_range_excludes(root: Path) -> None:
    _edit(root / "packages/cli/pyproject.toml", "torchloom-snn>=0.1,<0.2", "torchloom-snn>=1,<2")


def _unranged_sibling(root: Path) -> None:
    _edit(_snn(root) / "pyproject.toml", '"torchloom-core>=0.1,<0.2"', '"torchloom-core"')


def _no_upper_bound(root: Path) -> None:
    _edit(_snn(root) / "pyproject.toml", "torchloom-core>=0.1,<0.2", "torchloom-core>=0.1")


def _unknown_sibling(root: Path) -> None:
    _edit(_snn(root) / "pyproject.toml", "torchloom-core>=0.1,<0.2", "torchloom-cor>=0.1,<0.2")


def _wrong_dist(root: Path) -> None:
    _edit(_snn(root) / "pyproject.toml", 'name = "torchloom-snn"', 'name = "snn-tools"')


def _dynamic_version(root: Path) -> None:
    _edit(_snn(root) / "pyproject.toml", 'version = "0.1.0"', 'dynamic = ["version"]')


def _no_py_typed(root: Path) -> None:
    (_snn(root) / "src" / "torchloom" / "snn" / "py.typed").unlink()


def _no_unreleased(root: Path) -> None:
    _edit(_snn(root) / "CHANGELOG.md", "## Unreleased\n", "")


def _no_entry_point(root: Path) -> None:
    _edit(_snn(root) / "pyproject.toml", 'snn = "torchloom.snn.recipes"', "")


def _stale_table(root: Path) -> None:
    _edit(_snn(root) / "pyproject.toml", 'version = "0.1.0"', 'version = "0.1.1"')
    _edit(_snn(root) / "CHANGELOG.md", "## 0.1.0", "## 0.1.1\n\n## 0.1.0")


def _new_recipe(root: Path) -> None:
    (_snn(root) / "src/torchloom/snn/recipes.py").write_text(
        '@recipe(name="snn.sltt", papers=(7,), claims=[])\ndef sltt(ctx): ...\n'
    )


def _root_misses_member(root: Path) -> None:
    _edit(root / "pyproject.toml", ', "torchloom-snn"', "")


def _bad_pyproject(root: Path) -> None:
    (_snn(root) / "pyproject.toml").write_text("[project\n")


BREAKERS: list[tuple[Callable[[Path], None], str]] = [
    (_namespace_init, "packages/snn: src/torchloom/__init__.py exists"),
    (_no_all, "packages/snn: src/torchloom/snn/__init__.py does not define __all__"),
    (_version_without_changelog, "packages/snn: CHANGELOG.md has no '## 0.1.5' section"),
    (_sibling_range_excludes, "does not admit torchloom-core 0.1.0"),
    (_extra_range_excludes, "packages/cli: optional-dependencies.all: 'torchloom-snn>=1,<2'"),
    (_unranged_sibling, "packages/snn: dependencies: 'torchloom-core' has no version range"),
    (_no_upper_bound, "packages/snn: dependencies: 'torchloom-core>=0.1' has no upper bound"),
    (_unknown_sibling, "names no workspace package"),
    (_wrong_dist, "packages/snn: dist name is 'snn-tools', expected 'torchloom-snn'"),
    (_dynamic_version, "packages/snn: no static version"),
    (_no_py_typed, "packages/snn: src/torchloom/snn/py.typed is missing"),
    (_no_unreleased, "packages/snn: CHANGELOG.md has no '## Unreleased' section"),
    (_no_entry_point, 'packages/snn: has recipes but no [project.entry-points."torchloom.'),
    (_stale_table, "README.md: package table is stale for torchloom-snn: version is '0.1.0'"),
    (_new_recipe, "README.md: package table is stale for torchloom-snn: recipes"),
    (_root_misses_member, "workspace root does not depend on torchloom-snn"),
    (_bad_pyproject, "packages/snn: pyproject.toml does not parse"),
]


@pytest.mark.parametrize(("breaker", "message"), BREAKERS, ids=[b.__name__ for b, _ in BREAKERS])
def test_each_breakage_is_named(
    cw: ModuleType, workspace: Path, breaker: Callable[[Path], None], message: str
) -> None:
    breaker(workspace)
    problems = cw.check(workspace)
    assert any(message in p for p in problems), problems


def test_broken_package_is_rejected_by_the_cli(
    cw: ModuleType, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One package broken in four ways at once: exit 1, one line per problem, all named."""
    for breaker in (_namespace_init, _no_all, _version_without_changelog, _sibling_range_excludes):
        breaker(workspace)
    assert cw.main(["--root", str(workspace)]) == 1
    out = capsys.readouterr().out.splitlines()
    for needle in ("__init__.py exists", "__all__", "'## 0.1.5'", "does not admit"):
        assert [line for line in out if needle in line and line.startswith("packages/snn:")], out


def test_clean_workspace_cli_exits_zero(
    cw: ModuleType, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cw.main(["--root", str(workspace)]) == 0
    assert "workspace ok: 3 packages" in capsys.readouterr().out


def test_list_packages_is_json(
    cw: ModuleType, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cw.main(["--root", str(workspace), "--list-packages"]) == 0
    assert json.loads(capsys.readouterr().out) == ["core", "cli", "snn"]


# ------------------------------------------------------------------ recipes, papers, table

RECIPES = """
from torchloom.core.recipes import Claim, recipe
import torchloom.core.recipes as r

@recipe(name="snn.sltt", papers=(7,), claims=[Claim("m", "<=", 1.0)])
def sltt(ctx): ...

@r.recipe(name="snn.bptt", papers=[7, 26], claims=[Claim("m", "<=", 1.0)])
def bptt(ctx): ...

direct = recipe(name="snn.direct", papers=(3,), claims=[])(lambda ctx: None)
"""


def test_parse_recipes(cw: ModuleType) -> None:
    got = cw.parse_recipes(RECIPES)
    assert [(d.name, d.papers) for d in got] == [
        ("snn.bptt", (7, 26)),
        ("snn.direct", (3,)),
        ("snn.sltt", (7,)),
    ]


def test_parse_recipes_survives_a_syntax_error(cw: ModuleType) -> None:
    got = cw.parse_recipes('@recipe(name="snn.sltt", papers=(7, 9), claims=[\ndef (')
    assert [(d.name, d.papers) for d in got] == [("snn.sltt", (7, 9))]


PAPERS = """| # | paper | package / module | claim | peer |
|---|---|---|---|---|
| 7 | SLTT | snn / sltt.py | memory flat in T | snnTorch |
| 10 | DDSP | dsp / (synth.py, noise.py) | f0 | ddsp |
| 12 | LIF variant | snn / lif.py | x | — |
"""


def test_table_merges_recipes_and_papers_md(
    cw: ModuleType, readme_table: ModuleType, workspace: Path
) -> None:
    (_snn(workspace) / "src/torchloom/snn/recipes.py").write_text(RECIPES)
    papers = workspace.parent / "shared" / "PAPERS.md"
    papers.parent.mkdir()
    papers.write_text(PAPERS)
    rows = cw.paper_rows(papers)
    assert rows[1].modules == ("synth.py", "noise.py")
    assert cw.papers_path(workspace) == papers  # found beside the clone by default
    assert readme_table.main(["--root", str(workspace)]) == 1  # stale until written
    assert readme_table.main(["--root", str(workspace), "--write"]) == 0
    assert cw.check(workspace) == []
    row = next(r for r in cw.table_rows(workspace) if "torchloom-snn" in r[0])
    assert row == [
        "[torchloom-snn](packages/snn)",
        "0.1.0",
        "3, 7, 12, 26",
        "`snn.bptt`, `snn.direct`, `snn.sltt`",
    ]
    # A clone without ../shared/PAPERS.md: the table (which lists more papers) still passes...
    papers.unlink()
    assert cw.check(workspace) == []
    # ...but a paper a recipe cites must be listed.
    readme = workspace / "README.md"
    readme.write_text(readme.read_text().replace("3, 7, 12, 26", "7, 12, 26"))
    assert any("papers" in p for p in cw.check(workspace))


def test_readme_without_markers_is_reported(cw: ModuleType, workspace: Path) -> None:
    (workspace / "README.md").write_text("# ws\n")
    assert cw.check(workspace) == [
        "README.md: no package table markers <!-- packages:start --> / <!-- packages:end -->"
    ]


# ------------------------------------------------------------------ version ranges


CASES = [
    (">=0.1,<0.2", "0.1.0", True),
    (">=0.1,<0.2", "0.1.9", True),
    (">=0.1,<0.2", "0.2.0", False),
    (">=0.1,<0.2", "0.10.0", False),
    ("~=0.1", "0.9.0", True),
    ("~=0.1", "1.0.0", False),
    ("==0.1.*", "0.1.3", True),
    ("!=0.1.1,>=0.1", "0.1.1", False),
    ("", "5.0.0", True),
]


@pytest.mark.parametrize(("spec", "version", "ok"), CASES)
@pytest.mark.parametrize("with_packaging", [True, False])
def test_spec_contains(
    cw: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    spec: str,
    version: str,
    ok: bool,
    with_packaging: bool,
) -> None:
    if not with_packaging:
        if "*" in spec:
            pytest.skip("the fallback parser does not do wildcards")
        monkeypatch.setitem(sys.modules, "packaging.specifiers", None)
        monkeypatch.setitem(sys.modules, "packaging.requirements", None)
    assert cw.spec_contains(spec, version) is ok
    req = cw.parse_requirement(f"torchloom_Core[x] {spec}; python_version >= '3.10'")
    assert req.name == "torchloom-core"
    assert req.admits(version) is ok
