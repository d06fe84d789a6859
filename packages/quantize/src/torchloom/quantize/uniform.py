"""Bucketed uniform and non-uniform quantisation (Polino, Pascanu & Alistarh, ICLR 2018, §2).

A tensor is flattened (row-major) and cut into consecutive buckets of ``d`` entries. Each
bucket ``v`` is scaled to ``[0, 1]`` by ``sc(v) = (v − β)/α`` with ``β = min v`` and
``α = max v − min v``, quantised there, and mapped back with ``sc⁻¹(q) = α q + β``.

* Uniform: ``s = 2^bits`` levels ``{0, 1/(s−1), …, 1}``; deterministic rounding to the nearest
  level or stochastic rounding ``Q(x) = (⌊x(s−1)⌋ + ξ)/(s−1)`` with
  ``ξ ~ Bernoulli(x(s−1) − ⌊x(s−1)⌋)``, which is unbiased: ``E[Q(x)] = x``.
* Non-uniform: given sorted points ``p ⊂ [0, 1]``, each scaled entry goes to its nearest point
  (or stochastically to one of its two neighbours, unbiased inside ``[p_0, p_last]``). The map
  ``α p_j + β`` is differentiable in ``p``: ``∂Q(v)_i/∂p_j = α`` where entry ``i`` is assigned to
  ``p_j`` — the gradient of differentiable quantization (paper §2.2).

A bucket of equal values has ``α = 0`` and is returned unchanged. When ``d`` does not divide the
number of entries, ``remainder="partial"`` makes the last bucket shorter and
``remainder="error"`` raises.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.utils import parametrize

from torchloom.core import rng
from torchloom.core.checks import check_finite, check_floating, check_ndim

__all__ = [
    "UniformQuantizer",
    "fake_quantize_model",
    "fake_uniform_quantize",
    "freeze_quantization",
    "model_size_bits",
    "nonuniform_quantize",
    "quantized_size_bits",
    "scale_buckets",
    "uniform_quantize",
    "unscale_buckets",
]

Remainder = Literal["partial", "error"]


def _check_bits(bits: object) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise ValueError(f"bits must be an int >= 1, got {bits!r}")
    return bits


def _check_bucket(bucket_size: object, numel: int, remainder: str) -> int:
    """The effective bucket size (``None`` = one bucket for the whole tensor)."""
    if remainder not in ("partial", "error"):
        raise ValueError(f"remainder must be 'partial' or 'error', got {remainder!r}")
    if bucket_size is None:
        return max(numel, 1)
    if isinstance(bucket_size, bool) or not isinstance(bucket_size, int) or bucket_size < 1:
        raise ValueError(f"bucket_size must be None or an int >= 1, got {bucket_size!r}")
    if remainder == "error" and numel % bucket_size != 0:
        raise ValueError(
            f"bucket_size={bucket_size} does not divide the {numel} entries and "
            "remainder='error'; use remainder='partial' for a shorter last bucket"
        )
    return bucket_size


def scale_buckets(
    x: torch.Tensor, bucket_size: int | None = None, remainder: Remainder = "partial"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scale each bucket of ``x`` to ``[0, 1]``.

    Returns ``(v, lo, span)``: ``v`` has the shape of ``x``; ``lo`` (the bucket minima ``β``) and
    ``span`` (``α = max − min``) have shape ``(n_buckets,)``. Constant buckets get ``v = 0``.
    """
    check_floating(x, "x")
    check_finite(x, "x")
    n = x.numel()
    d = _check_bucket(bucket_size, n, remainder)
    if n == 0:
        raise ValueError("x must have at least one entry")
    flat = x.reshape(-1)
    nb = math.ceil(n / d)
    pad = nb * d - n
    # padding with the last entry (it belongs to the last bucket) leaves that bucket's min/max
    rows = torch.cat([flat, flat[-1:].expand(pad)]).reshape(nb, d)
    lo = rows.amin(1)
    span = rows.amax(1) - lo
    safe = torch.where(span > 0, span, torch.ones_like(span))
    v = ((rows - lo[:, None]) / safe[:, None]).clamp(0.0, 1.0)
    v = torch.where(span[:, None] > 0, v, torch.zeros_like(v))
    return v.reshape(-1)[:n].reshape(x.shape), lo, span


def unscale_buckets(
    v: torch.Tensor,
    lo: torch.Tensor,
    span: torch.Tensor,
    bucket_size: int | None = None,
) -> torch.Tensor:
    """Inverse of :func:`scale_buckets`: ``α v + β`` bucket by bucket (shape of ``v``)."""
    check_floating(v, "v")
    n = v.numel()
    d = _check_bucket(bucket_size, n, "partial")
    nb = math.ceil(n / d)
    check_ndim(lo, "lo", 1)
    if lo.shape != (nb,) or span.shape != (nb,):
        raise ValueError(
            f"lo and span must have shape ({nb},) for {n} entries in buckets of {d}, got "
            f"{tuple(lo.shape)} and {tuple(span.shape)}"
        )
    idx = torch.arange(n, device=v.device) // d
    flat = v.reshape(-1) * span[idx] + lo[idx]
    return flat.reshape(v.shape)


