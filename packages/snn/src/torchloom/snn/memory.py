"""Training-memory accounting (bytes saved for backward); lives in :mod:`torchloom.core.memory`
because other packages (gnn's forward learning) measure the same quantity."""

from torchloom.core.memory import (
    MemoryReport as MemoryReport,
    SavedTensorMeter as SavedTensorMeter,
    measure_memory as measure_memory,
)

__all__ = ["MemoryReport", "SavedTensorMeter", "measure_memory"]
