"""Topology-preserving differentiable skeletonization (Menten et al., ICCV 2023) and the clDice
soft skeleton (Shit et al., CVPR 2021) it is compared with.

Menten et al. thin a binary image by repeatedly deleting *simple* points — points whose removal
changes no topology (components, holes/tunnels, cavities) — except end points. Every step is
made of convolutions, sums, products and clipped-linear functions, so gradients flow:

1. Probabilistic input ``p`` is binarised with the logistic reparameterisation
   ``σ((log(p/(1-p)) + β·L)/τ)``, ``L ~ Logistic(0, 1)``, thresholded at 0.5 with a
   straight-through estimator (forward exact, backward through the sigmoid).
2. Each iteration marks end points (at most one foreground neighbour in the 8-/26-
   neighbourhood) and then visits the 4 (2D) or 8 (3D) stride-2 subfields in turn. No two points
   of one subfield are neighbours, so deleting all simple points of a subfield at once keeps the
   topology. A point is deleted by ``x ← min(x, 1 - simple · (1 - endpoint))``.
3. Simple points are found either

   * ``"euler"``: the Euler characteristic ``χ = V - E + F (- O)`` of the background cubical
     complex of every 3×3(×3) window, counted with convolutions over vertices, edges, faces
     (and octants), must not change when the centre is deleted (Lobregt et al. 1980). In 2D
     this is exact. In 3D it is not sufficient on its own (a centre joining two otherwise
     separate parts can keep χ); it is combined with Bertrand's isolated-cell conditions
     (no A6, B18, B26 cells) plus his three direct cases, which makes it exact; or
   * ``"boolean"``: Boolean characterisations relaxed to polynomials / clipped sums — Yokoi's
     connectivity number ``N_c = Σ_{k odd} x̄_k - x̄_k x̄_{k+1} x̄_{k+2} = 1`` in 2D, and
     Bertrand's (1996) four conditions on cell counts (N6, N18, N26, A6, A18, A26, B18, B26)
     in 3D.

   Both agree exactly with the definition of a simple point (8/4- and 26/6-connectivity) on
   binary images; the tests check all 256 2D configurations and random 3D ones.

Shapes: images ``(B, C, H, W)`` or volumes ``(B, C, D, H, W)``; channels are independent.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchloom.core.checks import check_floating, check_positive

__all__ = [
    "Skeletonize",
    "binarize",
    "cldice_loss",
    "endpoints",
    "simple_points",
    "skeletonize",
    "soft_skeleton",
]

SimplePointMethod = Literal["euler", "boolean"]


def skeletonize(
    x: Tensor,
    num_iter: int | None = 5,
    *,
    method: SimplePointMethod = "boolean",
    probabilistic: bool = False,
    beta: float = 0.33,
    tau: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Differentiable topology-preserving skeleton (Menten et al. 2023).

    Args:
        x: ``(B, C, H, W)`` or ``(B, C, D, H, W)`` with values in ``[0, 1]``; binary (0/1)
            unless ``probabilistic``.
        num_iter: thinning iterations (each peels about one layer); ``None`` iterates until
            nothing changes.
        method: simple-point test, ``"boolean"`` or ``"euler"`` (identical on binary input).
        probabilistic: binarise ``x`` first with the logistic reparameterisation and a
            straight-through estimator (see :func:`binarize`).
        beta, tau: noise scale and temperature of that reparameterisation.
        generator: source of the logistic noise.

    Returns:
        Binary skeleton, same shape/dtype as ``x``, differentiable w.r.t. ``x``.
    """
    nd = _check_image(x, "x")
    _check_method(method)
    if num_iter is not None and (isinstance(num_iter, bool) or not isinstance(num_iter, int)):
        raise TypeError(f"num_iter must be an int or None, got {type(num_iter).__name__}")
    if num_iter is not None and num_iter < 0:
        raise ValueError(f"num_iter must be >= 0 or None, got {num_iter}")
    _check_range(x, "x")
    if probabilistic:
        x = binarize(x, beta=beta, tau=tau, generator=generator)
    else:
        _check_binary(x, "x")
    shape = x.shape
    img = F.pad(x.reshape(-1, *shape[2:]), [1, 1] * nd)  # zero border = background outside
    offsets = list(itertools.product((0, 1), repeat=nd))
    limit = num_iter if num_iter is not None else sum(int(s) for s in shape[2:]) + 1
    for _ in range(limit):
        before = img.detach().clone() if num_iter is None else None
        is_end = _endpoints_padded(img, nd)
        for o in offsets:
            sub = (slice(None), *(slice(oi, None, 2) for oi in o))
            simple = _simple_subfield(img, o, nd, method)
            delete = torch.zeros_like(img)
            delete[sub] = simple * (1.0 - is_end[sub])
            img = torch.minimum(img, 1.0 - delete)
        if before is not None and torch.equal(before, img.detach()):
            break
    inner = (slice(None),) + (slice(1, -1),) * nd
    return img[inner].reshape(shape)