def _round_levels(
    v: torch.Tensor, steps: int, stochastic: bool, generator: torch.Generator | None
) -> torch.Tensor:
    y = v * steps
    if stochastic:
        u = rng.rand(y.shape, generator=generator, device=y.device, dtype=y.dtype)
        # floor(y + U) rounds up with probability frac(y): the Bernoulli ξ of the paper
        q = torch.floor(y + u)
    else:
        q = torch.round(y)
    return q.clamp(0, steps) / steps


def uniform_quantize(
    x: torch.Tensor,
    bits: int,
    bucket_size: int | None = None,
    *,
    stochastic: bool = False,
    generator: torch.Generator | None = None,
    remainder: Remainder = "partial",
) -> torch.Tensor:
    """Bucketed uniform quantisation of ``x`` to ``2^bits`` levels per bucket (shape of ``x``).

    Deterministic rounding errs by at most ``α/(2(2^bits − 1))`` per entry, stochastic rounding
    by less than ``α/(2^bits − 1)`` and is unbiased. No gradient (see
    :func:`fake_uniform_quantize`).
    """
    _check_bits(bits)
    with torch.no_grad():
        v, lo, span = scale_buckets(x, bucket_size, remainder)
        q = _round_levels(v, 2**bits - 1, stochastic, generator)
        return unscale_buckets(q, lo, span, bucket_size)


def fake_uniform_quantize(
    x: torch.Tensor,
    bits: int,
    bucket_size: int | None = None,
    *,
    stochastic: bool = False,
    generator: torch.Generator | None = None,
    remainder: Remainder = "partial",
) -> torch.Tensor:
    """:func:`uniform_quantize` forward with the straight-through gradient ``∂L/∂x = ∂L/∂Q(x)``
    (the shadow-weight update of quantized training)."""
    q = uniform_quantize(
        x, bits, bucket_size, stochastic=stochastic, generator=generator, remainder=remainder
    )
    # q + (x − x) is exactly q in the forward (x + (q − x) is not, in floating point)
    return q + (x - x.detach())


def nonuniform_quantize(
    x: torch.Tensor,
    points: torch.Tensor,
    bucket_size: int | None = None,
    *,
    stochastic: bool = False,
    generator: torch.Generator | None = None,
    remainder: Remainder = "partial",
) -> torch.Tensor:
    """Quantise each scaled bucket of ``x`` to the points ``p`` (``(s,)``, in ``[0, 1]``).

    Returns ``α p_{j(i)} + β`` with the shape of ``x``. The result is differentiable with respect
    to ``points`` (``∂/∂p_j = α`` summed over the entries assigned to ``p_j``) and carries a
    straight-through gradient to ``x``. Points need not be sorted.
    """
    check_floating(points, "points")
    check_ndim(points, "points", 1, "(s,)")
    check_finite(points, "points")
    if points.numel() < 1:
        raise ValueError("points must hold at least one point")
    if points.device != x.device:
        raise ValueError(f"points is on {points.device} but x is on {x.device}")
    with torch.no_grad():
        v, lo, span = scale_buckets(x, bucket_size, remainder)
        order = torch.argsort(points.detach())
        p = points.detach()[order].to(v.dtype)
        flat = v.reshape(-1)
        # index of the first point strictly above v, so p[hi - 1] <= v < p[hi]
        hi = torch.searchsorted(p, flat, right=True).clamp(1, p.numel() - 1)
        lo_i = hi - 1
        if p.numel() == 1:
            choice = torch.zeros_like(flat, dtype=torch.long)
        else:
            below, above = p[lo_i], p[hi]
            gap = (above - below).clamp_min(torch.finfo(v.dtype).tiny)
            frac = ((flat - below) / gap).clamp(0.0, 1.0)
            if stochastic:
                u = rng.rand(frac.shape, generator=generator, device=frac.device, dtype=v.dtype)
                up = u < frac
            else:
                up = frac > 0.5
            choice = torch.where(up, hi, lo_i)
        assigned = order[choice]
        d = _check_bucket(bucket_size, x.numel(), remainder)
        bucket = torch.arange(x.numel(), device=x.device) // d
    q = points.to(x.dtype)[assigned] * span[bucket] + lo[bucket]
    return q.reshape(x.shape) + (x - x.detach())


