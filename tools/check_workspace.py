#!/usr/bin/env python3
"""Check that every package in the workspace has the shape DESIGN.md describes.

    python tools/check_workspace.py [--root DIR] [--list-packages]

Checks, per ``packages/<name>``: the dist name (``torchloom-<name>``, plain ``torchloom`` for
``cli``), a static version, a CHANGELOG section for that version (and an ``Unreleased`` one),
``src/torchloom/<imp>/__init__.py`` defining ``__all__``, no ``src/torchloom/__init__.py`` (PEP
420 namespace), ``py.typed``, a ``torchloom.recipes`` entry point when the package has recipes,
and sibling dependency ranges that admit the sibling's current version. Across the workspace:
the root depends on every member, and the package table in README.md is current. Prints one
line per problem and exits 1 when there is any.

``--list-packages`` prints the package directory names as a JSON list (for the CI matrix); it
needs nothing beyond the standard library of Python >= 3.11 (or ``tomli``).

This module also holds the workspace model (packages, recipes, PAPERS.md rows) and the README
table, which ``readme_table.py``, ``release.py`` and ``gen_docs.py`` import.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
FIRST = ("core", "cli")  # listed before the method packages everywhere
RECIPE_GROUP = "torchloom.recipes"
TABLE_START = "<!-- packages:start -->"
TABLE_END = "<!-- packages:end -->"
TABLE_FIX = "run `python tools/readme_table.py --write`"


# --------------------------------------------------------------------------------------------
# The workspace model


def normalize(name: str) -> str:
    """PEP 503 normal form of a distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def expected_dist(name: str) -> str:
    return "torchloom" if name == "cli" else f"torchloom-{name}"


@dataclass
class Package:
    """One ``packages/<name>`` directory and its parsed ``pyproject.toml``."""

    name: str
    path: Path
    pyproject: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # why pyproject.toml could not be read

    @property
    def project(self) -> dict[str, Any]:
        project = self.pyproject.get("project", {})
        return project if isinstance(project, dict) else {}

    @property
    def dist(self) -> str:
        return str(self.project.get("name", ""))

    @property
    def imp(self) -> str:
        return self.name.replace("-", "_")

    @property
    def version(self) -> str | None:
        v = self.project.get("version")
        return v if isinstance(v, str) and v else None

    @property
    def src(self) -> Path:
        return self.path / "src" / "torchloom" / self.imp

    def requirements(self) -> list[tuple[str, str]]:
        """``(where, requirement)`` for every dependency, optional ones included."""
        out = [("dependencies", str(r)) for r in self.project.get("dependencies", [])]
        for extra, reqs in sorted(self.project.get("optional-dependencies", {}).items()):
            out += [(f"optional-dependencies.{extra}", str(r)) for r in reqs]
        return out


def package_dirs(root: Path) -> list[Path]:
    """``packages/*`` directories holding a pyproject.toml: core, cli, then alphabetical."""
    base = root / "packages"
    if not base.is_dir():
        return []
    dirs = [p for p in base.iterdir() if (p / "pyproject.toml").is_file()]
    return sorted(dirs, key=lambda p: (FIRST.index(p.name) if p.name in FIRST else 9, p.name))


def load_packages(root: Path) -> list[Package]:
    pkgs = []
    for d in package_dirs(root):
        try:
            data = tomllib.loads((d / "pyproject.toml").read_text())
            pkgs.append(Package(d.name, d, data))
        except (OSError, tomllib.TOMLDecodeError) as e:
            pkgs.append(Package(d.name, d, error=str(e)))
    return pkgs


# --------------------------------------------------------------------------------------------
# Requirements and versions: `packaging` when importable (it comes with the dev tools), else a
# small parser good enough for the `name>=a,<b` ranges the workspace uses.


@dataclass(frozen=True)
class Req:
    name: str  # normalised
    specifier: str  # "" when unranged

    def admits(self, version: str) -> bool:
        return spec_contains(self.specifier, version)

    def has_upper_bound(self) -> bool:
        return any(op in ("<", "<=", "==", "~=", "===") for op, _ in _clauses(self.specifier))


_REQ_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;@]*)")
_CLAUSE_RE = re.compile(r"^\s*(===|~=|==|!=|<=|>=|<|>)\s*([^\s,]+)\s*$")


def parse_requirement(text: str) -> Req:
    try:
        from packaging.requirements import Requirement
    except ImportError:
        m = _REQ_RE.match(text)
        if not m:
            raise ValueError(f"cannot parse requirement {text!r}") from None
        return Req(normalize(m.group(1)), m.group(3).strip().replace(" ", ""))
    r = Requirement(text)
    return Req(normalize(r.name), str(r.specifier))


