"""The fused multi-step LIF as ``torch.library`` custom ops, with torch and Triton kernels.

``torchloom_snn::lif_fwd`` runs the whole recurrence and returns ``(spikes, v_T, u)``;
``torchloom_snn::lif_bwd`` is its hand-written BPTT backward. Both are registered with
``register_fake`` and linked with ``register_autograd`` so ``torch.compile`` traces through them.
``impl="torch"`` loops over time with a few fused ATen ops per step (any device); ``impl="triton"``
runs one Triton program per block of neurons that walks the time axis in registers (CUDA, or CPU
under ``TRITON_INTERPRET=1`` for the parity tests). Which one runs is the caller's explicit choice.

Backward, with ``g = g(u[t] - θ)`` the surrogate derivative and ``δv[t]`` the gradient reaching
``v[t]`` from step ``t+1`` (``δv[T-1]`` from the returned final state)::

    δu[t] = δs[t] g + δv[t] ∂v[t]/∂u[t]
        soft: ∂v/∂u = 1 - θ g          (1 with detach_reset)
        hard: ∂v/∂u = (1 - s) - u g    (1 - s with detach_reset)
    δx[t] = δu[t],   δv[t-1] = λ δu[t],   δλ = Σ_t <δu[t], v[t-1]>
"""

from __future__ import annotations

import math
from typing import Any

import torch

from torchloom.core.autograd import Surrogate

__all__ = ["fused_lif", "triton_available"]

_KIND_ID = {"rectangular": 0, "triangle": 1, "sigmoid": 2, "atan": 3, "fast_sigmoid": 4}

try:  # Triton ships with CUDA builds of torch; the torch kernel needs nothing else
    import triton
    import triton.language as tl

    _HAS_TRITON = True
except ImportError:  # pragma: no cover - depends on the install
    _HAS_TRITON = False


def triton_available() -> bool:
    """True when Triton can be imported (kernels run on CUDA, or on CPU with TRITON_INTERPRET=1)."""
    return _HAS_TRITON


# ----------------------------------------------------------------------------------------------
# torch implementation
# ----------------------------------------------------------------------------------------------


