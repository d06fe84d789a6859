"""Hypernetworks: Magnitude Invariant Parametrizations and Neural Metamorphosis."""

from importlib.metadata import version as _version

from torchloom.hypernet.hypernetize import HyperTarget as HyperTarget, hypernetize as hypernetize
from torchloom.hypernet.mip import MIPHyperNetwork as MIPHyperNetwork, mip_encode as mip_encode
from torchloom.hypernet.neumeta import (
    NeuMeta as NeuMeta,
    fit_neumeta as fit_neumeta,
    path_length as path_length,
    permute_for_smoothness as permute_for_smoothness,
    shortest_hamiltonian_path as shortest_hamiltonian_path,
    weighted_reconstruction_loss as weighted_reconstruction_loss,
)

__version__ = _version("torchloom-hypernet")

__all__: list[str] = [
    "HyperTarget",
    "MIPHyperNetwork",
    "NeuMeta",
    "__version__",
    "fit_neumeta",
    "hypernetize",
    "mip_encode",
    "path_length",
    "permute_for_smoothness",
    "shortest_hamiltonian_path",
    "weighted_reconstruction_loss",
]