def _clauses(spec: str) -> list[tuple[str, str]]:
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        m = _CLAUSE_RE.match(part)
        if not m:
            raise ValueError(f"cannot parse version clause {part!r}")
        out.append((m.group(1), m.group(2)))
    return out


def _release(v: str) -> tuple[int, ...]:
    nums = [int(x) for x in re.findall(r"\d+", v.split("+")[0])[:4]]
    while len(nums) > 1 and nums[-1] == 0:  # 0.2 == 0.2.0
        nums.pop()
    return tuple(nums)


def spec_contains(spec: str, version: str) -> bool:
    """Whether ``version`` satisfies the specifier set ``spec`` (pre-releases admitted)."""
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:
        pass
    else:
        return SpecifierSet(spec).contains(version, prereleases=True)
    v = _release(version)
    ops: dict[str, Callable[[tuple[int, ...], tuple[int, ...]], bool]] = {
        "==": lambda a, b: a == b,
        "===": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<=": lambda a, b: a <= b,
        ">=": lambda a, b: a >= b,
        "<": lambda a, b: a < b,
        ">": lambda a, b: a > b,
    }
    for op, bound in _clauses(spec):
        if op == "~=":
            b = _release(bound + ".0") if bound.count(".") == 0 else _release(bound)
            prefix = tuple(int(x) for x in bound.split(".")[:-1])
            if not (v >= b and v[: len(prefix)] == prefix):
                return False
        elif not ops[op](v, _release(bound)):
            return False
    return True


# --------------------------------------------------------------------------------------------
# Recipes and papers, read from source text: nothing is imported, so the check runs anywhere.


@dataclass(frozen=True)
class RecipeDecl:
    name: str
    papers: tuple[int, ...]


_PAPERS_RE = re.compile(r"papers\s*=\s*[\(\[]([^\)\]]*)[\)\]]")
_NAME_RE = re.compile(r"@(?:\w+\.)*recipe\(\s*name\s*=\s*[\"']([^\"']+)[\"']")


def recipe_files(pkg: Package) -> list[Path]:
    if pkg.name in FIRST:  # core.recipes is the API (its docstring example is no recipe)
        return []
    files = [pkg.src / "recipes.py"] if (pkg.src / "recipes.py").is_file() else []
    if (pkg.src / "recipes").is_dir():
        files += sorted((pkg.src / "recipes").rglob("*.py"))
    return files


def _literal(node: ast.AST | None) -> Any:
    try:
        return ast.literal_eval(node) if node is not None else None
    except ValueError:
        return None


def parse_recipes(text: str) -> list[RecipeDecl]:
    """Every ``recipe(name=..., papers=...)`` call in ``text`` (decorator or direct call)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:  # half-written file: fall back to the regexes coverage.py uses
        names = _NAME_RE.findall(text)
        papers = tuple(
            sorted({int(n) for m in _PAPERS_RE.findall(text) for n in re.findall(r"\d+", m)})
        )
        return [RecipeDecl(n, papers) for n in names]
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if fname != "recipe":
            continue
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        name = _literal(kw.get("name"))
        if not isinstance(name, str):
            continue
        papers = _literal(kw.get("papers"))
        nums = tuple(int(p) for p in papers if isinstance(p, int)) if papers else ()
        out.append(RecipeDecl(name, nums))
    return sorted(out, key=lambda r: r.name)


def package_recipes(pkg: Package) -> list[RecipeDecl]:
    out: list[RecipeDecl] = []
    for f in recipe_files(pkg):
        out += parse_recipes(f.read_text(errors="replace"))
    return out


@dataclass(frozen=True)
class PaperRow:
    number: int
    title: str
    package: str
    modules: tuple[str, ...]
    claim: str = ""


def papers_path(root: Path, papers_file: Path | None = None) -> Path:
    """``papers_file`` or, by default, ``../shared/PAPERS.md`` beside the clone at ``root``.

    PAPERS.md lives beside the clone, not in it; every user of it degrades without it.
    """
    return papers_file if papers_file is not None else root.parent / "shared" / "PAPERS.md"


def paper_rows(papers_file: Path) -> list[PaperRow] | None:
    """Rows of PAPERS.md (``| n | title | pkg / module(s) | ...``); None when it is absent."""
    if not papers_file.is_file():
        return None
    rows = []
    for line in papers_file.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].isdigit():
            continue
        pkg, _, mods = cells[2].partition("/")
        modules = tuple(m.strip() for m in mods.strip().strip("()").split(",") if m.strip())
        claim = cells[3] if len(cells) > 3 else ""
        rows.append(PaperRow(int(cells[0]), cells[1], pkg.strip(), modules, claim))
    return rows


# --------------------------------------------------------------------------------------------
# The README package table


def table_rows(
    root: Path, papers_file: Path | None = None, versions: Mapping[str, str] | None = None
) -> list[list[str]]:
    """``[package, version, papers, recipes]`` cells, one row per package.

    ``versions`` overrides the version of some packages (by directory name): release.py renders
    the table for a bump it has not written yet.
    """
    versions = versions or {}
    rows = paper_rows(papers_path(root, papers_file)) or []
    out = []
    for pkg in load_packages(root):
        recipes = package_recipes(pkg)
        papers = {p for r in recipes for p in r.papers}
        papers |= {r.number for r in rows if r.package == pkg.name}
        out.append(
            [
                f"[{pkg.dist or pkg.name}](packages/{pkg.name})",
                versions.get(pkg.name, pkg.version or "?"),
                ", ".join(str(p) for p in sorted(papers)) or "—",
                ", ".join(f"`{r.name}`" for r in recipes) or "—",
            ]
        )
    return out


HEADER = ["package", "version", "papers", "recipes"]


def render_table(
    root: Path, papers_file: Path | None = None, versions: Mapping[str, str] | None = None
) -> str:
    lines = [
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
        *("| " + " | ".join(r) + " |" for r in table_rows(root, papers_file, versions)),
    ]
    return "\n".join(lines)


def replace_between(text: str, start: str, end: str, body: str) -> str:
    """``text`` with everything between the ``start`` and ``end`` marker lines set to ``body``."""
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"markers {start!r} ... {end!r} not found")
    return text[: i + len(start)] + "\n" + body.rstrip("\n") + "\n" + text[j:]


def readme_with_table(
    root: Path, papers_file: Path | None = None, versions: Mapping[str, str] | None = None
) -> str:
    """README.md's text with the package table regenerated."""
    text = (root / "README.md").read_text()
    table = render_table(root, papers_file, versions)
    return replace_between(text, TABLE_START, TABLE_END, table)


