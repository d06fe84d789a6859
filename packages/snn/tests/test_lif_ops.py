"""The fused LIF custom ops: registration (opcheck), and Triton kernels against the torch ones
(under TRITON_INTERPRET=1 on CPU, natively on CUDA)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from torchloom.core.autograd import atan, rectangular
from torchloom.snn import _lif_ops
from torchloom.snn.neurons import lif_multistep


@pytest.mark.parametrize("soft", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_opcheck_forward_and_backward_registration(soft):
    x = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    v0 = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    lam = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(_lif_ops._lif_fwd, (x, v0, lam, 0.9, soft, "atan", 2.0, False, "torch"))


def test_fused_matches_loop_with_default_arguments(device):
    x = (torch.randn(6, 4, 3, device=device) * 2).requires_grad_()
    s_f, v_f = lif_multistep(x, surrogate=rectangular(1.0), backend="fused")
    s_l, v_l = lif_multistep(x, surrogate=rectangular(1.0), backend="loop")
    torch.testing.assert_close(s_f, s_l)
    torch.testing.assert_close(v_f, v_l)
    g_f = torch.autograd.grad(s_f.sum() + v_f.sum(), x)[0]
    g_l = torch.autograd.grad(s_l.sum() + v_l.sum(), x)[0]
    torch.testing.assert_close(g_f, g_l)


_PARITY = textwrap.dedent(
    """
    import torch
    from torchloom.core.autograd import atan, fast_sigmoid, rectangular, sigmoid, triangle
    from torchloom.snn import lif_multistep

    dev = "{device}"
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        for sg in (rectangular(1.0), triangle(1.0), sigmoid(4.0), atan(2.0), fast_sigmoid(5.0)):
            for reset in ("soft", "hard"):
                for dr in (False, True):
                    x = torch.randn(5, 3, 70, dtype=dtype, device=dev) * 1.5
                    v0 = torch.randn(3, 70, dtype=dtype, device=dev)
                    lam = torch.tensor(0.7, dtype=dtype, device=dev)
                    w, wv = torch.randn_like(x), torch.randn_like(v0)
                    res = []
                    for be in ("fused", "triton"):
                        leaves = [t.clone().requires_grad_() for t in (x, v0, lam)]
                        s, v = lif_multistep(
                            leaves[0], leaves[1], decay=leaves[2], threshold=0.8, reset=reset,
                            surrogate=sg, detach_reset=dr, backend=be,
                        )
                        g = torch.autograd.grad((s * w).sum() + (v * wv).sum(), leaves)
                        res.append((s, v, *g))
                    for a, b in zip(*res):
                        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    print("parity ok")
    """
)


@pytest.mark.slow  # a fresh interpreter plus Triton's interpreter on CPU: ~45 s
def test_triton_matches_torch_kernel(device):
    pytest.importorskip("triton")
    env = dict(os.environ)
    if device.type == "cpu":
        env["TRITON_INTERPRET"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", _PARITY.format(device=device.type)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "parity ok" in proc.stdout


def test_triton_backend_never_falls_back_silently(monkeypatch):
    monkeypatch.setattr(_lif_ops, "_HAS_TRITON", False)
    with pytest.raises(RuntimeError, match="triton"):
        lif_multistep(torch.randn(3, 2, 4), surrogate=atan(2.0), backend="triton")


@pytest.mark.slow  # importing and running dynamo/AOTAutograd takes about a minute on CPU
def test_torch_compile_traces_the_custom_op_in_one_graph():
    def f(x, lam):
        s, v = lif_multistep(x, decay=lam, surrogate=atan(2.0), backend="fused")
        return (s * torch.arange(5.0).view(5, 1, 1)).sum() + v.sum()

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    x = (torch.randn(5, 3, 4) * 2).requires_grad_()
    lam = torch.tensor(0.6, requires_grad=True)
    got = torch.autograd.grad(compiled(x, lam), (x, lam))
    want = torch.autograd.grad(f(x, lam), (x, lam))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
