"""Neural Metamorphosis (NeuMeta), Yang et al., ECCV 2024 — weight-space smoothing.

NeuMeta learns an implicit neural representation (INR) of a network's weights; the INR fits
far better when neighbouring channels hold similar weights. Hidden channels of a layer can be
permuted freely (with the next layer's inputs permuted the same way) without changing the
network's function, so NeuMeta reorders every dependency group along a *shortest Hamiltonian
path* over the L1 distances between channels: a travelling-salesman problem with a dummy city
at distance 0 from all others, solved exactly for small groups (Held–Karp) and by
nearest-neighbour + 2-opt otherwise.

The INR itself (:class:`NeuMeta`) maps the coordinate of every weight of an MLP family
``in → [width] * depth → out`` to its value: the coordinate of entry ``(r, c)`` of parameter
``p`` is its relative position ``((r + ½)/rows, (c + ½)/cols)`` together with the layer index
and the tensor's size, lifted with sin/cos features; one small residual MLP per parameter
tensor predicts the entry, divided by the fan-in (so a narrower network's sums over fewer
inputs keep their scale). Any width — also ones never trained on — is a resampling of the
same weight manifold. Training draws a width per step and adds uniform noise of ±½ index to the
coordinates; at test time the weights of ``K`` noisy draws are averaged.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from torchloom.core import rng
from torchloom.core.checks import check_floating, check_int, check_positive

__all__ = [
    "NeuMeta",
    "fit_neumeta",
    "path_length",
    "permute_for_smoothness",
    "shortest_hamiltonian_path",
    "weighted_reconstruction_loss",
]

_EXACT_MAX = 10  # Held–Karp is O(2^n n^2): exact up to here, 2-opt beyond


def path_length(dist: torch.Tensor, order: list[int]) -> float:
    """Length ``Σ_k dist[order[k], order[k+1]]`` of an open path."""
    return float(sum(dist[a, b] for a, b in itertools.pairwise(order)))


def _held_karp(d: list[list[float]]) -> list[int]:
    n = len(d)
    full = (1 << n) - 1
    inf = float("inf")
    # cost[mask][j]: shortest path visiting exactly ``mask`` and ending at j (any start)
    cost = [[inf] * n for _ in range(1 << n)]
    parent = [[-1] * n for _ in range(1 << n)]
    for j in range(n):
        cost[1 << j][j] = 0.0
    for mask in range(1, 1 << n):
        for j in range(n):
            c = cost[mask][j]
            if c == inf:
                continue
            for k in range(n):
                if mask & (1 << k):
                    continue
                nm = mask | (1 << k)
                v = c + d[j][k]
                if v < cost[nm][k]:
                    cost[nm][k] = v
                    parent[nm][k] = j
    end = min(range(n), key=lambda j: cost[full][j])
    order, mask = [], full
    while end != -1:
        order.append(end)
        prev = parent[mask][end]
        mask ^= 1 << end
        end = prev
    return order[::-1]


def _two_opt(d: torch.Tensor, order: list[int]) -> list[int]:
    n = len(order)
    improved = True
    while improved:
        improved = False
        for i in range(n - 1):
            for j in range(i + 1, n):
                # reverse order[i..j]; an open path has no edge before 0 or after n-1
                a, b = order[i], order[j]
                before = d[order[i - 1], a] if i > 0 else 0.0
                after = d[b, order[j + 1]] if j < n - 1 else 0.0
                new_before = d[order[i - 1], b] if i > 0 else 0.0
                new_after = d[a, order[j + 1]] if j < n - 1 else 0.0
                if new_before + new_after < before + after - 1e-12:
                    order[i : j + 1] = order[i : j + 1][::-1]
                    improved = True
    return order


def shortest_hamiltonian_path(dist: torch.Tensor, exact: bool | None = None) -> list[int]:
    """An order of the ``n`` items minimising the open-path length over ``dist`` ``(n, n)``.

    Exact (Held–Karp) when ``n <= 10`` (or ``exact=True``); otherwise nearest-neighbour
    from every start followed by 2-opt, a heuristic.
    """
    if not isinstance(dist, torch.Tensor) or dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError(f"dist must be a square (n, n) tensor, got {getattr(dist, 'shape', dist)}")
    n = dist.shape[0]
    if n <= 2:
        return list(range(n))
    if exact is None:
        exact = n <= _EXACT_MAX
    if exact:
        if n > 16:
            raise ValueError(f"exact solve is exponential; n={n} > 16")
        return _held_karp(dist.double().tolist())
    d = dist.double()
    best: list[int] = []
    best_len = float("inf")
    starts = range(n) if n <= 64 else range(0, n, max(1, n // 64))
    for s in starts:
        order, left = [s], set(range(n)) - {s}
        while left:
            last = order[-1]
            nxt = min(left, key=lambda k: float(d[last, k]))
            order.append(nxt)
            left.remove(nxt)
        order = _two_opt(d, order)
        length = path_length(d, order)
        if length < best_len:
            best, best_len = order, length
    return best


def _channel_features(layer: nn.Linear, nxt: nn.Linear) -> torch.Tensor:
    """Per hidden unit k: incoming row, bias and outgoing column, concatenated ``(n, F)``."""
    parts = [layer.weight.detach(), nxt.weight.detach().T]
    if layer.bias is not None:
        parts.insert(1, layer.bias.detach()[:, None])
    return torch.cat(parts, dim=1)


@torch.no_grad()
def permute_for_smoothness(model: nn.Sequential) -> tuple[nn.Sequential, list[list[int]]]:
    """Reorder the hidden units of an MLP so neighbouring units have similar weights.

    ``model`` is an ``nn.Sequential`` of ``nn.Linear``, ``nn.BatchNorm1d`` and parameter-free
    elementwise modules (activations, dropout). Each hidden width between two Linear layers is
    one dependency group, ordered by :func:`shortest_hamiltonian_path` over the L1 distances
    of :func:`_channel_features`. Returns a permuted copy (same function) and the orders.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential MLP, got {type(model).__name__}")
    out = copy.deepcopy(model)
    modules = list(out)
    linears = [i for i, m in enumerate(modules) if isinstance(m, nn.Linear)]
    for i, m in enumerate(out):
        if isinstance(m, nn.Linear | nn.BatchNorm1d):
            continue
        if any(True for _ in m.parameters()) or any(True for _ in m.buffers()):
            raise TypeError(f"model[{i}] ({type(m).__name__}) is not supported by the permutation")
    orders: list[list[int]] = []
    for a, b in itertools.pairwise(linears):
        la, lb = modules[a], modules[b]
        if not (isinstance(la, nn.Linear) and isinstance(lb, nn.Linear)):
            raise TypeError("dependency groups must lie between two nn.Linear layers")
        feats = _channel_features(la, lb)
        order = shortest_hamiltonian_path(torch.cdist(feats, feats, p=1))
        idx = torch.tensor(order, device=la.weight.device)
        la.weight.copy_(la.weight[idx])
        if la.bias is not None:
            la.bias.copy_(la.bias[idx])
        for m in modules[a + 1 : b]:
            if isinstance(m, nn.BatchNorm1d):
                for t in (m.weight, m.bias, m.running_mean, m.running_var):
                    if isinstance(t, torch.Tensor):
                        t.copy_(t[idx])
        lb.weight.copy_(lb.weight[:, idx])
        orders.append(order)
    return out, orders