def _current_rows(text: str) -> list[list[str]]:
    i, j = text.find(TABLE_START), text.find(TABLE_END)
    body = text[i + len(TABLE_START) : j].strip().splitlines()[2:]  # skip header and rule
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in body]


def _nums(cell: str) -> set[int]:
    return {int(n) for n in re.findall(r"\d+", cell)}


def readme_problems(root: Path, papers_file: Path | None = None) -> list[str]:
    """Why README.md's package table is not what ``render_table`` would write (empty if current).

    Without PAPERS.md the papers column cannot be regenerated, so it is only required to list
    every paper the recipes cite.
    """
    readme = root / "README.md"
    if not readme.is_file():
        return ["README.md: missing"]
    text = readme.read_text()
    if TABLE_START not in text or TABLE_END not in text:
        return [f"README.md: no package table markers {TABLE_START} / {TABLE_END}"]
    have = {r[0]: r for r in _current_rows(text) if r}
    want = table_rows(root, papers_file)
    exact = paper_rows(papers_path(root, papers_file)) is not None
    problems = []
    for row in want:
        got = have.pop(row[0], None)
        label = re.sub(r"\[(.*?)\].*", r"\1", row[0])
        if got is None:
            problems.append(f"README.md: package table has no row for {label}; {TABLE_FIX}")
            continue
        for col, w, g in zip(HEADER, row, got + [""] * len(HEADER)):
            ok = w == g if (exact or col != "papers") else _nums(w) <= _nums(g)
            if not ok:
                problems.append(
                    f"README.md: package table is stale for {label}: {col} is {g!r}, "
                    f"expected {w!r}; {TABLE_FIX}"
                )
    problems += [f"README.md: package table lists unknown package {k}; {TABLE_FIX}" for k in have]
    if exact and not problems and readme_with_table(root, papers_file) != text:
        problems.append(f"README.md: package table is not formatted as generated; {TABLE_FIX}")
    return problems


# --------------------------------------------------------------------------------------------
# The checks


def _defines_all(init: Path) -> bool:
    tree = ast.parse(init.read_text())
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, (ast.AnnAssign, ast.AugAssign))
            else []
        )
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return True
    return False


def _changelog_versions(text: str) -> list[str]:
    return re.findall(r"^##\s+\[?([^\s\]]+)", text, flags=re.MULTILINE)


