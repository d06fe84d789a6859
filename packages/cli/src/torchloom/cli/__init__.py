"""The loom command: list and run torchloom reproductions and benchmarks."""

from importlib.metadata import version as _version

__version__ = _version("torchloom")

__all__: list[str] = ["__version__"]