class UniformQuantizer(nn.Module):
    """Fake-quantisation module: bucketed uniform quantisation with a straight-through gradient.

    Used as a parametrisation (:func:`fake_quantize_model`): the parametrised tensor keeps the
    full-precision shadow weights, the forward sees their quantisation. Stochastic rounding is
    used in training mode only; eval mode rounds to the nearest level.

    Shapes: any ``(*)`` in and out.
    """

    def __init__(
        self,
        bits: int,
        bucket_size: int | None = 256,
        *,
        stochastic: bool = False,
        remainder: Remainder = "partial",
    ) -> None:
        super().__init__()
        self.bits = _check_bits(bits)
        _check_bucket(bucket_size, 0 if bucket_size is None else bucket_size, remainder)
        self.bucket_size = bucket_size
        self.stochastic = stochastic
        self.remainder: Remainder = remainder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fake_uniform_quantize(
            x,
            self.bits,
            self.bucket_size,
            stochastic=self.stochastic and self.training,
            remainder=self.remainder,
        )

    def storage_bits(self, numel: int, scale_bits: int = 32) -> int:
        """Bits to store ``numel`` quantised entries: codes plus ``(α, β)`` per bucket."""
        return quantized_size_bits(numel, self.bits, self.bucket_size, scale_bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, bucket_size={self.bucket_size}, stochastic={self.stochastic}"


def quantized_size_bits(
    numel: int, bits: int, bucket_size: int | None = None, scale_bits: int = 32, n_points: int = 0
) -> int:
    """Storage of a bucketed quantised tensor: ``numel·bits + n_buckets·2·scale_bits`` plus
    ``n_points·scale_bits`` for a non-uniform codebook."""
    _check_bits(bits)
    if numel < 0:
        raise ValueError(f"numel must be >= 0, got {numel}")
    d = _check_bucket(bucket_size, numel, "partial")
    nb = math.ceil(numel / d) if numel else 0
    return numel * bits + nb * 2 * scale_bits + n_points * scale_bits


def model_size_bits(model: nn.Module) -> int:
    """Storage of ``model`` in bits: quantised (parametrised) tensors at their quantiser's
    ``storage_bits``, every other parameter and buffer at its dtype's width."""
    total = 0
    counted: set[int] = set()
    for mod in model.modules():
        plist = getattr(mod, "parametrizations", None)
        if plist is None:
            continue
        for entry in plist.values():
            quantizers = [p for p in entry if hasattr(p, "storage_bits")]
            if not quantizers:
                continue
            # the last quantiser decides what is stored; its own state (codebook) is included
            total += int(quantizers[-1].storage_bits(entry.original.numel()))
            counted.add(id(entry.original))
            for q in quantizers:
                counted.update(id(t) for t in q.parameters())
                counted.update(id(t) for t in q.buffers())
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) not in counted:
            total += t.numel() * t.element_size() * 8
            counted.add(id(t))
    return total


def fake_quantize_model(
    model: nn.Module,
    bits: int,
    bucket_size: int | None = 256,
    *,
    stochastic: bool = False,
    exclude: tuple[str, ...] = (),
) -> nn.Module:
    """Register a :class:`UniformQuantizer` parametrisation on the ``weight`` of every
    ``nn.Linear``/``nn.Conv{1,2,3}d`` of ``model`` (in place; returns ``model``), except the
    qualified names in ``exclude``. Biases stay full precision, as in the paper."""
    _check_bits(bits)
    names = {n for n, _ in model.named_modules()}
    unknown = set(exclude) - names
    if unknown:
        raise ValueError(f"exclude names modules that do not exist: {sorted(unknown)}")
    for name, mod in list(model.named_modules()):
        if name in exclude or not isinstance(mod, _WEIGHTED):
            continue
        if parametrize.is_parametrized(mod, "weight"):
            raise ValueError(f"module {name!r} is already parametrised")
        parametrize.register_parametrization(
            mod, "weight", UniformQuantizer(bits, bucket_size, stochastic=stochastic)
        )
    return model


_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def freeze_quantization(model: nn.Module) -> nn.Module:
    """Replace every parametrised weight by its (deterministic) quantised value, in place.

    Afterwards ``model`` is a plain network whose weights take at most ``2^bits`` values per
    bucket. Returns ``model``.
    """
    was_training = model.training
    model.eval()  # deterministic rounding for the stored weights
    with torch.no_grad():
        for mod in list(model.modules()):
            if getattr(mod, "parametrizations", None) is not None:
                _unparametrize(mod)
    model.train(was_training)
    return model


def _unparametrize(mod: nn.Module) -> None:
    # Not parametrize.remove_parametrizations: it deletes the property from the parametrised
    # class, which a deep copy shares with its original, breaking the original module.
    plist: Any = mod.parametrizations
    values = {name: (getattr(mod, name), plist[name].original) for name in plist.keys()}
    mod.__class__ = type(mod).__bases__[0]
    del mod._modules["parametrizations"]
    for name, (value, orig) in values.items():
        mod.register_parameter(
            name, nn.Parameter(value.detach().clone(), requires_grad=orig.requires_grad)
        )
