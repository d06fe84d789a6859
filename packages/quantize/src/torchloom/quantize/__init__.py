"""Binarisation (BiPer), quantized distillation and differentiable quantization."""

from importlib.metadata import version as _version

from torchloom.quantize.biper import (
    BiPerConv2d as BiPerConv2d,
    BiPerLinear as BiPerLinear,
    SignSTEConv2d as SignSTEConv2d,
    SignSTELinear as SignSTELinear,
    binarize_model as binarize_model,
    binary_activation as binary_activation,
    biper_regularizer as biper_regularizer,
    quantization_error as quantization_error,
    set_biper_stage as set_biper_stage,
    tau_schedule as tau_schedule,
)

__version__ = _version("torchloom-quantize")

__all__: list[str] = [
    "BiPerConv2d",
    "BiPerLinear",
    "SignSTEConv2d",
    "SignSTELinear",
    "__version__",
    "binarize_model",
    "binary_activation",
    "biper_regularizer",
    "quantization_error",
    "set_biper_stage",
    "tau_schedule",
]
