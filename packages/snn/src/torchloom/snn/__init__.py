"""Spiking neural networks trained with SLTT, SLTT-K and BPTT."""

from importlib.metadata import version as _version

from torchloom.snn.encoders import (
    direct_encode as direct_encode,
    latency_encode as latency_encode,
    poisson_encode as poisson_encode,
)
from torchloom.snn.memory import (
    MemoryReport as MemoryReport,
    SavedTensorMeter as SavedTensorMeter,
    measure_memory as measure_memory,
)
from torchloom.snn.models import (
    MultiStep as MultiStep,
    SpikingCNN as SpikingCNN,
    SpikingMLP as SpikingMLP,
    SpikingResBlock as SpikingResBlock,
)
from torchloom.snn.neurons import (
    IF as IF,
    LIF as LIF,
    PLIF as PLIF,
    StepModule as StepModule,
    detach_states as detach_states,
    lif_multistep as lif_multistep,
    lif_step as lif_step,
    reset_states as reset_states,
    set_step_mode as set_step_mode,
    step_mode as step_mode,
)
from torchloom.snn.plotting import raster_plot as raster_plot
from torchloom.snn.sltt import (
    StepOutput as StepOutput,
    bptt as bptt,
    predict as predict,
    sltt as sltt,
    sltt_k as sltt_k,
)

__version__ = _version("torchloom-snn")

__all__: list[str] = [
    "IF",
    "LIF",
    "PLIF",
    "MemoryReport",
    "MultiStep",
    "SavedTensorMeter",
    "SpikingCNN",
    "SpikingMLP",
    "SpikingResBlock",
    "StepModule",
    "StepOutput",
    "__version__",
    "bptt",
    "detach_states",
    "direct_encode",
    "latency_encode",
    "lif_multistep",
    "lif_step",
    "measure_memory",
    "poisson_encode",
    "predict",
    "raster_plot",
    "reset_states",
    "set_step_mode",
    "sltt",
    "sltt_k",
    "step_mode",
]
