#!/usr/bin/env python3
"""Scaffold a torchloom package with the shape described in DESIGN.md.

    python tools/new_package.py NAME [--description TEXT] [--dep SPEC ...] [--root DIR]

creates ``packages/NAME`` holding ``pyproject.toml`` (dist ``torchloom-NAME``, or ``torchloom``
for ``cli``), ``README.md``, ``CHANGELOG.md``, ``src/torchloom/<import>/{__init__,recipes}.py``,
``py.typed``, ``tests/`` (with the public-API smoke test) and ``benchmarks/``. There is no
``src/torchloom/__init__.py``: ``torchloom`` is a PEP 420 namespace shared by every package.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE_RANGE = "torchloom-core>=0.1,<0.2"
NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def dist_name(name: str) -> str:
    """Distribution name of package ``name`` (the CLI is plain ``torchloom``)."""
    return "torchloom" if name == "cli" else f"torchloom-{name}"


def import_name(name: str) -> str:
    return name.replace("-", "_")


def _pyproject(name: str, description: str, deps: list[str]) -> str:
    imp = import_name(name)
    all_deps = ([] if name == "core" else [CORE_RANGE]) + deps
    if name == "core" and not any(d.startswith("torch") for d in deps):
        all_deps = ["torch>=2.4", *all_deps]
    dep_lines = "".join(f'    "{d}",\n' for d in all_deps)
    entry = (
        ""
        if name in ("core", "cli")
        else (f'\n[project.entry-points."torchloom.recipes"]\n{imp} = "torchloom.{imp}.recipes"\n')
    )
    return f"""[project]
name = "{dist_name(name)}"
version = "0.1.0"
description = "{description}"
readme = "README.md"
requires-python = ">=3.10"
license = "MIT"
dependencies = [
{dep_lines}]
{entry}
[build-system]
requires = ["hatchling>=1.25"]
build-backend = "hatchling.build"

[tool.hatch.build.targets.wheel]
packages = ["src/torchloom"]
"""


def _readme(name: str, description: str) -> str:
    imp = import_name(name)
    return f"""# {dist_name(name)}

{description}

```
pip install {dist_name(name)}
```

| paper | module | recipe |
|---|---|---|

```python
import torchloom.{imp}
```
"""


def _init(name: str, description: str) -> str:
    # wrapped so the docstring stays within the 100-column line limit
    doc = textwrap.fill(description, 90)
    return f'''"""{doc}"""

from importlib.metadata import version as _version

__version__ = _version("{dist_name(name)}")

__all__: list[str] = ["__version__"]
'''


def _smoke(name: str) -> str:
    imp = import_name(name)
    return f'''"""Public API of ``torchloom.{imp}``: every name in ``__all__``, ``__version__``."""

import importlib
from importlib.metadata import version

import pytest

MOD = importlib.import_module("torchloom.{imp}")


def test_version_matches_metadata() -> None:
    assert MOD.__version__ == version("{dist_name(name)}")


@pytest.mark.parametrize("name", MOD.__all__)
def test_public_name_exists(name: str) -> None:
    assert getattr(MOD, name) is not None
'''


RECIPES = '''"""Reproductions of this package's papers, registered under ``torchloom.recipes``."""

from __future__ import annotations

__all__: list[str] = []
'''


def create(name: str, description: str, deps: list[str], root: Path = ROOT) -> Path:
    """Create ``root/packages/name``; refuse to overwrite an existing package."""
    if not NAME_RE.match(name):
        raise ValueError(f"name must be lowercase words joined by '-', got {name!r}")
    pkg = root / "packages" / name
    if pkg.exists():
        raise FileExistsError(f"{pkg} already exists")
    imp = import_name(name)
    src = pkg / "src" / "torchloom" / imp
    src.mkdir(parents=True)
    (pkg / "tests").mkdir()
    (pkg / "benchmarks").mkdir()
    (pkg / "pyproject.toml").write_text(_pyproject(name, description, deps))
    (pkg / "README.md").write_text(_readme(name, description))
    (pkg / "CHANGELOG.md").write_text(
        f"# Changelog — {dist_name(name)}\n\n## Unreleased\n\n## 0.1.0\n\n- First version.\n"
    )
    (src / "__init__.py").write_text(_init(name, description))
    (src / "py.typed").write_text("")
    if name not in ("core", "cli"):
        (src / "recipes.py").write_text(RECIPES)
    (pkg / "tests" / "test_public_api.py").write_text(_smoke(name))
    (pkg / "benchmarks" / ".gitkeep").write_text("")
    return pkg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name")
    p.add_argument("--description", default="A torchloom package.")
    p.add_argument("--dep", action="append", default=[], help="extra dependency spec")
    p.add_argument("--root", type=Path, default=ROOT)
    a = p.parse_args(argv)
    try:
        pkg = create(a.name, a.description, a.dep, a.root)
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"created {pkg}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
