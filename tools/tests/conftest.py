"""Fixtures for the tools' tests: the tools loaded from their files, and a small workspace."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

TOOLS = Path(__file__).resolve().parent.parent


def load_tool(name: str) -> ModuleType:
    """Import ``tools/<name>.py`` (tools/ is not a package) under its own module name.

    Registered in ``sys.modules`` so that ``import check_workspace`` inside release.py finds it.
    """
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def cw() -> ModuleType:
    return load_tool("check_workspace")


@pytest.fixture(scope="session")
def release(cw: ModuleType) -> ModuleType:
    return load_tool("release")


@pytest.fixture(scope="session")
def readme_table(cw: ModuleType) -> ModuleType:
    return load_tool("readme_table")


@pytest.fixture(scope="session")
def gen_docs(cw: ModuleType) -> ModuleType:
    return load_tool("gen_docs")


@pytest.fixture(scope="session")
def new_package() -> ModuleType:
    return load_tool("new_package")


ROOT_PYPROJECT = """[project]
name = "ws"
version = "0"
requires-python = ">=3.10"
dependencies = ["torchloom-core", "torchloom[all]", "torchloom-snn"]
"""

README = """# ws

<!-- packages:start -->
<!-- packages:end -->
"""


@pytest.fixture
def workspace(tmp_path: Path, cw: ModuleType, new_package: ModuleType) -> Path:
    """A clean three-package workspace (core, cli with an [all] extra, snn) at tmp_path/ws.

    No PAPERS.md beside it, so nothing from the real ../shared leaks in.
    """
    root = tmp_path / "ws"
    root.mkdir()
    new_package.create("core", "Core.", [], root=root)
    new_package.create("cli", "The loom command.", [], root=root)
    new_package.create("snn", "Spiking networks.", [], root=root)
    cli = root / "packages" / "cli" / "pyproject.toml"
    extra = '[project.optional-dependencies]\nall = ["torchloom-snn>=0.1,<0.2"]\n\n'
    cli.write_text(cli.read_text().replace("\n[build-system]", "\n" + extra + "[build-system]"))
    (root / "pyproject.toml").write_text(ROOT_PYPROJECT)
    (root / "README.md").write_text(README)
    (root / "README.md").write_text(cw.readme_with_table(root))
    return root
