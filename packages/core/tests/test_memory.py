"""SavedTensorMeter against byte counts known from what autograd saves."""

from __future__ import annotations

import torch

from torchloom.core.memory import SavedTensorMeter, measure_memory


def test_counts_saved_tensor_and_releases_it_after_backward():
    x = torch.randn(100, 10, requires_grad=True)
    with SavedTensorMeter() as meter:
        y = x.exp()  # exp saves its result: 1000 float32 = 4000 bytes
        assert meter.current_bytes == 4000
        y.sum().backward()
        assert meter.current_bytes == 0
    assert meter.peak_bytes == 4000


def test_same_tensor_saved_twice_counts_once_and_graph_drop_releases():
    x = torch.randn(50, requires_grad=True)
    with SavedTensorMeter() as meter:
        y = x.exp()
        z = (y * y).sum()  # mul saves y twice; y is also saved by exp
        assert meter.packed == 3
        assert meter.current_bytes == 200
        del y, z  # dropping the graph frees what it saved
    assert meter.current_bytes == 0
    assert meter.peak_bytes == 200


def test_views_count_their_span_and_exclude_covers_views():
    w = torch.randn(8, 8, requires_grad=True)
    seq = torch.randn(10, 4, 8)
    with SavedTensorMeter(exclude=[w]) as meter:
        out = seq[3] @ w  # saves seq[3] (a view: 4*8 floats) and w (excluded)
    assert meter.peak_bytes == 4 * 8 * 4
    del out
    with SavedTensorMeter(exclude=[w, seq]) as meter2:
        out2 = seq[3] @ w
    del out2
    assert meter2.peak_bytes == 0


def test_measure_memory_grows_with_depth():
    x = torch.randn(64, requires_grad=True)

    def chain(n):
        def run():
            h = x
            for _ in range(n):
                h = h.exp().tanh()
            h.sum().backward()

        return run

    a = measure_memory(chain(2)).saved_peak_bytes
    b = measure_memory(chain(4)).saved_peak_bytes
    assert b == 2 * a
    assert measure_memory(chain(2)).cuda_peak_bytes is None