def package_problems(pkg: Package, siblings: dict[str, Package]) -> list[str]:
    """Problems of one package, each without the ``packages/<name>: `` prefix."""
    if pkg.error:
        return [f"pyproject.toml does not parse: {pkg.error}"]
    out = []
    want = expected_dist(pkg.name)
    if pkg.dist != want:
        out.append(f"dist name is {pkg.dist!r}, expected {want!r}")
    if "version" in pkg.project.get("dynamic", []) or pkg.version is None:
        out.append('no static version in [project] (versions are static: version = "X.Y.Z")')
    elif not re.fullmatch(r"\d+\.\d+\.\d+", pkg.version):
        out.append(f"version {pkg.version!r} is not X.Y.Z")

    changelog = pkg.path / "CHANGELOG.md"
    if not changelog.is_file():
        out.append("CHANGELOG.md is missing")
    else:
        sections = _changelog_versions(changelog.read_text())
        if pkg.version and pkg.version not in sections:
            out.append(f"CHANGELOG.md has no '## {pkg.version}' section for the current version")
        if "Unreleased" not in sections:
            out.append("CHANGELOG.md has no '## Unreleased' section (release.py fills it)")
    if not (pkg.path / "README.md").is_file():
        out.append("README.md is missing")

    ns_init = pkg.path / "src" / "torchloom" / "__init__.py"
    if ns_init.exists():
        out.append(
            "src/torchloom/__init__.py exists; torchloom is a PEP 420 namespace shared by "
            "every package, so it must not have one"
        )
    init = pkg.src / "__init__.py"
    rel = f"src/torchloom/{pkg.imp}"
    if not init.is_file():
        out.append(f"{rel}/__init__.py is missing")
    else:
        try:
            if not _defines_all(init):
                out.append(f"{rel}/__init__.py does not define __all__ (the public API)")
        except SyntaxError as e:
            out.append(f"{rel}/__init__.py does not parse: {e}")
    if not (pkg.src / "py.typed").is_file():
        out.append(f"{rel}/py.typed is missing (the package ships type hints)")

    # core's recipes.py is the recipe API itself; only method packages register recipes
    if pkg.name not in FIRST and recipe_files(pkg):
        eps = pkg.project.get("entry-points", {}).get(RECIPE_GROUP, {})
        target = f"torchloom.{pkg.imp}.recipes"
        if target not in [str(v).split(":")[0].strip() for v in eps.values()]:
            out.append(
                f'has recipes but no [project.entry-points."{RECIPE_GROUP}"] entry '
                f"pointing at {target}, so loom cannot find them"
            )

    for where, text in pkg.requirements():
        try:
            req = parse_requirement(text)
        except Exception as e:  # packaging raises InvalidRequirement, the fallback ValueError
            out.append(f"{where}: cannot parse {text!r}: {e}")
            continue
        if not req.name.startswith("torchloom"):
            continue
        sib = siblings.get(req.name)
        if sib is None:
            out.append(f"{where}: {text!r} names no workspace package")
        elif not req.specifier:
            out.append(f"{where}: {text!r} has no version range (use e.g. >=0.1,<0.2)")
        elif sib.version and not req.admits(sib.version):
            out.append(
                f"{where}: {text!r} does not admit {sib.dist} {sib.version} (its current version)"
            )
        elif not req.has_upper_bound():
            out.append(f"{where}: {text!r} has no upper bound (use e.g. >=0.1,<0.2)")
    return out


def _root_problems(root: Path, pkgs: list[Package]) -> list[str]:
    path = root / "pyproject.toml"
    if not path.is_file():
        return []
    try:
        project = tomllib.loads(path.read_text()).get("project", {})
    except tomllib.TOMLDecodeError as e:
        return [f"pyproject.toml does not parse: {e}"]
    if "dependencies" not in project:
        return []
    have = set()
    for text in project["dependencies"]:
        try:
            have.add(parse_requirement(text).name)
        except Exception:
            continue
    return [
        f"pyproject.toml: the workspace root does not depend on {p.dist}, so `uv run` "
        "does not install it"
        for p in pkgs
        if p.dist and normalize(p.dist) not in have
    ]


def check(root: Path = ROOT, papers_file: Path | None = None) -> list[str]:
    """Every problem in the workspace at ``root``, one line each."""
    pkgs = load_packages(root)
    if not pkgs:
        return [f"{root / 'packages'}: no packages found"]
    by_dist = {normalize(p.dist): p for p in pkgs if p.dist}
    problems = []
    seen: dict[str, str] = {}
    for p in pkgs:
        if p.dist and normalize(p.dist) in seen:
            problems.append(
                f"packages/{p.name}: dist name {p.dist!r} also used by "
                f"packages/{seen[normalize(p.dist)]}"
            )
        seen.setdefault(normalize(p.dist), p.name)
        problems += [f"packages/{p.name}: {msg}" for msg in package_problems(p, by_dist)]
    problems += _root_problems(root, pkgs)
    problems += readme_problems(root, papers_file)
    return problems


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=ROOT)
    ap.add_argument("--papers", type=Path, default=None, help="PAPERS.md (default ../shared)")
    ap.add_argument("--list-packages", action="store_true", help="print package names as JSON")
    a = ap.parse_args(list(argv) if argv is not None else None)
    root = a.root.resolve()
    if a.list_packages:
        print(json.dumps([d.name for d in package_dirs(root)]))
        return 0
    problems = check(root, a.papers)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"workspace ok: {len(package_dirs(root))} packages")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
