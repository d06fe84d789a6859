"""Grokking and memorisation on corrupted modular arithmetic.

Doshi, He & Gromov, *To grok or not to grok: Disentangling generalization and memorization on
corrupted algorithmic datasets* (ICLR 2024). A two-layer MLP

    f(a, b) = W phi(U [e_a ; e_b]),   U in R^{N x 2p},  W in R^{p x N},  phi(z) = z^2,

is trained on ``a o b mod p`` with a fraction ``xi`` of the training labels replaced by wrong
ones. A *generalising* neuron carries one Fourier frequency ``k`` in its three weight vectors
``U[n, :p]``, ``U[n, p:]`` and ``W[:, n]`` (the analytic solution
``U[n, m] = cos(2 pi k m / p + phi_1)``, ``W[q, n] = cos(2 pi k q / p + phi_1 + phi_2)``), so
its Fourier spectrum is one-hot; a *memorising* neuron has a spread spectrum. The inverse
participation ratio

    IPR_r(v) = sum_k |v_k|^{2r} / (sum_k |v_k|^2)^r,      r = 2,

of the spectrum tells them apart (1 for one frequency, ``1/n`` for ``n`` equal ones). Pruning
the low-IPR neurons lowers the accuracy on the corrupted training examples and raises it on the
clean ones; weight decay, dropout and BatchNorm make the network ignore the corrupted labels
("inversion": the corrupted examples are predicted with their *true* label).

Only the MLP of the paper is provided (not its Transformer).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from torchloom.core.checks import check_floating, check_int, check_positive, check_probability

__all__ = [
    "GrokkingHistory",
    "ModularAccuracy",
    "ModularDataset",
    "ModularMLP",
    "analytic_modular_mlp",
    "fourier_ipr",
    "fourier_power",
    "ipr",
    "modular_accuracy",
    "modular_arithmetic",
    "neuron_ipr",
    "one_hot_pairs",
    "plot_grokking",
    "prune_neurons",
    "train_modular",
]

Operation = Literal["+", "-", "*", "/"]


def _is_prime(p: int) -> bool:
    return p >= 2 and all(p % d for d in range(2, math.isqrt(p) + 1))


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ModularDataset:
    """Train/test split of ``a o b mod p`` with corrupted training labels.

    Attributes:
        p: modulus (number of classes).
        operation: one of ``"+", "-", "*", "/"``.
        train_pairs: ``(N, 2)`` long, the operands ``(a, b)``.
        train_labels: ``(N,)`` long, the labels trained on (corrupted where ``corrupted``).
        train_true: ``(N,)`` long, the true results.
        corrupted: ``(N,)`` bool, which training labels were replaced.
        test_pairs: ``(M, 2)`` long. test_labels: ``(M,)`` long (never corrupted).
    """

    p: int
    operation: str
    train_pairs: Tensor
    train_labels: Tensor
    train_true: Tensor
    corrupted: Tensor
    test_pairs: Tensor
    test_labels: Tensor

    def one_hot(self, pairs: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """Concatenated one-hot codes ``[e_a ; e_b]``.

        Args:
            pairs: ``(B, 2)`` long operands.
            dtype: floating dtype of the result.

        Returns:
            ``(B, 2p)``.
        """
        return one_hot_pairs(pairs, self.p, dtype)

    def to(self, device: str | torch.device) -> ModularDataset:
        """The same dataset with every tensor on ``device``."""
        moved: dict[str, Any] = {
            k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in vars(self).items()
        }
        return ModularDataset(**moved)


def one_hot_pairs(pairs: Tensor, p: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(B, 2)`` integer operands -> ``(B, 2p)`` concatenated one-hot codes."""
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.dtype.is_floating_point:
        raise ValueError(f"pairs must be integer (B, 2), got {pairs.dtype} {tuple(pairs.shape)}")
    if pairs.numel() and (int(pairs.min()) < 0 or int(pairs.max()) >= p):
        raise ValueError(f"pairs must lie in [0, {p}), got range [{pairs.min()}, {pairs.max()}]")
    oh = nn.functional.one_hot(pairs, p).to(dtype)
    return torch.cat([oh[:, 0], oh[:, 1]], dim=1)


def _apply(op: str, a: Tensor, b: Tensor, p: int) -> Tensor:
    if op == "+":
        return (a + b) % p
    if op == "-":
        return (a - b) % p
    if op == "*":
        return (a * b) % p
    inv = torch.tensor([pow(int(v), p - 2, p) if v else 0 for v in range(p)], device=b.device)
    return (a * inv[b]) % p


