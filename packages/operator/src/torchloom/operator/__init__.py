"""Neural operators: MgNO, DGNO/MultiONet, PROSE, Deep Conjugate Direction Method."""

from importlib.metadata import version as _version

__version__ = _version("torchloom-operator")

__all__: list[str] = ["__version__"]
