"""Physics-informed networks: FlamePINN-1D, hard-constraint mixture-of-experts, neural constitutive
laws."""

from importlib.metadata import version as _version

__version__ = _version("torchloom-pinn")

__all__: list[str] = ["__version__"]
