"""Hypernetworks: Magnitude Invariant Parametrizations and Neural Metamorphosis."""

from importlib.metadata import version as _version

from torchloom.hypernet.hypernetize import HyperTarget as HyperTarget, hypernetize as hypernetize
from torchloom.hypernet.mip import MIPHyperNetwork as MIPHyperNetwork, mip_encode as mip_encode
from torchloom.hypernet.neumeta import (
    path_length as path_length,
    permute_for_smoothness as permute_for_smoothness,
    shortest_hamiltonian_path as shortest_hamiltonian_path,
)

__version__ = _version("torchloom-hypernet")

__all__: list[str] = [
    "HyperTarget",
    "MIPHyperNetwork",
    "__version__",
    "hypernetize",
    "mip_encode",
    "path_length",
    "permute_for_smoothness",
    "shortest_hamiltonian_path",
]