class _ResidualMLP(nn.Module):
    """``x → ReLU(W₀x) → [h + s_k·ReLU(W_k h)]_k → w·h``: one INR head (NeuMeta's ResMLP)."""

    def __init__(self, d_in: int, hidden: int, layers: int, scale: float) -> None:
        super().__init__()
        self.inp = nn.Linear(d_in, hidden)
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers - 1))
        self.scales = nn.Parameter(torch.full((layers - 1,), float(scale)))
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.inp(x))
        for k, block in enumerate(self.blocks):
            h = h + self.scales[k] * F.relu(block(h))
        return self.out(h).squeeze(-1)


class NeuMeta(nn.Module):
    """NeuMeta: an implicit neural representation of the weights of a family of MLPs.

    The family is ``Linear(in, w) → act → (Linear(w, w) → act) × (depth − 1) → Linear(w, out)``
    for any hidden width ``w ≥ 1``; :meth:`weights` predicts its parameters, :meth:`forward`
    runs it functionally (differentiable into the INR), :meth:`sample` returns a plain
    ``nn.Sequential``.

    Args:
        in_features: input size of the primary network.
        out_features: output size of the primary network.
        depth: number of hidden layers (≥ 1).
        max_width: the largest hidden width trained on (coordinates of sizes are scaled by it).
        min_width: the smallest hidden width drawn in :func:`fit_neumeta`.
        activation: the primary network's activation module class.
        hidden: width of each INR head.
        layers: depth of each INR head (residual blocks + 1).
        num_freqs: number of sin/cos octaves ``2^k π`` in the coordinate features.
        residual_scale: initial value of the learnable residual scales.
        encode_sizes: lift the tensor-size features with the same sin/cos octaves as the
            positions, as the authors' code lifts every coordinate (each width gets its own
            high-frequency code); the default keeps the size ratios raw, so the weights of all
            widths lie on one manifold that is smooth in the size (with a few thousand steps
            the lifted sizes fitted worse on digits: see the package README).

    Shapes:
        ``forward(x, width)``: ``x`` ``(B, in_features)`` → ``(B, out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        depth: int = 2,
        max_width: int = 64,
        min_width: int | None = None,
        activation: type[nn.Module] = nn.ReLU,
        hidden: int = 64,
        layers: int = 3,
        num_freqs: int = 6,
        residual_scale: float = 0.1,
        encode_sizes: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = check_int(in_features, "in_features")
        self.out_features = check_int(out_features, "out_features")
        self.depth = check_int(depth, "depth")
        self.max_width = check_int(max_width, "max_width")
        self.min_width = check_int(max_width // 4 if min_width is None else min_width, "min_width")
        if self.min_width > self.max_width:
            raise ValueError(f"min_width={self.min_width} must be <= max_width={self.max_width}")
        check_int(hidden, "hidden")
        check_int(layers, "layers")
        self.num_freqs = check_int(num_freqs, "num_freqs", minimum=0)
        self.activation = activation
        self.encode_sizes = bool(encode_sizes)
        d_in = 5 + (5 if self.encode_sizes else 3) * 2 * num_freqs
        names = [n for n, _ in self._template(self.max_width).named_parameters()]
        self._names = names
        # one head per parameter tensor, keyed without dots (ModuleDict's rule)
        self.heads = nn.ModuleDict(
            {n.replace(".", "_"): _ResidualMLP(d_in, hidden, layers, residual_scale) for n in names}
        )

    def _template(self, width: int) -> nn.Sequential:
        mods: list[nn.Module] = [nn.Linear(self.in_features, width), self.activation()]
        for _ in range(self.depth - 1):
            mods += [nn.Linear(width, width), self.activation()]
        mods.append(nn.Linear(width, self.out_features))
        return nn.Sequential(*mods)

    def _check_width(self, width: int) -> int:
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive int, got {width!r}")
        return width

    def shapes(self, width: int) -> dict[str, torch.Size]:
        """Parameter name → shape of the primary network of hidden width ``width``."""
        self._check_width(width)
        sizes = [self.in_features, *([width] * self.depth), self.out_features]
        out: dict[str, torch.Size] = {}
        for k, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            out[f"{2 * k}.weight"] = torch.Size((fan_out, fan_in))
            out[f"{2 * k}.bias"] = torch.Size((fan_out,))
        return out

    def _max_shape(self, name: str) -> tuple[int, int]:
        s = self.shapes(self.max_width)[name]
        return (s[0], s[1] if len(s) == 2 else 1)

    def _features(
        self,
        name: str,
        shape: torch.Size,
        noise: float,
        samples: int,
        generator: torch.Generator | None,
        clean_first: bool,
    ) -> torch.Tensor:
        """Coordinate features ``(samples, numel, 5 + 10F)`` (``5 + 6F`` without
        ``encode_sizes``) of every entry of ``name``."""
        ref = next(self.parameters())
        rows, cols = shape[0], shape[1] if len(shape) == 2 else 1
        r, c = torch.meshgrid(
            torch.arange(rows, dtype=torch.float32),
            torch.arange(cols, dtype=torch.float32),
            indexing="ij",
        )
        r = r.reshape(1, -1).expand(samples, -1)
        c = c.reshape(1, -1).expand(samples, -1)
        if noise > 0:
            # the first draw is the clean coordinate; the rest are jittered by ±noise/2 index
            jitter = (rng.rand((2, samples, rows * cols), generator=generator) - 0.5) * noise
            if clean_first:
                jitter[:, 0] = 0.0
            r, c = r + jitter[0], c + jitter[1]
        layer = self._names.index(name) // 2
        n_layers = len(self._names) // 2
        max_rows, max_cols = self._max_shape(name)
        x = torch.stack(
            [
                torch.full_like(r, (layer + 0.5) / n_layers),
                (r + 0.5) / rows,
                (c + 0.5) / cols,
                torch.full_like(r, rows / max_rows),
                torch.full_like(r, cols / max_cols),
            ],
            dim=-1,
        ).to(device=ref.device, dtype=ref.dtype)
        # positions (and, with encode_sizes, the size ratios) get sin/cos octaves
        pos = x if self.encode_sizes else x[..., :3]
        feats = [x]
        for k in range(self.num_freqs):
            feats += [torch.sin(2.0**k * math.pi * pos), torch.cos(2.0**k * math.pi * pos)]
        return torch.cat(feats, dim=-1)

    def weights(
        self,
        width: int,
        noise: float = 0.0,
        samples: int = 1,
        generator: torch.Generator | None = None,
        clean_first: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Predicted parameters of the width-``width`` network, averaged over ``samples``
        coordinate draws jittered by ``U(−noise/2, noise/2)`` index (the first draw is clean
        unless ``clean_first=False``, as in training).

        Returns:
            Parameter name → tensor with the shapes of :meth:`shapes`.
        """
        check_int(samples, "samples")
        check_positive(noise, "noise", strict=False)
        out: dict[str, torch.Tensor] = {}
        for name, shape in self.shapes(width).items():
            feats = self._features(name, shape, noise, samples, generator, clean_first)
            values = self.heads[name.replace(".", "_")](feats).mean(0)
            fan_in = shape[1] if len(shape) == 2 else 1
            out[name] = (values / fan_in).reshape(shape)
        return out

    def forward(
        self,
        x: torch.Tensor,
        width: int,
        noise: float = 0.0,
        samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Run the width-``width`` network with predicted weights; ``(B, in) → (B, out)``."""
        check_floating(x, "x")
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"x must be (B, {self.in_features}), got {tuple(x.shape)}")
        params = self.weights(width, noise, samples, generator)
        out: torch.Tensor = functional_call(self._template(width).to(x.device), params, (x,))
        return out

    @torch.no_grad()
    def sample(
        self,
        width: int,
        samples: int = 1,
        noise: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> nn.Sequential:
        """A plain ``nn.Sequential`` of hidden width ``width`` (any width, also untrained ones),
        with weights averaged over ``samples`` noisy coordinate draws."""
        ref = next(self.parameters())
        net = self._template(width).to(device=ref.device, dtype=ref.dtype)
        net.load_state_dict(self.weights(width, noise if samples > 1 else 0.0, samples, generator))
        return net

    def named_targets(self, model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
        """``model``'s parameters in this family's naming, after checking they match."""
        want = self.shapes(self.max_width)
        got = dict(model.named_parameters())
        if set(got) != set(want) or any(got[n].shape != s for n, s in want.items()):
            raise ValueError(
                "model must be this family at max_width: expected "
                f"{ {n: tuple(s) for n, s in want.items()} }, got "
                f"{ {n: tuple(p.shape) for n, p in got.items()} }"
            )
        for n in self._names:
            yield n, got[n].detach()


def weighted_reconstruction_loss(
    predicted: dict[str, torch.Tensor], target: dict[str, torch.Tensor], eps: float = 1e-6
) -> torch.Tensor:
    """NeuMeta's reconstruction loss: per tensor, the mean of ``w·(ŵ − w*)²`` with weights
    ``w = (|w*| + eps) / max(|w*| + eps)`` (large pretrained weights matter more), averaged
    over tensors."""
    if set(predicted) != set(target):
        raise ValueError(
            f"predicted and target name different tensors: {set(predicted) ^ set(target)}"
        )
    losses = []
    for name, w in predicted.items():
        t = target[name]
        if w.shape != t.shape:
            raise ValueError(f"{name}: predicted {tuple(w.shape)} vs target {tuple(t.shape)}")
        importance = t.abs() + eps
        losses.append((importance / importance.max() * (w - t) ** 2).mean())
    return torch.stack(losses).mean()


def fit_neumeta(
    hyper: NeuMeta,
    x: torch.Tensor | None,
    y: torch.Tensor | None,
    *,
    steps: int,
    pretrained: nn.Module | None = None,
    batch: int = 128,
    lr: float = 3e-4,
    noise: float = 1.0,
    ce_weight: float = 1.0,
    reg_weight: float = 1e-4,
    recon_weight: float = 10.0,
    full_width_prob: float = 0.25,
    clip_grad: float | None = 1.0,
    warmup: int = 0,
    cosine: bool = True,
    ema_decay: float = 0.0,
    generator: torch.Generator | None = None,
    progress: Callable[[int], Iterator[int]] | None = None,
) -> list[float]:
    """Train ``hyper`` as in NeuMeta: per step draw a hidden width (``max_width`` with
    probability ``full_width_prob``, else uniform in ``[min_width, max_width]``), predict its
    weights from coordinates jittered by ``noise``, and minimise
    ``ce_weight·CE + reg_weight·Σ‖W‖₂ + recon_weight·recon`` where the weighted reconstruction
    of ``pretrained`` (ideally :func:`permute_for_smoothness`-ed) applies at ``max_width``.
    As in the authors' code, an exponential moving average of the INR's parameters can be
    kept (``ema_decay``) and is what ``hyper`` holds on return.

    Args:
        hyper: the INR to train.
        x: inputs ``(N, in_features)``; ``None`` when ``ce_weight == 0``.
        y: integer labels ``(N,)``; ``None`` when ``ce_weight == 0``.
        steps: optimiser steps.
        pretrained: the network to reconstruct at ``max_width`` (optional).
        batch: minibatch size for the task loss.
        lr: peak Adam learning rate: linear warm-up over ``warmup`` steps, then annealed to 0
            by a cosine schedule (``cosine=True``) or held constant (the authors' schedule).
        noise: coordinate noise amplitude in index units (paper: 1, i.e. ±½).
        ce_weight: weight of the task loss.
        reg_weight: weight of the weight-norm regulariser.
        recon_weight: weight of the reconstruction loss.
        full_width_prob: probability of drawing ``max_width``.
        clip_grad: max gradient norm (``None``: no clipping); mixing widths makes the loss
            landscape far rougher than at one width, and unclipped steps can collapse the INR.
        cosine: anneal the learning rate to 0 after the warm-up; ``False`` keeps it constant.
        warmup: steps of linear learning-rate warm-up (large early steps on mixed widths
            otherwise undo the reconstruction pre-fit).
        ema_decay: decay of the parameter moving average (0: none); with ``ema_decay > 0``
            the averaged parameters are loaded into ``hyper`` at the end.
        generator: source of the width draws, minibatches and noise.
        progress: wraps ``range(steps)`` (e.g. ``RunContext.progress``).

    Returns:
        The total loss per step.
    """
    check_int(steps, "steps")
    check_int(warmup, "warmup", minimum=0)
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
    if ce_weight > 0 and (x is None or y is None):
        raise ValueError("x and y are required when ce_weight > 0")
    if ce_weight <= 0 and pretrained is None:
        raise ValueError("nothing to fit: ce_weight <= 0 and no pretrained network")
    target = dict(hyper.named_targets(pretrained)) if pretrained is not None else None
    if x is not None and y is not None:
        check_floating(x, "x")
        if y.shape != x.shape[:1]:
            raise ValueError(f"y must be ({x.shape[0]},), got {tuple(y.shape)}")
    device = next(hyper.parameters()).device
    opt = torch.optim.Adam(hyper.parameters(), lr=lr)

    def schedule(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        return warm * (0.5 * (1.0 + math.cos(math.pi * step / steps)) if cosine else 1.0)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    averaged = [p.detach().clone() for p in hyper.parameters()] if ema_decay > 0 else None
    losses: list[float] = []
    it = progress(steps) if progress is not None else iter(range(steps))
    for _ in it:
        full = target is not None and (
            ce_weight <= 0 or float(torch.rand((), generator=generator)) < full_width_prob
        )
        width = (
            hyper.max_width
            if full
            else int(torch.randint(hyper.min_width, hyper.max_width + 1, (), generator=generator))
        )
        params = hyper.weights(width, noise=noise, generator=generator, clean_first=False)
        loss = reg_weight * torch.stack([p.norm() for p in params.values()]).sum()
        if ce_weight > 0 and x is not None and y is not None:
            idx = torch.randint(0, len(x), (min(batch, len(x)),), generator=generator)
            logits = functional_call(hyper._template(width).to(device), params, (x[idx],))
            loss = loss + ce_weight * F.cross_entropy(logits, y[idx])
        if full and target is not None:
            loss = loss + recon_weight * weighted_reconstruction_loss(params, target)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"NeuMeta loss is {float(loss)} at step {len(losses)}")
        opt.zero_grad()
        loss.backward()
        if clip_grad is not None:
            nn.utils.clip_grad_norm_(hyper.parameters(), clip_grad)
        opt.step()
        sched.step()
        if averaged is not None:
            with torch.no_grad():
                for a, p in zip(averaged, hyper.parameters()):
                    a.lerp_(p, 1.0 - ema_decay)
        losses.append(float(loss.detach()))
    if averaged is not None:
        with torch.no_grad():
            for a, p in zip(averaged, hyper.parameters()):
                p.copy_(a)
    return losses
