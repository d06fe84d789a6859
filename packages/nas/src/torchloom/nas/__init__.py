"""Differentiable architecture search: DARTS family, ProxylessNAS, FBNet on one supernet
framework."""

from importlib.metadata import version as _version

from torchloom.nas.genotype import (
    DiscreteCell,
    DiscreteNetwork,
    Genotype,
    build_from_supernet,
    derive_cell,
    derive_genotype,
    plot_cell,
)
from torchloom.nas.space import (
    PRIMITIVES,
    BinaryPathMixing,
    DilConv,
    FactorizedReduce,
    GumbelMixing,
    MaxWMixing,
    MixedEdge,
    MixingRule,
    Mixture,
    ReLUConvBN,
    SearchCell,
    SepConv,
    SharpSepConv,
    SoftmaxMixing,
    Zero,
    available_ops,
    cell_edges,
    make_op,
    max_w_coefficients,
    num_edges,
    register_op,
)
from torchloom.nas.supernet import Supernet

__version__ = _version("torchloom-nas")

__all__: list[str] = [
    "PRIMITIVES",
    "BinaryPathMixing",
    "DilConv",
    "DiscreteCell",
    "DiscreteNetwork",
    "FactorizedReduce",
    "Genotype",
    "GumbelMixing",
    "MaxWMixing",
    "MixedEdge",
    "MixingRule",
    "Mixture",
    "ReLUConvBN",
    "SearchCell",
    "SepConv",
    "SharpSepConv",
    "SoftmaxMixing",
    "Supernet",
    "Zero",
    "__version__",
    "available_ops",
    "build_from_supernet",
    "cell_edges",
    "derive_cell",
    "derive_genotype",
    "make_op",
    "max_w_coefficients",
    "num_edges",
    "plot_cell",
    "register_op",
]
