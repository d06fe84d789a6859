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

# --- hardware/memory-aware search: latency tables, chain space, ProxylessNAS --------------
from torchloom.nas.blocks import (
    PROXYLESS_OPS,
    ChainNet,
    ChainSupernet,
    MBConv,
    MixedLayer,
    build_chain,
    mbconv_ops,
)
from torchloom.nas.latency import (
    LatencyTable,
    arch_latency_matrices,
    expected_latency,
    measure_latency_table,
)
from torchloom.nas.proxyless import (
    PathSample,
    ProxylessMixing,
    ProxylessNAS,
    latency_loss,
    mix_ops,
    rescale_two_path_,
)

__all__ += [
    "PROXYLESS_OPS",
    "ChainNet",
    "ChainSupernet",
    "LatencyTable",
    "MBConv",
    "MixedLayer",
    "PathSample",
    "ProxylessMixing",
    "ProxylessNAS",
    "arch_latency_matrices",
    "build_chain",
    "expected_latency",
    "latency_loss",
    "mbconv_ops",
    "measure_latency_table",
    "mix_ops",
    "rescale_two_path_",
]
