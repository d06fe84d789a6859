"""Hypernetworks: Magnitude Invariant Parametrizations and Neural Metamorphosis."""

from importlib.metadata import version as _version

from torchloom.hypernet.hypernetize import HyperTarget as HyperTarget, hypernetize as hypernetize
from torchloom.hypernet.mip import MIPHyperNetwork as MIPHyperNetwork, mip_encode as mip_encode

__version__ = _version("torchloom-hypernet")

__all__: list[str] = [
    "HyperTarget",
    "MIPHyperNetwork",
    "__version__",
    "hypernetize",
    "mip_encode",
]