class Skeletonize(nn.Module):
    """Module form of :func:`skeletonize` (Menten et al., ICCV 2023).

    Shapes: ``(B, C, H, W)`` or ``(B, C, D, H, W)`` in, same shape out.
    """

    def __init__(
        self,
        num_iter: int | None = 5,
        method: SimplePointMethod = "boolean",
        probabilistic: bool = True,
        beta: float = 0.33,
        tau: float = 1.0,
    ) -> None:
        super().__init__()
        _check_method(method)
        check_positive(beta, "beta", strict=False)
        check_positive(tau, "tau")
        self.num_iter = num_iter
        self.method: SimplePointMethod = method
        self.probabilistic = probabilistic
        self.beta = float(beta)
        self.tau = float(tau)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return skeletonize(
            x,
            self.num_iter,
            method=self.method,
            probabilistic=self.probabilistic,
            beta=self.beta,
            tau=self.tau,
            generator=generator,
        )

    def extra_repr(self) -> str:
        return (
            f"num_iter={self.num_iter}, method={self.method!r}, "
            f"probabilistic={self.probabilistic}, beta={self.beta}, tau={self.tau}"
        )


def binarize(
    x: Tensor, beta: float = 0.33, tau: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Logistic reparameterisation with a straight-through threshold.

    ``s = σ((log(x/(1-x)) + β·L)/τ)`` with ``L = log(u/(1-u))``, ``u ~ U(0, 1)``; returns
    ``1[s > 0.5]`` in the forward pass and ``∂s/∂x`` in the backward pass. Shape-preserving.
    """
    check_floating(x, "x")
    _check_range(x, "x")
    check_positive(beta, "beta", strict=False)
    check_positive(tau, "tau")
    eps = 1e-8
    log_alpha = torch.log(x + eps) - torch.log(1.0 - x + eps)
    # draw on the generator's device (a CPU generator may drive CUDA input), then move
    where = generator.device if generator is not None else x.device
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=where).to(x.device)
    u = u.clamp(eps, 1.0 - eps)
    noise = torch.log(u) - torch.log1p(-u)
    soft = torch.sigmoid((log_alpha + beta * noise) / tau)
    hard = (soft.detach() > 0.5).to(x.dtype)
    return hard + (soft - soft.detach())  # parenthesised: exact 0/1 forward values


def simple_points(x: Tensor, method: SimplePointMethod = "boolean") -> Tensor:
    """Map of the simple points of a binary image (1 where deleting the point keeps topology).

    Uses 8/4-connectivity in 2D and 26/6 in 3D (foreground/background); outside the image is
    background. Only foreground entries are meaningful. Shapes: as :func:`skeletonize`.
    """
    nd = _check_image(x, "x")
    _check_method(method)
    _check_range(x, "x")
    shape = x.shape
    img = F.pad(x.reshape(-1, *shape[2:]), [1, 1] * nd)
    out = torch.zeros_like(img)
    for o in itertools.product((0, 1), repeat=nd):
        sub = (slice(None), *(slice(oi, None, 2) for oi in o))
        out[sub] = _simple_subfield(img, o, nd, method)
    inner = (slice(None),) + (slice(1, -1),) * nd
    return out[inner].reshape(shape)


def endpoints(x: Tensor) -> Tensor:
    """``1`` where a point has at most one foreground 8-/26-neighbour (relaxed: clipped
    ``2 - n``). Shapes: as :func:`skeletonize`."""
    nd = _check_image(x, "x")
    shape = x.shape
    img = F.pad(x.reshape(-1, *shape[2:]), [1, 1] * nd)
    inner = (slice(None),) + (slice(1, -1),) * nd
    return _endpoints_padded(img, nd)[inner].reshape(shape)


# --- clDice baseline ---------------------------------------------------------------------------


def soft_skeleton(x: Tensor, num_iter: int = 10) -> Tensor:
    """clDice soft skeleton (Shit et al. 2021): iterated min/max-pool morphology.

    ``skel = relu(x - open(x))``, then ``num_iter`` times ``x ← erode(x)``,
    ``δ = relu(x - open(x))``, ``skel ← skel + relu(δ - skel·δ)``. Shapes: as
    :func:`skeletonize`; values in ``[0, 1]``. Not topology-preserving.
    """
    nd = _check_image(x, "x")
    if isinstance(num_iter, bool) or not isinstance(num_iter, int) or num_iter < 0:
        raise ValueError(f"num_iter must be a non-negative int, got {num_iter!r}")
    img = x
    skel = F.relu(img - _soft_open(img, nd))
    for _ in range(num_iter):
        img = _soft_erode(img, nd)
        delta = F.relu(img - _soft_open(img, nd))
        skel = skel + F.relu(delta - skel * delta)
    return skel


def cldice_loss(
    pred: Tensor,
    target: Tensor,
    skeleton: Callable[[Tensor], Tensor] | None = None,
    smooth: float = 1.0,
    target_skeleton: Tensor | None = None,
) -> Tensor:
    """Centreline Dice loss ``1 - 2·Tprec·Tsens / (Tprec + Tsens)`` (Shit et al. 2021).

    ``Tprec = |S(pred) ∘ target| / |S(pred)|``, ``Tsens = |S(target) ∘ pred| / |S(target)|``,
    sums over the whole batch and every channel, each smoothed by ``smooth``.

    Args:
        pred: foreground probabilities ``(B, C, *spatial)`` in ``[0, 1]``.
        target: binary ground truth of the same shape.
        skeleton: the skeleton function ``S``; :func:`soft_skeleton` if ``None``. Pass e.g.
            ``Skeletonize(probabilistic=True)`` for the topology-preserving version.
        smooth: additive smoothing of both ratios.
        target_skeleton: ``S(target)`` if already computed (the target does not change during
            training, so it can be skeletonized once).
    """
    _check_image(pred, "pred")
    _check_image(target, "target")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    check_positive(smooth, "smooth")
    skel_fn = skeleton if skeleton is not None else soft_skeleton
    skel_pred = skel_fn(pred)
    if target_skeleton is None:
        skel_true = skel_fn(target)
    else:
        if target_skeleton.shape != target.shape:
            raise ValueError(
                f"target_skeleton must have the target's shape {tuple(target.shape)}, got "
                f"{tuple(target_skeleton.shape)}"
            )
        skel_true = target_skeleton
    tprec = ((skel_pred * target).sum() + smooth) / (skel_pred.sum() + smooth)
    tsens = ((skel_true * pred).sum() + smooth) / (skel_true.sum() + smooth)
    return 1.0 - 2.0 * tprec * tsens / (tprec + tsens)


def _soft_erode(x: Tensor, nd: int) -> Tensor:
    # min over the axis-aligned cross: the minimum of 1D min-pools along each axis
    pool = F.max_pool2d if nd == 2 else F.max_pool3d
    outs = []
    for axis in range(nd):
        k = [1] * nd
        p = [0] * nd
        k[axis], p[axis] = 3, 1
        outs.append(-pool(-x, tuple(k), 1, tuple(p)))
    return torch.stack(outs, 0).amin(0)


def _soft_dilate(x: Tensor, nd: int) -> Tensor:
    pool = F.max_pool2d if nd == 2 else F.max_pool3d
    return pool(x, 3, 1, 1)


def _soft_open(x: Tensor, nd: int) -> Tensor:
    return _soft_dilate(_soft_erode(x, nd), nd)


# --- simple points -----------------------------------------------------------------------------


def _bump(z: Tensor) -> Tensor:
    """Relaxed ``z == 0``: ``relu(1 - |z|)``, exact on integers."""
    return F.relu(1.0 - z.abs())


def _none(count: Tensor) -> Tensor:
    """Relaxed ``count == 0`` for non-negative counts."""
    return (1.0 - count).clamp(0.0, 1.0)


def _endpoints_padded(img: Tensor, nd: int) -> Tensor:
    conv = F.conv2d if nd == 2 else F.conv3d
    kernel = torch.ones((1, 1) + (3,) * nd, dtype=img.dtype, device=img.device)
    kernel[(0, 0) + (1,) * nd] = 0.0
    n = conv(img.unsqueeze(1), kernel, padding=1).squeeze(1)
    # at most one foreground neighbour
    return (2.0 - n).clamp(0.0, 1.0)


def _neighbourhoods(img: Tensor, o: tuple[int, ...], nd: int) -> Tensor:
    """``(N, 3^nd, *m)``: the 3×3(×3) neighbourhoods of the subfield ``img[..., o::2]``.

    Equivalent to a stride-2 convolution with one-hot kernels; channel ``k`` is the neighbour
    at offset ``_offsets(nd)[k]``.
    """
    q = F.pad(img, [1, 1] * nd)
    counts = [(int(img.shape[1 + i]) - o[i] + 1) // 2 for i in range(nd)]
    slices = []
    for d in _offsets(nd):
        idx = (
            slice(None),
            *(slice(o[i] + 1 + d[i], o[i] + 2 * counts[i] + d[i], 2) for i in range(nd)),
        )
        slices.append(q[idx])
    return torch.stack(slices, dim=1)


def _simple_subfield(img: Tensor, o: tuple[int, ...], nd: int, method: SimplePointMethod) -> Tensor:
    nb = _neighbourhoods(img, o, nd)
    if nd == 2:
        if method == "boolean":
            return _bump(_yokoi(nb) - 1.0)
        return _bump(_euler_change(img, o, nd))
    t = _templates_3d(nb.dtype, nb.device)
    fg = nb
    bg = 1.0 - nb
    signed = 2.0 * nb - 1.0
    n6_bg = torch.einsum("k,nk...->n...", t["six"], bg)
    n26_fg = torch.einsum("k,nk...->n...", t["n26"], fg)
    n18_fg = torch.einsum("k,nk...->n...", t["n18"], fg)

    def count(name: str) -> Tensor:
        # number of exact template matches; each match term is relu(<w, 2x-1> - (m-1)),
        # which is 1 for a match and <= 0 otherwise on binary input
        w, m = t[name], t[name + "_m"]
        s = torch.einsum("tk,nk...->nt...", w, signed)
        shape = (1, -1) + (1,) * nd
        return F.relu(s - (m - 1.0).view(shape)).sum(1)

    b26 = count("B26")
    c1 = _bump(n6_bg - 1.0)
    c2 = _bump(n26_fg - 1.0)
    c3 = _bump(n18_fg - 1.0) * _none(b26)
    guard = _none(count("A6")) * _none(b26) * _none(count("B18"))
    if method == "boolean":
        # Bertrand: with no isolated cells, N6(bg) - #A18 + #A26 = 1 iff simple
        c4 = guard * _bump(n6_bg - count("A18") + count("A26") - 1.0)
    else:
        c4 = guard * _bump(_euler_change(img, o, nd))
    return torch.stack([c1, c2, c3, c4], 0).amax(0)


def _yokoi(nb: Tensor) -> Tensor:
    """Yokoi's 8-connectivity number ``Σ_{k∈{0,2,4,6}} x̄_k - x̄_k x̄_{k+1} x̄_{k+2}``."""
    # E, NE, N, NW, W, SW, S, SE as indices into the row-major 3x3 neighbourhood
    ring = (5, 2, 1, 0, 3, 6, 7, 8)
    b = 1.0 - nb
    total = torch.zeros_like(nb[:, 0])
    for k in range(0, 8, 2):
        a, c, e = ring[k], ring[(k + 1) % 8], ring[(k + 2) % 8]
        total = total + b[:, a] - b[:, a] * b[:, c] * b[:, e]
    return total


def _euler_change(img: Tensor, o: tuple[int, ...], nd: int) -> Tensor:
    """``χ(window with centre deleted) - χ(window)`` at every point of subfield ``o``.

    χ is the Euler characteristic ``Σ_S (-1)^{|S|} #cells_S`` of the background cubical complex
    (vertices = background points, edges/faces/octants = all-background 2/4/8-point cells)
    inside each 3^nd window; cell counts are box-filter convolutions of cell indicator maps.
    Deleting every centre of the subfield at once is fine: no window holds two centres.
    """
    sub = (slice(None), *(slice(oi, None, 2) for oi in o))
    masked = img.clone()
    masked[sub] = 0.0
    return _window_euler(masked, o, nd) - _window_euler(img, o, nd)


def _window_euler(img: Tensor, o: tuple[int, ...], nd: int) -> Tensor:
    bg = 1.0 - F.pad(img, [1, 1] * nd)  # the window of a border point reaches one further out
    pool = F.avg_pool2d if nd == 2 else F.avg_pool3d
    chi: Tensor | None = None
    for r in range(nd + 1):
        for axes in itertools.combinations(range(nd), r):
            cell = bg
            for a in axes:  # product over the cell's corners, one axis at a time
                n = cell.shape[1 + a]
                cell = cell.narrow(1 + a, 0, n - 1) * cell.narrow(1 + a, 1, n - 1)
            start = (slice(None), *(slice(oi, None) for oi in o))
            ks = tuple(2 if i in axes else 3 for i in range(nd))
            # sum pooling (divisor 1) keeps integer counts exact in any float dtype
            counted = pool(cell[start].unsqueeze(1), ks, stride=2, divisor_override=1).squeeze(1)
            term = counted if r % 2 == 0 else -counted
            chi = term if chi is None else chi + term
    if chi is None:  # pragma: no cover - nd >= 2 always has the vertex term
        raise RuntimeError("no cells counted")
    return chi


def _offsets(nd: int) -> list[tuple[int, ...]]:
    return list(itertools.product((-1, 0, 1), repeat=nd))


@lru_cache(maxsize=16)
def _template_lists() -> dict[str, list[tuple[tuple[tuple[int, int, int], ...], ...]]]:
    """Bertrand's cells as (foreground offsets, background offsets) pairs in 3D."""
    units = [tuple(s if i == a else 0 for i in range(3)) for a in range(3) for s in (-1, 1)]

    def add(*vs: tuple[int, ...]) -> tuple[int, int, int]:
        r = tuple(sum(c) for c in zip(*vs))
        return (r[0], r[1], r[2])

    def axis(u: tuple[int, ...]) -> int:
        return next(i for i in range(3) if u[i] != 0)

    a6, a18, a26, b18, b26 = [], [], [], [], []
    for u in units:
        ring = tuple(add(u, w) for w in units if axis(w) != axis(u))
        a6.append((ring, (add(u),)))
    for i, u in enumerate(units):
        for w in units[i + 1 :]:
            if axis(w) <= axis(u):
                continue
            v = add(u, w)
            a18.append(((), (v, add(u), add(w))))
            third = 3 - axis(u) - axis(w)
            skip = {add(v, e) for e in units if axis(e) == third}
            near = tuple(
                p
                for p in itertools.product((-1, 0, 1), repeat=3)
                if p != (0, 0, 0)
                and p != v
                and p not in skip
                and max(abs(p[k] - v[k]) for k in range(3)) <= 1
            )
            b18.append(((v,), near))
    for c in itertools.product((-1, 1), repeat=3):
        cube = [
            p
            for p in itertools.product(*[(0, ci) for ci in c])
            if p != (0, 0, 0)  # type: ignore[comparison-overlap]
        ]
        a26.append(((), tuple(cube)))
        b26.append(((c,), tuple(p for p in cube if p != c)))
    return {"A6": a6, "A18": a18, "A26": a26, "B18": b18, "B26": b26}  # type: ignore[dict-item]


_TEMPLATE_CACHE: dict[tuple[torch.dtype, torch.device], dict[str, Tensor]] = {}


def _templates_3d(dtype: torch.dtype, device: torch.device) -> dict[str, Tensor]:
    key = (dtype, device)
    if key not in _TEMPLATE_CACHE:
        offsets = _offsets(3)
        index = {d: k for k, d in enumerate(offsets)}
        out: dict[str, Tensor] = {}
        for name, cells in _template_lists().items():
            w = torch.zeros(len(cells), 27, dtype=torch.float64)
            for t, (fg, bg) in enumerate(cells):
                for d in fg:
                    w[t, index[d]] = 1.0
                for d in bg:
                    w[t, index[d]] = -1.0
            out[name] = w.to(dtype=dtype, device=device)
            out[name + "_m"] = w.abs().sum(1).to(dtype=dtype, device=device)
        order = [sum(abs(c) for c in d) for d in offsets]
        out["six"] = torch.tensor(
            [1.0 if n == 1 else 0.0 for n in order], dtype=dtype, device=device
        )
        out["n18"] = torch.tensor(
            [1.0 if n in (1, 2) else 0.0 for n in order], dtype=dtype, device=device
        )
        out["n26"] = torch.tensor(
            [1.0 if n > 0 else 0.0 for n in order], dtype=dtype, device=device
        )
        _TEMPLATE_CACHE[key] = out
    return _TEMPLATE_CACHE[key]


# --- validation --------------------------------------------------------------------------------


def _check_image(x: object, name: str) -> int:
    t = check_floating(x, name)
    if t.dim() not in (4, 5):
        raise ValueError(
            f"{name} must have 4 dimensions (B, C, H, W) or 5 (B, C, D, H, W), got shape "
            f"{tuple(t.shape)}"
        )
    if t.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    return t.dim() - 2


def _check_method(method: str) -> None:
    if method not in ("euler", "boolean"):
        raise ValueError(f"method must be 'euler' or 'boolean', got {method!r}")


def _check_range(x: Tensor, name: str) -> None:
    lo, hi = float(x.detach().min()), float(x.detach().max())
    if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
        raise ValueError(f"{name} must have values in [0, 1], got min {lo} and max {hi}")


def _check_binary(x: Tensor, name: str) -> None:
    d = x.detach()
    if not bool(((d == 0) | (d == 1)).all()):
        raise ValueError(
            f"{name} must be binary (0/1) when probabilistic=False; pass probabilistic=True "
            "for probabilities"
        )
