"""Graph networks on PyTorch Geometric: ForwardGNN, STABLE, LPGNAS, Neural Snowflakes."""

from importlib.metadata import version as _version

__version__ = _version("torchloom-gnn")

__all__: list[str] = ["__version__"]
