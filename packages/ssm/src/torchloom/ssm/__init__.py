"""State-space layers: LSSL, Sparse Modular Activation (SeqBoat), Pointer Networks."""

from importlib.metadata import version as _version

__version__ = _version("torchloom-ssm")

__all__: list[str] = ["__version__"]
