"""The ``loom`` command: list and run torchloom reproductions and benchmarks."""

from importlib.metadata import version as _version

from torchloom.cli.main import build_parser as build_parser, main as main, resolve as resolve

__version__ = _version("torchloom")

__all__ = ["__version__", "build_parser", "main", "resolve"]
