"""Raster plot draws one mark per spike."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from torchloom.snn.plotting import raster_plot


def test_one_mark_per_spike():
    s = (torch.rand(10, 2, 7) > 0.6).float()
    ax = raster_plot(s, title="r")
    assert ax.collections[0].get_offsets().shape[0] == int(s[:, 0].sum())
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="spikes"):
        raster_plot(torch.ones(3))