def modular_arithmetic(
    p: int,
    operation: Operation = "+",
    *,
    train_fraction: float = 0.5,
    corrupt_fraction: float = 0.0,
    generator: torch.Generator | None = None,
) -> ModularDataset:
    """All pairs ``(a, b)`` of ``Z_p`` with label ``a o b mod p``, split at random into train
    and test; ``round(corrupt_fraction * N_train)`` training labels are replaced by a
    uniformly drawn *different* class (Doshi et al., Sec. 2).

    Args:
        p: modulus >= 2; must be prime for ``"/"`` (``a / b = a b^{p-2}``, pairs with
            ``b = 0`` are left out).
        operation: ``"+"``, ``"-"``, ``"*"`` or ``"/"``.
        train_fraction: fraction ``alpha`` of all pairs used for training, in (0, 1).
        corrupt_fraction: fraction ``xi`` of training labels corrupted, in [0, 1].
        generator: randomness of the split and of the corruption.

    Returns:
        A :class:`ModularDataset`.
    """
    p = check_int(p, "p", minimum=2)
    if operation not in ("+", "-", "*", "/"):
        raise ValueError(f"operation must be one of '+', '-', '*', '/', got {operation!r}")
    if operation == "/" and not _is_prime(p):
        raise ValueError(f"p must be prime for division, got {p}")
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction}")
    check_probability(corrupt_fraction, "corrupt_fraction")
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    pairs = torch.stack([a.reshape(-1), b.reshape(-1)], dim=1)
    if operation == "/":
        pairs = pairs[pairs[:, 1] != 0]
    labels = _apply(operation, pairs[:, 0], pairs[:, 1], p)
    perm = torch.randperm(pairs.shape[0], generator=generator)
    n_train = max(1, min(pairs.shape[0] - 1, round(train_fraction * pairs.shape[0])))
    tr, te = perm[:n_train], perm[n_train:]
    true = labels[tr]
    noisy = true.clone()
    n_bad = round(corrupt_fraction * n_train)
    bad = torch.randperm(n_train, generator=generator)[:n_bad]
    noisy[bad] = (true[bad] + torch.randint(1, p, (n_bad,), generator=generator)) % p
    corrupted = torch.zeros(n_train, dtype=torch.bool)
    corrupted[bad] = True
    return ModularDataset(p, operation, pairs[tr], noisy, true, corrupted, pairs[te], labels[te])


# --------------------------------------------------------------------------- model


class ModularMLP(nn.Module):
    """The paper's two-layer MLP ``f = W phi(U [e_a ; e_b])`` (no biases).

    ``phi`` is ``"quadratic"`` (``z^2``, the paper's choice, for which the Fourier solution is
    exact) or ``"relu"``; ``dropout`` acts on the hidden units, ``batchnorm`` inserts
    ``BatchNorm1d`` after ``phi`` (the paper's regularisers).

    Shapes: ``(B, 2)`` long operands or ``(B, 2p)`` one-hot codes -> ``(B, p)`` logits.
    """

    def __init__(
        self,
        p: int,
        width: int,
        *,
        activation: Literal["quadratic", "relu"] = "quadratic",
        dropout: float = 0.0,
        batchnorm: bool = False,
        init_scale: float = 1.0,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.p = check_int(p, "p", minimum=2)
        self.width = check_int(width, "width")
        if activation not in ("quadratic", "relu"):
            raise ValueError(f"activation must be 'quadratic' or 'relu', got {activation!r}")
        self.activation = activation
        check_probability(dropout, "dropout")
        self.embed = nn.Linear(2 * self.p, self.width, bias=False, device=device, dtype=dtype)
        self.readout = nn.Linear(self.width, self.p, bias=False, device=device, dtype=dtype)
        self.norm = (
            nn.BatchNorm1d(self.width, device=device, dtype=dtype) if batchnorm else nn.Identity()
        )
        self.drop = nn.Dropout(dropout)
        self.init_scale = check_positive(init_scale, "init_scale")
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """``U ~ N(0, s^2 / 2p)``, ``W ~ N(0, s^2 / N)`` with ``s = init_scale``."""
        with torch.no_grad():
            for lin in (self.embed, self.readout):
                w = torch.randn(lin.weight.shape, generator=generator, dtype=lin.weight.dtype)
                lin.weight.copy_(w * self.init_scale / math.sqrt(lin.in_features))

    def hidden(self, x: Tensor) -> Tensor:
        """Hidden activations after ``phi`` (and BatchNorm), ``(B, N)``."""
        if not x.dtype.is_floating_point:
            x = one_hot_pairs(x, self.p, self.embed.weight.dtype)
        if x.ndim != 2 or x.shape[1] != 2 * self.p:
            raise ValueError(f"x must be (B, 2) operands or (B, {2 * self.p}), got {x.shape}")
        z = self.embed(x)
        h = z * z if self.activation == "quadratic" else torch.relu(z)
        out: Tensor = self.norm(h)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, p)`` of operands ``(B, 2)`` (long) or codes ``(B, 2p)``."""
        out: Tensor = self.readout(self.drop(self.hidden(x)))
        return out

    def neuron_ipr(self, r: int = 2) -> Tensor:
        """Per-neuron Fourier IPR of this network's weights, ``(N,)``; see :func:`neuron_ipr`."""
        return neuron_ipr(self.embed.weight, self.readout.weight, r=r)


