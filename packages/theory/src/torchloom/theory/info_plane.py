"""The information plane of a network's layers (Shwartz-Ziv & Tishby 2017).

Each layer's representation ``T`` of the inputs ``X`` is placed at ``(I(X;T), I(T;Y))``. As in
the paper, the mutual information of a deterministic network is estimated by discretising every
unit's activation into ``n_bins`` equal bins (the paper: 30 bins over tanh's range [-1, 1]) and
computing the plug-in entropies of the resulting discrete codes, with ``X`` uniform over the
distinct input patterns. :func:`kde_mutual_information` is the alternative of Saxe et al. (2018):
``T`` is taken as ``h + N(0, σ² I)`` and the entropy of that Gaussian mixture is bounded from
above by the pairwise-distance (KL) estimator of Kolchinsky & Tracey (2017).

:class:`InfoPlaneTracker` records both quantities for chosen layers of any ``nn.Module`` through
forward hooks; :func:`twelve_bit_task` is the paper's 12-bit task and :func:`plot_info_plane`
the information-plane plot coloured by epoch. All information values are in bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

__all__ = [
    "InfoPlaneTracker",
    "binned_mutual_information",
    "discrete_entropy",
    "discrete_mutual_information",
    "kde_entropy_upper",
    "kde_mutual_information",
    "plot_info_plane",
    "twelve_bit_task",
]

_LN2 = math.log(2.0)


def _codes(v: Tensor, name: str) -> Tensor:
    """Integer code (0..K-1) of each row of a (N,) or (N, D) discrete tensor."""
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2 or v.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N,) or (N, D) tensor, got {tuple(v.shape)}")
    return torch.unique(v, dim=0, return_inverse=True)[1]


def discrete_entropy(v: Tensor) -> float:
    """Plug-in entropy in bits of the empirical distribution of the rows of ``v``.

    Args:
        v: (N,) or (N, D) samples of a discrete variable (each distinct row is one value).

    Returns:
        ``-Σ p log2 p`` over the distinct rows' frequencies.
    """
    counts = torch.bincount(_codes(v, "v")).double()
    p = counts / counts.sum()
    return float(-(p * p.log2()).sum())


def discrete_mutual_information(a: Tensor, b: Tensor) -> float:
    """Plug-in mutual information in bits ``H(A) + H(B) - H(A, B)`` of paired discrete samples.

    Args:
        a: (N,) or (N, D1) samples of A.
        b: (N,) or (N, D2) samples of B, paired with ``a``.

    Returns:
        The mutual information of the empirical joint distribution (>= 0).
    """
    ca, cb = _codes(a, "a"), _codes(b, "b")
    if ca.shape[0] != cb.shape[0]:
        raise ValueError(
            f"a and b need the same number of samples, got {ca.shape[0]}, {cb.shape[0]}"
        )
    joint = torch.stack([ca, cb], dim=1)
    mi = discrete_entropy(ca) + discrete_entropy(cb) - discrete_entropy(joint)
    return max(mi, 0.0)


def _bin(t: Tensor, n_bins: int, bin_range: tuple[float, float] | None) -> Tensor:
    if t.ndim == 1:
        t = t[:, None]
    t = t.reshape(t.shape[0], -1).detach().double()
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    lo, hi = (float(t.min()), float(t.max())) if bin_range is None else bin_range
    if not hi > lo:
        return torch.zeros_like(t, dtype=torch.long)
    idx = ((t - lo) / (hi - lo) * n_bins).floor().long()
    return idx.clamp(0, n_bins - 1)


def binned_mutual_information(
    t: Tensor,
    x: Tensor,
    y: Tensor,
    n_bins: int = 30,
    bin_range: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """``I(X;T)`` and ``I(T;Y)`` in bits with ``T`` discretised into equal-width bins.

    Every unit of ``t`` is mapped to one of ``n_bins`` bins of ``bin_range`` (the data's min and
    max if None); the tuple of bins is the discrete ``T``. ``X`` is the empirical distribution
    over the rows of ``x`` (uniform over the patterns when they are distinct, as in the paper).

    Args:
        t: (N, ...) activations of one layer for the N inputs.
        x: (N, ...) the inputs (or any per-example identifiers of X).
        y: (N,) labels.
        n_bins: number of bins per unit.
        bin_range: ``(low, high)`` of the bins; values outside are clipped to the end bins.

    Returns:
        ``(I(X;T), I(T;Y))``; ``I(X;T) <= H(X)`` and ``I(T;Y) <= H(Y)``.
    """
    n = t.shape[0]
    if x.shape[0] != n or y.shape[0] != n:
        raise ValueError(
            f"t, x and y need the same number of rows, got {n}, {x.shape[0]}, {y.shape[0]}"
        )
    tb = _bin(t, n_bins, bin_range)
    return (
        discrete_mutual_information(x.reshape(n, -1), tb),
        discrete_mutual_information(tb, y.reshape(n, -1)),
    )


def kde_entropy_upper(h: Tensor, noise_var: float) -> float:
    """Upper bound (bits) on the entropy of ``T = h + N(0, noise_var I)``, h uniform on the rows.

    Kolchinsky & Tracey's pairwise-KL estimator of a Gaussian mixture's entropy,
    ``H(T) <= H(noise) - (1/N) Σ_i log (1/N) Σ_j exp(-||h_i - h_j||² / (2 noise_var))``.

    Args:
        h: (N, D) mixture centres (the layer's activations).
        noise_var: variance σ² > 0 of the added Gaussian noise.

    Returns:
        The bound in bits; equals ``H(noise)`` for one centre, ``H(noise) + log2 N`` for N
        far-apart centres.
    """
    if noise_var <= 0:
        raise ValueError(f"noise_var must be > 0, got {noise_var}")
    h = h.reshape(h.shape[0], -1).detach().double()
    n, d = h.shape
    d2 = torch.cdist(h, h).pow(2)
    lse = torch.logsumexp(-d2 / (2 * noise_var), dim=1) - math.log(n)
    h_noise = 0.5 * d * (math.log(2 * math.pi * noise_var) + 1.0)
    return float(h_noise - lse.mean()) / _LN2


def kde_mutual_information(t: Tensor, y: Tensor, noise_var: float = 1e-1) -> tuple[float, float]:
    """KDE upper bounds (Saxe et al. 2018) on ``I(X;T)`` and ``I(T;Y)`` in bits.

    ``T = h + N(0, noise_var I)`` with ``h`` the layer's activations of N equally likely inputs:
    ``I(X;T) = H(T) - H(noise)`` and ``I(T;Y) = H(T) - Σ_y p(y) H(T | Y = y)``, each entropy
    replaced by :func:`kde_entropy_upper`.

    Args:
        t: (N, ...) activations.
        y: (N,) discrete labels.
        noise_var: variance of the noise that makes the mutual information finite.

    Returns:
        ``(I(X;T), I(T;Y))``.
    """
    n = t.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"t and y need the same number of rows, got {n}, {y.shape[0]}")
    h = t.reshape(n, -1).detach().double()
    d = h.shape[1]
    h_t = kde_entropy_upper(h, noise_var)
    h_noise = 0.5 * d * (math.log(2 * math.pi * noise_var) + 1.0) / _LN2
    codes = _codes(y.reshape(n, -1), "y")
    h_t_given_y = 0.0
    for c in codes.unique():
        m = codes == c
        h_t_given_y += float(m.double().mean()) * kde_entropy_upper(h[m], noise_var)
    return h_t - h_noise, h_t - h_t_given_y


def twelve_bit_task(degrees: tuple[int, ...] = (1, 2)) -> tuple[Tensor, Tensor]:
    """The paper's 12-bit task: all 4096 binary patterns with a spherically symmetric rule.

    The 12 bits sit on the vertices ``v_i`` of an icosahedron (12 points evenly spread on the
    sphere). With spins ``s = 2x - 1``, ``f(x) = Σ_l Σ_ij s_i s_j P_l(v_i · v_j)`` (the power of
    the pattern in the spherical harmonics of the given degrees, invariant under rotations of
    the sphere), and ``y = 1[f(x) > θ]`` with θ the threshold closest to balanced classes, as in
    Shwartz-Ziv & Tishby's ``y = Θ(f(x) − θ)`` with ``p(y = 1) ≈ 0.5``.

    Args:
        degrees: Legendre degrees l >= 1 of the rotation-invariant rule.

    Returns:
        ``(x, y)``: (4096, 12) float patterns in {0, 1} and (4096,) long labels.
    """
    if not degrees or any(int(l_) < 1 for l_ in degrees):
        raise ValueError(f"degrees must be a non-empty tuple of ints >= 1, got {degrees}")
    phi = (1 + 5**0.5) / 2
    v = []
    for a in (-1.0, 1.0):
        for b in (-phi, phi):
            v += [(0.0, a, b), (a, b, 0.0), (b, 0.0, a)]
    verts = torch.tensor(v, dtype=torch.float64)
    verts = verts / verts.norm(dim=1, keepdim=True)
    cos = verts @ verts.T
    kernel = torch.zeros_like(cos)
    for l_ in degrees:
        # Legendre P_l by the three-term recurrence.
        p0, p1 = torch.ones_like(cos), cos.clone()
        for k in range(1, int(l_)):
            p0, p1 = p1, ((2 * k + 1) * cos * p1 - k * p0) / (k + 1)
        kernel = kernel + p1
    codes = torch.arange(4096)
    x = ((codes[:, None] >> torch.arange(11, -1, -1)) & 1).double()
    s = 2 * x - 1
    f = ((s @ kernel) * s).sum(1)
    # Round away floating-point noise so that patterns related by a symmetry of the icosahedron
    # (which have the same f exactly) fall on the same side of the threshold.
    f = torch.round(f * 1e8) / 1e8
    values = f.unique()
    best, best_gap = values[0], 2.0
    for th in values:
        gap = abs(float((f > th).double().mean()) - 0.5)
        if gap < best_gap:
            best, best_gap = th, gap
    return x.float(), (f > best).long()


@dataclass
class InfoPlaneTracker:
    """Records ``(I(X;T), I(T;Y))`` of chosen layers over training through forward hooks.

    Attach it to a model, call :meth:`record` (e.g. once per epoch) with an epoch number, and read
    :attr:`history`. Hooks are removed by :meth:`close` (or on leaving a ``with`` block).

    Attributes:
        model: the network; ``record`` runs ``model(x)`` under ``no_grad`` (its train/eval
            mode is left as it is).
        layers: mapping name -> submodule whose output is a layer's representation ``T``.
        x: (N, ...) inputs that define X (all of them, e.g. the 4096 patterns).
        y: (N,) labels that define Y.
        estimator: ``"binning"`` or ``"kde"``.
        n_bins: bins per unit for ``"binning"``.
        bin_range: fixed ``(low, high)`` of the bins (e.g. (-1, 1) for tanh); None uses each
            layer's min and max at each record.
        noise_var: noise variance for ``"kde"``.
        history: one dict per record and layer: ``epoch``, ``layer``, ``i_xt``, ``i_ty``.
    """

    model: nn.Module
    layers: dict[str, nn.Module]
    x: Tensor
    y: Tensor
    estimator: Literal["binning", "kde"] = "binning"
    n_bins: int = 30
    bin_range: tuple[float, float] | None = None
    noise_var: float = 1e-1
    history: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.estimator not in ("binning", "kde"):
            raise ValueError(f"estimator must be 'binning' or 'kde', got {self.estimator!r}")
        if not self.layers:
            raise ValueError("layers must name at least one submodule")
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError("x and y need the same number of rows")
        self._acts: dict[str, Tensor] = {}
        self._handles = [
            m.register_forward_hook(self._hook(name)) for name, m in self.layers.items()
        ]

    def _hook(self, name: str) -> Any:
        def fn(_m: nn.Module, _inp: Any, out: Any) -> None:
            self._acts[name] = (out[0] if isinstance(out, tuple) else out).detach()

        return fn

    def record(self, epoch: int | float) -> list[dict[str, Any]]:
        """Run the model on ``x`` and store the information-plane point of every layer.

        Args:
            epoch: the training time to file the points under.

        Returns:
            The new history rows (one per layer).
        """
        self._acts.clear()
        with torch.no_grad():
            self.model(self.x)
        rows = []
        for name in self.layers:
            t = self._acts[name]
            if self.estimator == "binning":
                i_xt, i_ty = binned_mutual_information(
                    t, self.x, self.y, self.n_bins, self.bin_range
                )
            else:
                i_xt, i_ty = kde_mutual_information(t, self.y, self.noise_var)
            rows.append({"epoch": epoch, "layer": name, "i_xt": i_xt, "i_ty": i_ty})
        self.history.extend(rows)
        return rows

    def trajectory(self, layer: str) -> tuple[Tensor, Tensor, Tensor]:
        """One layer's information-plane trajectory.

        Args:
            layer: a name of :attr:`layers`.

        Returns:
            ``(epochs, I(X;T), I(T;Y))`` as (R,) float64 tensors over the R records.
        """
        rows = [r for r in self.history if r["layer"] == layer]
        if not rows:
            raise ValueError(f"no records for layer {layer!r}")
        return tuple(  # type: ignore[return-value]
            torch.tensor([float(r[k]) for r in rows], dtype=torch.float64)
            for k in ("epoch", "i_xt", "i_ty")
        )

    def close(self) -> None:
        """Remove the forward hooks."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> InfoPlaneTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def plot_info_plane(history: list[dict[str, Any]], ax: Any = None, cmap: str = "viridis") -> Any:
    """Information-plane plot: each layer's ``(I(X;T), I(T;Y))`` over training, coloured by epoch.

    Args:
        history: rows with ``epoch``, ``layer``, ``i_xt``, ``i_ty`` (e.g.
            :attr:`InfoPlaneTracker.history`).
        ax: a matplotlib axis to draw on (a new figure if None).
        cmap: colour map of the epochs.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    if not history:
        raise ValueError("history is empty")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
    else:
        fig = ax.figure
    epochs = sorted({float(r["epoch"]) for r in history})
    lo, hi = epochs[0], epochs[-1]
    norm = plt.Normalize(lo, hi if hi > lo else lo + 1)
    layers = list(dict.fromkeys(r["layer"] for r in history))
    # Lines joining the layers at the same epoch, as in the paper's figures.
    for e in epochs:
        pts = [r for r in history if float(r["epoch"]) == e]
        ax.plot(
            [r["i_xt"] for r in pts],
            [r["i_ty"] for r in pts],
            "-",
            color=plt.get_cmap(cmap)(norm(e)),
            alpha=0.3,
            lw=0.8,
        )
    sc = None
    for marker, name in zip("osD^v<>ph*", layers, strict=False):
        pts = [r for r in history if r["layer"] == name]
        sc = ax.scatter(
            [r["i_xt"] for r in pts],
            [r["i_ty"] for r in pts],
            c=[float(r["epoch"]) for r in pts],
            cmap=cmap,
            norm=norm,
            marker=marker,
            s=14,
            label=name,
        )
    if sc is not None:
        fig.colorbar(sc, ax=ax, label="epoch")
    ax.set(xlabel="I(X;T) [bits]", ylabel="I(T;Y) [bits]", title="information plane")
    ax.legend(fontsize=7)
    return fig
