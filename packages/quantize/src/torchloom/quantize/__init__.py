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
from torchloom.quantize.distill import (
    DifferentiableQuantization as DifferentiableQuantization,
    DistillationLoss as DistillationLoss,
    LearnedPointsQuantizer as LearnedPointsQuantizer,
    QuantizedDistillation as QuantizedDistillation,
    distillation_loss as distillation_loss,
)
from torchloom.quantize.packed import (
    PackedBinaryLinear as PackedBinaryLinear,
    pack_signs as pack_signs,
    xnor_popcount_matmul as xnor_popcount_matmul,
)
from torchloom.quantize.uniform import (
    UniformQuantizer as UniformQuantizer,
    fake_quantize_model as fake_quantize_model,
    fake_uniform_quantize as fake_uniform_quantize,
    freeze_quantization as freeze_quantization,
    model_size_bits as model_size_bits,
    nonuniform_quantize as nonuniform_quantize,
    quantized_size_bits as quantized_size_bits,
    scale_buckets as scale_buckets,
    uniform_quantize as uniform_quantize,
    unscale_buckets as unscale_buckets,
)

__version__ = _version("torchloom-quantize")

__all__: list[str] = [
    "BiPerConv2d",
    "BiPerLinear",
    "DifferentiableQuantization",
    "DistillationLoss",
    "LearnedPointsQuantizer",
    "PackedBinaryLinear",
    "QuantizedDistillation",
    "SignSTEConv2d",
    "SignSTELinear",
    "UniformQuantizer",
    "__version__",
    "binarize_model",
    "binary_activation",
    "biper_regularizer",
    "distillation_loss",
    "fake_quantize_model",
    "fake_uniform_quantize",
    "freeze_quantization",
    "model_size_bits",
    "nonuniform_quantize",
    "pack_signs",
    "quantization_error",
    "quantized_size_bits",
    "scale_buckets",
    "set_biper_stage",
    "tau_schedule",
    "uniform_quantize",
    "unscale_buckets",
    "xnor_popcount_matmul",
]