def analytic_modular_mlp(
    p: int, width: int, *, generator: torch.Generator | None = None
) -> ModularMLP:
    """The analytic generalising solution for ``a + b mod p`` (Gromov 2023; Doshi et al. Eq. 2):
    neuron ``n`` has frequency ``k_n`` (cycling through ``1 .. (p-1)//2``) and random phases,

        U[n, m] = cos(2 pi k m / p + phi_1),  U[n, p + m] = cos(2 pi k m / p + phi_2),
        W[q, n] = cos(2 pi k q / p + phi_1 + phi_2)   (times 2 / N),

    so that ``f(a, b)_q`` concentrates on ``q = a + b`` as ``N`` grows.

    Args:
        p: odd modulus >= 3.
        width: number of neurons ``N``.
        generator: randomness of the phases.

    Returns:
        A quadratic :class:`ModularMLP` (float64) with these weights.
    """
    p = check_int(p, "p", minimum=3)
    if p % 2 == 0:
        raise ValueError(f"p must be odd, got {p}")
    width = check_int(width, "width")
    net = ModularMLP(p, width, dtype=torch.float64)
    k = torch.arange(width, dtype=torch.float64) % ((p - 1) // 2) + 1
    ph1 = torch.rand(width, generator=generator, dtype=torch.float64) * 2 * math.pi
    ph2 = torch.rand(width, generator=generator, dtype=torch.float64) * 2 * math.pi
    m = torch.arange(p, dtype=torch.float64)
    theta = 2 * math.pi * k[:, None] * m[None, :] / p
    with torch.no_grad():
        net.embed.weight.copy_(
            torch.cat([torch.cos(theta + ph1[:, None]), torch.cos(theta + ph2[:, None])], 1)
        )
        net.readout.weight.copy_(torch.cos(theta + (ph1 + ph2)[:, None]).T * 2 / width)
    return net


# --------------------------------------------------------------------------- IPR


def ipr(v: Tensor, r: float = 2.0, dim: int = -1) -> Tensor:
    """Inverse participation ratio ``sum |v|^{2r} / (sum |v|^2)^r`` along ``dim``.

    Args:
        v: any floating tensor, e.g. ``(N, K)`` spectra of ``N`` neurons.
        r: exponent > 1 (the paper uses 2).
        dim: the dimension summed over.

    Returns:
        ``v`` with ``dim`` removed; 1 for a one-hot vector, ``1/n`` for ``n`` equal entries,
        invariant to scaling. All-zero vectors give NaN.
    """
    v = check_floating(v, "v")
    if not r > 1:
        raise ValueError(f"r must be > 1, got {r}")
    a = v.abs()
    return (a ** (2 * r)).sum(dim) / (a * a).sum(dim) ** r


def fourier_power(w: Tensor, dim: int = -1) -> Tensor:
    """Power of ``w`` at the distinct frequencies ``k = 0 .. floor(p/2)`` of ``Z_p``.

    ``k`` and ``p - k`` are merged (a real cosine of frequency ``k`` has power at both), so
    ``sum_k power_k = p sum_m w_m^2`` (Parseval) and a pure cosine has one non-zero entry.

    Args:
        w: ``(..., p)`` real weights over ``Z_p`` along ``dim``.
        dim: the ``Z_p`` dimension.

    Returns:
        ``(..., floor(p/2) + 1)``.
    """
    w = check_floating(w, "w")
    w = w.movedim(dim, -1)
    p = w.shape[-1]
    spec = torch.fft.rfft(w, dim=-1).abs() ** 2
    weight = torch.full((spec.shape[-1],), 2.0, dtype=spec.dtype, device=spec.device)
    weight[0] = 1.0
    if p % 2 == 0:
        weight[-1] = 1.0
    return spec * weight


def fourier_ipr(w: Tensor, r: float = 2.0, dim: int = -1) -> Tensor:
    """IPR of the Fourier spectrum of ``w`` over ``Z_p``: ``ipr(sqrt(fourier_power(w)))``.

    Args:
        w: ``(..., p)`` real weights along ``dim``.
        r: IPR exponent.
        dim: the ``Z_p`` dimension.

    Returns:
        ``(...)``: 1 for a single frequency, small for a spread (memorising) spectrum.
    """
    return ipr(fourier_power(w, dim).sqrt(), r=r, dim=-1)


def neuron_ipr(input_weight: Tensor, output_weight: Tensor, r: float = 2.0) -> Tensor:
    """Per-neuron IPR: the mean of the Fourier IPRs of its three weight vectors
    ``U[n, :p]``, ``U[n, p:]`` and ``W[:, n]`` (Doshi et al., Sec. 3).

    Args:
        input_weight: ``U``, ``(N, 2p)``.
        output_weight: ``W``, ``(p, N)``.
        r: IPR exponent.

    Returns:
        ``(N,)``; NaN where one of the three vectors is zero (a dead neuron).
    """
    u = check_floating(input_weight, "input_weight").detach()
    w = check_floating(output_weight, "output_weight").detach()
    if u.ndim != 2 or w.ndim != 2 or u.shape[1] != 2 * w.shape[0] or u.shape[0] != w.shape[1]:
        raise ValueError(
            f"input_weight must be (N, 2p) and output_weight (p, N), got {tuple(u.shape)} "
            f"and {tuple(w.shape)}"
        )
    p = w.shape[0]
    parts = [fourier_ipr(u[:, :p], r), fourier_ipr(u[:, p:], r), fourier_ipr(w.T, r)]
    return torch.stack(parts).mean(0)


def prune_neurons(model: ModularMLP, keep: Tensor) -> ModularMLP:
    """A copy of ``model`` whose neurons with ``keep[n] == False`` are removed (their input
    and output weights set to zero).

    Args:
        model: the network.
        keep: ``(N,)`` bool mask of the neurons to keep.

    Returns:
        A new :class:`ModularMLP`; ``model`` is unchanged.
    """
    if not isinstance(model, ModularMLP):
        raise TypeError(f"model must be a ModularMLP, got {type(model).__name__}")
    if keep.dtype != torch.bool or keep.shape != (model.width,):
        raise ValueError(f"keep must be a bool tensor of shape ({model.width},), got {keep.shape}")
    out = copy.deepcopy(model)
    with torch.no_grad():
        k = keep.to(out.embed.weight.device)
        out.embed.weight.mul_(k[:, None].to(out.embed.weight.dtype))
        out.readout.weight.mul_(k[None, :].to(out.readout.weight.dtype))
    return out


# --------------------------------------------------------------------------- training probe


@dataclass(frozen=True)
class ModularAccuracy:
    """Accuracies of a modular-arithmetic classifier.

    Attributes:
        train_clean: on uncorrupted training examples.
        train_corrupted: on corrupted ones, against their (wrong) training labels
            (memorisation).
        train_corrupted_true: on corrupted ones, against their true labels (inversion).
        test: on the held-out pairs.
    """

    train_clean: float
    train_corrupted: float
    train_corrupted_true: float
    test: float


def _acc(pred: Tensor, y: Tensor) -> float:
    return float((pred == y).double().mean()) if y.numel() else float("nan")


@torch.no_grad()
def modular_accuracy(model: nn.Module, data: ModularDataset) -> ModularAccuracy:
    """Evaluate ``model`` (``(B, 2)`` operands -> ``(B, p)`` logits) in eval mode.

    Args:
        model: any classifier of operand pairs.
        data: the dataset.

    Returns:
        A :class:`ModularAccuracy`.
    """
    was = model.training
    model.eval()
    try:
        pr = model(data.train_pairs).argmax(-1)
        pt = model(data.test_pairs).argmax(-1)
    finally:
        model.train(was)
    c = data.corrupted
    return ModularAccuracy(
        train_clean=_acc(pr[~c], data.train_labels[~c]),
        train_corrupted=_acc(pr[c], data.train_labels[c]),
        train_corrupted_true=_acc(pr[c], data.train_true[c]),
        test=_acc(pt, data.test_labels),
    )


@dataclass
class GrokkingHistory:
    """Progress measures recorded during :func:`train_modular`, one row per record.

    Attributes:
        rows: dicts with ``step``, ``loss``, the four :class:`ModularAccuracy` fields,
            ``mean_ipr`` and ``frac_periodic`` (neurons with IPR above the threshold).
        ipr: the per-neuron IPR ``(N,)`` at each record (``mean_ipr`` ignores dead neurons).
    """

    rows: list[dict[str, float]] = field(default_factory=list)
    ipr: list[Tensor] = field(default_factory=list)

    def column(self, name: str) -> list[float]:
        """The values of one recorded quantity over training."""
        return [r[name] for r in self.rows]


def train_modular(
    model: ModularMLP,
    data: ModularDataset,
    *,
    steps: int,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    loss: Literal["mse", "cross_entropy"] = "mse",
    record_every: int = 50,
    ipr_threshold: float = 0.5,
    callback: Callable[[int, ModularMLP], None] | None = None,
) -> GrokkingHistory:
    """Full-batch AdamW training as in the paper, recording accuracies and IPRs.

    The MSE loss is ``mean_i ||f(x_i) - e_{y_i}||^2`` (the paper's choice); ``weight_decay``
    is AdamW's decoupled decay.

    Args:
        model: the network (trained in place).
        data: the dataset (on the model's device).
        steps: number of full-batch steps.
        lr: learning rate.
        weight_decay: AdamW weight decay.
        loss: ``"mse"`` on one-hot targets or ``"cross_entropy"``.
        record_every: record progress every this many steps (and at the end).
        ipr_threshold: IPR above which a neuron counts as periodic in ``frac_periodic``.
        callback: called as ``callback(step, model)`` after each record.

    Returns:
        A :class:`GrokkingHistory`.
    """
    steps = check_int(steps, "steps", minimum=0)
    record_every = check_int(record_every, "record_every")
    check_positive(lr, "lr")
    check_positive(weight_decay, "weight_decay", strict=False)
    if loss not in ("mse", "cross_entropy"):
        raise ValueError(f"loss must be 'mse' or 'cross_entropy', got {loss!r}")
    x = data.one_hot(data.train_pairs, model.embed.weight.dtype).to(model.embed.weight.device)
    y = data.train_labels.to(x.device)
    target = nn.functional.one_hot(y, data.p).to(x.dtype)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    hist = GrokkingHistory()
    value = float("nan")
    for step in range(steps + 1):
        if step % record_every == 0 or step == steps:
            acc = modular_accuracy(model, data)
            nipr = model.neuron_ipr()
            hist.ipr.append(nipr.cpu())
            hist.rows.append(
                {
                    "step": float(step),
                    "loss": value,
                    **vars(acc),
                    "mean_ipr": float(nipr.nanmean()),
                    "frac_periodic": float((nipr > ipr_threshold).double().mean()),
                }
            )
            if callback is not None:
                callback(step, model)
        if step == steps:
            break
        model.train()
        out = model(x)
        if loss == "mse":
            obj = (out - target).pow(2).sum(-1).mean()
        else:
            obj = nn.functional.cross_entropy(out, y)
        if not torch.isfinite(obj):
            raise FloatingPointError(f"loss became {float(obj)} at step {step}")
        opt.zero_grad(set_to_none=True)
        obj.backward()
        opt.step()
        value = float(obj.detach())
    return hist


def plot_grokking(history: GrokkingHistory, ax: Any = None, title: str = "") -> Any:
    """Plot the accuracies and the mean IPR of a :class:`GrokkingHistory` against the step.

    Args:
        history: the recorded history.
        ax: a matplotlib axis (a new figure when ``None``).
        title: axis title.

    Returns:
        The matplotlib axis.
    """
    if ax is None:
        from torchloom.core.recipes import pyplot

        _, ax = pyplot().subplots(figsize=(5, 3.5))
    s = history.column("step")
    ax.plot(s, history.column("train_clean"), label="train (clean)")
    ax.plot(s, history.column("train_corrupted"), label="train (corrupted, memorised)")
    ax.plot(s, history.column("train_corrupted_true"), ":", label="corrupted, true label")
    ax.plot(s, history.column("test"), label="test")
    ax.plot(s, history.column("mean_ipr"), "k--", label="mean IPR")
    ax.set_xlabel("step")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=6)
    return ax