def _fwd_torch(
    x: torch.Tensor, v0: torch.Tensor, lam: torch.Tensor, threshold: float, soft: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # one fused op per stage (charge, fire, reset); charge and spikes written in place
    us = torch.empty_like(x)
    spikes = torch.empty_like(x)
    v = v0
    for t in range(x.shape[0]):
        u = torch.addcmul(x[t], v, lam, out=us[t])
        # comparison straight into a float buffer: much faster on CPU than bool masks
        s = torch.ge(u, threshold, out=spikes[t])
        v = torch.sub(u, s, alpha=threshold) if soft else torch.addcmul(u, u, s, value=-1)
    return spikes, v.clone() if v is v0 else v, us


def _bwd_torch(
    grad_s: torch.Tensor,
    grad_v: torch.Tensor,
    us: torch.Tensor,
    v0: torch.Tensor,
    lam: torch.Tensor,
    threshold: float,
    soft: bool,
    kind: str,
    param: float,
    detach_reset: bool,
    need_decay: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # step by step rather than on whole (T, B, *) arrays: each step's operands stay in cache,
    # about twice as fast on CPU as a handful of full-sequence passes
    th = threshold
    sur = Surrogate(kind, param)  # type: ignore[arg-type]
    gx = torch.empty_like(us)
    gv = grad_v
    g_decay = us.new_zeros(())
    for t in range(us.shape[0] - 1, -1, -1):
        u, gs = us[t], grad_s[t]
        g = sur.grad(u - th)
        if soft and detach_reset:  # δu = δs g + δv
            gu = torch.addcmul(gv, gs, g, out=gx[t])
        elif soft:  # δu = δv + g (δs - θ δv)
            gu = torch.addcmul(gv, torch.sub(gs, gv, alpha=th), g, out=gx[t])
        else:
            keep = torch.ge(u, th, out=torch.empty_like(u)).neg_().add_(1.0)  # 1 - s
            if detach_reset:  # δu = δs g + δv (1 - s)
                gu = torch.mul(gs, g, out=gx[t]).addcmul_(gv, keep)
            else:  # δu = g (δs - δv u) + δv (1 - s)
                gu = torch.mul(torch.addcmul(gs, gv, u, value=-1), g, out=gx[t])
                gu.addcmul_(gv, keep)
        if need_decay:
            if t > 0:
                up = us[t - 1]
                sp = torch.ge(up, th, out=torch.empty_like(up))
                v_prev = (
                    torch.sub(up, sp, alpha=th) if soft else torch.addcmul(up, up, sp, value=-1)
                )
            else:
                v_prev = v0
            g_decay = g_decay + torch.sum(gu * v_prev)
        gv = gu * lam
    return gx, gv, g_decay


# ----------------------------------------------------------------------------------------------
# Triton implementation: one program per BLOCK neurons, the time loop inside the kernel
# ----------------------------------------------------------------------------------------------

if _HAS_TRITON:

    @triton.jit
    def _surrogate_grad(h, param, KIND: tl.constexpr):
        if KIND == 0:
            g = tl.where(tl.abs(h) < param / 2, 1.0 / param, 0.0)
        elif KIND == 1:
            g = tl.maximum(param - tl.abs(h), 0.0) / (param * param)
        elif KIND == 2:
            sg = 1.0 / (1.0 + tl.exp(-param * h))
            g = param * sg * (1.0 - sg)
        elif KIND == 3:
            z = 1.5707963267948966 * param * h
            g = (param / 2) / (1.0 + z * z)
        else:
            d = param * tl.abs(h) + 1.0
            g = 1.0 / (d * d)
        return g

    @triton.jit
    def _lif_fwd_kernel(
        x_ptr, v0_ptr, lam_ptr, us_ptr, s_ptr, v_ptr, T, N, consts_ptr,
        SOFT: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        lam = tl.load(lam_ptr)
        # θ arrives as a tensor of the input dtype: a Python float would be lowered to fp32
        threshold = tl.load(consts_ptr)
        v = tl.load(v0_ptr + offs, mask=mask, other=0.0)
        for t in range(T):
            idx = t * N + offs
            u = lam * v + tl.load(x_ptr + idx, mask=mask, other=0.0)
            s = tl.where(u >= threshold, 1.0, 0.0).to(u.dtype)
            tl.store(us_ptr + idx, u, mask=mask)
            tl.store(s_ptr + idx, s, mask=mask)
            if SOFT:
                v = u - threshold * s
            else:
                v = u * (1.0 - s)
        tl.store(v_ptr + offs, v, mask=mask)

    @triton.jit
    def _lif_bwd_kernel(
        gs_ptr, gvT_ptr, us_ptr, v0_ptr, lam_ptr, gx_ptr, gv0_ptr, gdecay_ptr, T, N,
        consts_ptr, SOFT: tl.constexpr, DETACH: tl.constexpr, KIND: tl.constexpr,
        ACC64: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        pid = tl.program_id(0)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        lam = tl.load(lam_ptr)
        threshold = tl.load(consts_ptr)
        param = tl.load(consts_ptr + 1)
        gv = tl.load(gvT_ptr + offs, mask=mask, other=0.0)
        v0 = tl.load(v0_ptr + offs, mask=mask, other=0.0)
        if ACC64:
            acc = tl.zeros([BLOCK], dtype=tl.float64)
        else:
            acc = tl.zeros([BLOCK], dtype=tl.float32)
        for i in range(T):
            t = T - 1 - i
            idx = t * N + offs
            u = tl.load(us_ptr + idx, mask=mask, other=0.0)
            g = _surrogate_grad(u - threshold, param, KIND)
            s = tl.where(u >= threshold, 1.0, 0.0)
            if SOFT:
                if DETACH:
                    dv = 1.0
                else:
                    dv = 1.0 - threshold * g
            else:
                if DETACH:
                    dv = 1.0 - s
                else:
                    dv = (1.0 - s) - u * g
            gu = tl.load(gs_ptr + idx, mask=mask, other=0.0) * g + gv * dv
            tl.store(gx_ptr + idx, gu.to(u.dtype), mask=mask)
            # v[t-1] from u[t-1] (or v0 at t = 0) for the decay gradient
            # at t = 0 this reads u[0] (in bounds) and the tl.where below takes v0 instead
            up = tl.load(us_ptr + tl.maximum(t - 1, 0) * N + offs, mask=mask, other=0.0)
            sp = tl.where(up >= threshold, 1.0, 0.0)
            if SOFT:
                vp = up - threshold * sp
            else:
                vp = up * (1.0 - sp)
            vp = tl.where(t > 0, vp, v0)
            acc += (gu * vp).to(acc.dtype)
            gv = (lam * gu).to(u.dtype)
        tl.store(gv0_ptr + offs, gv, mask=mask)
        tl.store(gdecay_ptr + pid, tl.sum(acc, axis=0))


_BLOCK = 256


def _need_triton() -> None:
    if not _HAS_TRITON:
        raise RuntimeError("backend='triton' needs the triton package (it ships with CUDA torch)")


def _fwd_triton(
    x: torch.Tensor, v0: torch.Tensor, lam: torch.Tensor, threshold: float, soft: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _need_triton()
    xc = x.contiguous()
    n = v0.numel()
    us, spikes, v = torch.empty_like(xc), torch.empty_like(xc), torch.empty_like(v0)
    grid = (math.ceil(n / _BLOCK),)
    _lif_fwd_kernel[grid](
        xc, v0.contiguous(), lam.reshape(1), us, spikes, v, x.shape[0], n,
        torch.tensor([threshold], dtype=x.dtype, device=x.device), SOFT=soft, BLOCK=_BLOCK,
    )  # fmt: skip
    return spikes, v, us


def _bwd_triton(
    grad_s: torch.Tensor,
    grad_v: torch.Tensor,
    us: torch.Tensor,
    v0: torch.Tensor,
    lam: torch.Tensor,
    threshold: float,
    soft: bool,
    kind: str,
    param: float,
    detach_reset: bool,
    need_decay: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _need_triton()
    n = v0.numel()
    blocks = math.ceil(n / _BLOCK)
    gx, gv0 = torch.empty_like(us), torch.empty_like(v0)
    acc64 = us.dtype == torch.float64
    partial = torch.empty(blocks, dtype=torch.float64 if acc64 else torch.float32, device=us.device)
    _lif_bwd_kernel[(blocks,)](
        grad_s.contiguous(), grad_v.contiguous(), us, v0.contiguous(), lam.reshape(1), gx, gv0,
        partial, us.shape[0], n, torch.tensor([threshold, param], dtype=us.dtype, device=us.device),
        SOFT=soft, DETACH=detach_reset,
        KIND=_KIND_ID[kind], ACC64=acc64, BLOCK=_BLOCK,
    )  # fmt: skip
    return gx, gv0, partial.sum().to(us.dtype)


# ----------------------------------------------------------------------------------------------
# custom ops
# ----------------------------------------------------------------------------------------------


@torch.library.custom_op("torchloom_snn::lif_fwd", mutates_args=())
def _lif_fwd(
    x: torch.Tensor,
    v0: torch.Tensor,
    lam: torch.Tensor,
    threshold: float,
    soft: bool,
    kind: str,
    param: float,
    detach_reset: bool,
    impl: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # kind, param and detach_reset only shape the backward; they are part of the schema so that
    # register_autograd's context receives them
    if impl == "triton":
        return _fwd_triton(x, v0, lam, threshold, soft)
    return _fwd_torch(x, v0, lam, threshold, soft)


@_lif_fwd.register_fake
def _(
    x: torch.Tensor,
    v0: torch.Tensor,
    lam: torch.Tensor,
    threshold: float,
    soft: bool,
    kind: str,
    param: float,
    detach_reset: bool,
    impl: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.empty_like(x), torch.empty_like(v0), torch.empty_like(x)


@torch.library.custom_op("torchloom_snn::lif_bwd", mutates_args=())
def _lif_bwd(
    grad_s: torch.Tensor,
    grad_v: torch.Tensor,
    us: torch.Tensor,
    v0: torch.Tensor,
    lam: torch.Tensor,
    threshold: float,
    soft: bool,
    kind: str,
    param: float,
    detach_reset: bool,
    need_decay: bool,
    impl: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    fn = _bwd_triton if impl == "triton" else _bwd_torch
    return fn(grad_s, grad_v, us, v0, lam, threshold, soft, kind, param, detach_reset, need_decay)


@_lif_bwd.register_fake
def _(
    grad_s: torch.Tensor,
    grad_v: torch.Tensor,
    us: torch.Tensor,
    v0: torch.Tensor,
    lam: torch.Tensor,
    threshold: float,
    soft: bool,
    kind: str,
    param: float,
    detach_reset: bool,
    need_decay: bool,
    impl: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.empty_like(us), torch.empty_like(v0), us.new_empty(())


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    _x, v0, lam, threshold, soft, kind, param, detach_reset, impl = inputs
    ctx.save_for_backward(output[2], v0, lam)
    ctx.threshold, ctx.soft, ctx.impl = threshold, soft, impl
    ctx.kind, ctx.param, ctx.detach_reset = kind, param, detach_reset


def _backward(
    ctx: Any, grad_s: torch.Tensor | None, grad_v: torch.Tensor | None, grad_us: Any
) -> tuple[Any, ...]:
    us, v0, lam = ctx.saved_tensors
    gs = torch.zeros_like(us) if grad_s is None else grad_s
    gv = torch.zeros_like(v0) if grad_v is None else grad_v
    need_decay = bool(getattr(ctx, "needs_input_grad", (True,) * 3)[2])
    gx, gv0, g_decay = _lif_bwd(
        gs, gv, us, v0, lam, ctx.threshold, ctx.soft, ctx.kind, ctx.param, ctx.detach_reset,
        need_decay, ctx.impl,
    )  # fmt: skip
    return gx, gv0, g_decay.reshape(lam.shape), None, None, None, None, None, None


_lif_fwd.register_autograd(_backward, setup_context=_setup_context)


def fused_lif(
    x: torch.Tensor,
    v0: torch.Tensor,
    lam: torch.Tensor,
    threshold: float,
    soft: bool,
    surrogate: Surrogate,
    detach_reset: bool,
    impl: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes ``(T, B, *)`` and final potential ``(B, *)`` with the hand-written backward."""
    spikes, v, _ = _lif_fwd(
        x, v0, lam, threshold, soft, surrogate.kind, surrogate.param, detach_reset, impl
    )
    return spikes, v
