"""Discrete architectures: the :class:`Genotype`, its JSON form, the network it builds, its plot.

A genotype lists, for the normal and the reduction cell, each intermediate node's incoming
edges as ``(op_name, input_state)`` pairs (states 0 and 1 are the cell inputs, state ``i + 2``
is node ``i``) and which states are concatenated into the cell output. :func:`derive_genotype`
reads one out of a supernet with the DARTS rule (per node, the two strongest incoming edges by
their best non-``none`` weight, each with that op). :meth:`Genotype.build` makes the discrete
:class:`DiscreteNetwork` for retraining; :func:`build_from_supernet` builds it with the
supernet's own weights, and then its output equals the supernet's output restricted to the
chosen ops (:meth:`Genotype.supernet_weights` gives those one-hot weights), which is what the
export → retrain path relies on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchloom.core.checks import check_int, check_ndim
from torchloom.nas.space import (
    FactorizedReduce,
    MixedEdge,
    ReLUConvBN,
    SearchCell,
    _check_op_name,
    _edge_op,
    cell_edges,
)
from torchloom.nas.supernet import Supernet, _reduction_cells, _stem

__all__ = [
    "CellSpec",
    "DiscreteCell",
    "DiscreteNetwork",
    "Genotype",
    "build_from_supernet",
    "derive_cell",
    "derive_genotype",
    "plot_cell",
]

Edge = tuple[str, int]
CellSpec = tuple[tuple[Edge, ...], ...]
"""Per intermediate node, its incoming edges ``(op_name, input_state)``."""


def _check_cell(cell: object, name: str) -> CellSpec:
    if not isinstance(cell, Sequence) or isinstance(cell, str) or len(cell) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of nodes, got {cell!r}")
    nodes: list[tuple[Edge, ...]] = []
    for i, node in enumerate(cell):
        if not isinstance(node, Sequence) or isinstance(node, str) or len(node) == 0:
            raise ValueError(f"{name}[{i}] must be a non-empty list of (op, input), got {node!r}")
        edges: list[Edge] = []
        for edge in node:
            if not isinstance(edge, Sequence) or isinstance(edge, str) or len(edge) != 2:
                raise ValueError(f"{name}[{i}] edges must be (op, input) pairs, got {edge!r}")
            op, j = edge
            _check_op_name(op)
            if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < i + 2:
                raise ValueError(
                    f"{name}[{i}] input must be a state index in [0, {i + 1}], got {j!r}"
                )
            edges.append((str(op), int(j)))
        nodes.append(tuple(edges))
    return tuple(nodes)


def _check_concat(concat: object, steps: int, name: str) -> tuple[int, ...]:
    if not isinstance(concat, Sequence) or isinstance(concat, str) or len(concat) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of state indices, got {concat!r}")
    out = tuple(int(c) for c in concat)
    if any(not 0 <= c < steps + 2 for c in out):
        raise ValueError(f"{name} must hold state indices in [0, {steps + 1}], got {out}")
    return out


@dataclass(frozen=True)
class Genotype:
    """A discrete cell pair.

    Attributes:
        normal: per node of the normal cell, its ``(op, input_state)`` edges.
        normal_concat: states concatenated into the normal cell's output.
        reduce: the reduction cell's nodes.
        reduce_concat: states concatenated into the reduction cell's output.
    """

    normal: CellSpec
    normal_concat: tuple[int, ...]
    reduce: CellSpec
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        normal = _check_cell(self.normal, "normal")
        reduce = _check_cell(self.reduce, "reduce")
        if len(normal) != len(reduce):
            raise ValueError(
                f"normal and reduce must have the same number of nodes, "
                f"got {len(normal)} and {len(reduce)}"
            )
        if len(self.normal_concat) != len(self.reduce_concat):
            raise ValueError(
                "normal_concat and reduce_concat must have the same length (cell widths), "
                f"got {list(self.normal_concat)} and {list(self.reduce_concat)}"
            )
        object.__setattr__(self, "normal", normal)
        object.__setattr__(self, "reduce", reduce)
        object.__setattr__(
            self, "normal_concat", _check_concat(self.normal_concat, len(normal), "normal_concat")
        )
        object.__setattr__(
            self, "reduce_concat", _check_concat(self.reduce_concat, len(reduce), "reduce_concat")
        )

    @property
    def steps(self) -> int:
        """Intermediate nodes per cell."""
        return len(self.normal)

    def cell(self, kind: str) -> tuple[CellSpec, tuple[int, ...]]:
        """The nodes and concat list of one cell type.

        Args:
            kind: ``"normal"`` or ``"reduce"``.

        Returns:
            ``(nodes, concat)``.
        """
        if kind == "normal":
            return self.normal, self.normal_concat
        if kind == "reduce":
            return self.reduce, self.reduce_concat
        raise ValueError(f"kind must be 'normal' or 'reduce', got {kind!r}")

    # -------------------------------------------------------------- serialisation

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict.

        Returns:
            ``{"normal": [[[op, input], ...], ...], "normal_concat": [...], ...}``.
        """
        return {
            "normal": [[list(e) for e in node] for node in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[list(e) for e in node] for node in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Genotype:
        """Inverse of :meth:`to_dict`.

        Args:
            data: a mapping with keys ``normal``, ``normal_concat``, ``reduce``,
                ``reduce_concat``.

        Returns:
            The genotype.
        """
        missing = {"normal", "normal_concat", "reduce", "reduce_concat"} - set(data)
        if missing:
            raise ValueError(f"data is missing genotype keys {sorted(missing)}")

        def cell(raw: Any) -> CellSpec:
            return tuple(tuple((str(op), int(j)) for op, j in node) for node in raw)

        return cls(
            cell(data["normal"]),
            tuple(data["normal_concat"]),
            cell(data["reduce"]),
            tuple(data["reduce_concat"]),
        )

    def to_json(self, path: str | Path | None = None) -> str:
        """Serialise to JSON (and write it to ``path`` when given).

        Args:
            path: optional file to write.

        Returns:
            The JSON text.
        """
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Genotype:
        """Read a genotype from JSON text or a JSON file.

        Args:
            text_or_path: JSON text, or a path to a file holding it.

        Returns:
            The genotype.
        """
        text = str(text_or_path)
        if isinstance(text_or_path, Path) or not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        return cls.from_dict(json.loads(text))

    # -------------------------------------------------------------- networks

    def supernet_weights(self, op_names: Sequence[str]) -> dict[str, torch.Tensor]:
        """One-hot edge weights that restrict a supernet to this genotype.

        Args:
            op_names: the supernet's candidate ops (``Supernet.op_names``).

        Returns:
            ``{"normal": (E, N), "reduce": (E, N)}``; chosen edges carry a 1 at their op,
            every other entry is 0.
        """
        names = list(op_names)
        edges = cell_edges(self.steps)
        index = {e: k for k, e in enumerate(edges)}
        out: dict[str, torch.Tensor] = {}
        for kind in ("normal", "reduce"):
            w = torch.zeros(len(edges), len(names))
            nodes, _ = self.cell(kind)
            for i, node in enumerate(nodes):
                for op, j in node:
                    if op not in names:
                        raise ValueError(f"op {op!r} of the genotype is not in op_names {names}")
                    w[index[(i, j)], names.index(op)] = 1.0
            out[kind] = w
        return out

    def build(
        self,
        C: int = 8,
        num_classes: int = 10,
        layers: int = 3,
        in_channels: int = 1,
        stem_multiplier: int = 3,
        reductions: Sequence[int] | None = None,
        affine: bool = True,
        pool_bn: bool = False,
    ) -> DiscreteNetwork:
        """The discrete network of this genotype, freshly initialised, for retraining.

        Args:
            C: channels of each node in the first cell.
            num_classes: classifier outputs.
            layers: number of cells.
            in_channels: image channels.
            stem_multiplier: stem width multiplier.
            reductions: reduction cell indices (default DARTS positions).
            affine: affine BatchNorms (True for retraining).
            pool_bn: BatchNorm after pooling ops (as in the search supernet).

        Returns:
            A :class:`DiscreteNetwork`.
        """
        return DiscreteNetwork(
            self,
            C=C,
            num_classes=num_classes,
            layers=layers,
            in_channels=in_channels,
            stem_multiplier=stem_multiplier,
            reductions=reductions,
            affine=affine,
            pool_bn=pool_bn,
        )

    def plot(self, kind: str = "normal", ax: Any = None) -> Any:
        """Draw one cell as a graph (see :func:`plot_cell`).

        Args:
            kind: ``"normal"`` or ``"reduce"``.
            ax: a matplotlib axes, or ``None`` for a new figure.

        Returns:
            The matplotlib figure.
        """
        return plot_cell(self, kind, ax)


class DiscreteCell(nn.Module):
    """A cell of a genotype: each node sums its chosen ops applied to their input states.

    Args:
        nodes: the cell's :data:`CellSpec`.
        concat: states concatenated into the output.
        C_prev_prev: channels two cells back.
        C_prev: channels of the previous cell.
        C: channels per node.
        reduction: whether this cell halves the spatial size.
        reduction_prev: whether the previous cell did.
        affine: affine BatchNorms in the ops and preprocessing.
        pool_bn: BatchNorm after pooling ops.

    Shapes:
        s0: ``(B, C_prev_prev, H0, W0)``; s1: ``(B, C_prev, H, W)``;
        output: ``(B, len(concat) · C, H / r, W / r)``.
    """

    def __init__(
        self,
        nodes: CellSpec,
        concat: Sequence[int],
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        affine: bool = True,
        pool_bn: bool = False,
    ) -> None:
        super().__init__()
        self.nodes = nodes
        self.concat = tuple(concat)
        self.reduction = reduction
        self.preprocess0: nn.Module = (
            FactorizedReduce(C_prev_prev, C, affine=affine)
            if reduction_prev
            else ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=affine)
        )
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=affine)
        self.ops = nn.ModuleList()
        self.inputs: list[int] = []
        for node in nodes:
            for op, j in node:
                stride = 2 if reduction and j < 2 else 1
                self.ops.append(_edge_op(op, C, stride, affine, pool_bn))
                self.inputs.append(j)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        """Run the cell.

        Args:
            s0: ``(B, C_prev_prev, H0, W0)``.
            s1: ``(B, C_prev, H, W)``.

        Returns:
            ``(B, len(concat) · C, H / r, W / r)``.
        """
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        k = 0
        for node in self.nodes:
            out: torch.Tensor | None = None
            for _ in node:
                term = self.ops[k](states[self.inputs[k]])
                out = term if out is None else out + term
                k += 1
            if out is None:  # pragma: no cover - validated non-empty
                raise RuntimeError("empty node")
            states.append(out)
        return torch.cat([states[i] for i in self.concat], dim=1)


class DiscreteNetwork(nn.Module):
    """The network of a :class:`Genotype`: stem, ``layers`` discrete cells, pooling, classifier.

    Same macro-architecture as :class:`~torchloom.nas.supernet.Supernet` (see
    :meth:`Genotype.build` for the arguments).

    Shapes:
        x: ``(B, in_channels, H, W)``; output: ``(B, num_classes)``.
    """

    def __init__(
        self,
        genotype: Genotype,
        C: int = 8,
        num_classes: int = 10,
        layers: int = 3,
        in_channels: int = 1,
        stem_multiplier: int = 3,
        reductions: Sequence[int] | None = None,
        affine: bool = True,
        pool_bn: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(genotype, Genotype):
            raise TypeError(f"genotype must be a Genotype, got {type(genotype).__name__}")
        self.genotype = genotype
        check_int(C, "C")
        check_int(layers, "layers")
        self.in_channels = check_int(in_channels, "in_channels")
        self.reductions = _reduction_cells(layers, reductions)
        C_curr = stem_multiplier * C
        self.stem = _stem(in_channels, C_curr)
        C_pp, C_p, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in self.reductions
            if reduction:
                C_curr *= 2
            nodes, concat = genotype.cell("reduce" if reduction else "normal")
            self.cells.append(
                DiscreteCell(
                    nodes, concat, C_pp, C_p, C_curr, reduction, reduction_prev, affine, pool_bn
                )
            )
            reduction_prev = reduction
            C_pp, C_p = C_p, len(concat) * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits.

        Args:
            x: images ``(B, in_channels, H, W)``.

        Returns:
            ``(B, num_classes)``.
        """
        check_ndim(x, "x", 4, "(B, C, H, W)")
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        out: torch.Tensor = self.classifier(self.global_pooling(s1).flatten(1))
        return out


def derive_cell(
    weights: torch.Tensor,
    op_names: Sequence[str],
    steps: int,
    k: int = 2,
    exclude: Sequence[str] = ("none",),
) -> CellSpec:
    """The DARTS discretisation of one cell.

    For node ``i`` every incoming edge is scored by its largest weight over ops not in
    ``exclude``; the ``k`` best edges are kept, each with its best such op.

    Args:
        weights: ``(E, N)`` edge weights (e.g. ``softmax(α)``).
        op_names: the ``N`` op names.
        steps: intermediate nodes.
        k: incoming edges kept per node (the first node has only two candidates).
        exclude: ops never chosen.

    Returns:
        The :data:`CellSpec`.
    """
    edges = cell_edges(steps)
    check_ndim(weights, "weights", 2, "(E, N)")
    if weights.shape != (len(edges), len(op_names)):
        raise ValueError(
            f"weights must have shape ({len(edges)}, {len(op_names)}), got {tuple(weights.shape)}"
        )
    check_int(k, "k")
    allowed = [o for o, name in enumerate(op_names) if name not in exclude]
    if not allowed:
        raise ValueError(f"every op is excluded: op_names={list(op_names)}, exclude={exclude}")
    w = weights.detach()[:, allowed]
    best_w, best_o = w.max(dim=1)
    nodes: list[tuple[Edge, ...]] = []
    start = 0
    for i in range(steps):
        n_in = i + 2
        scores = best_w[start : start + n_in]
        top = sorted(torch.argsort(scores, descending=True, stable=True)[: min(k, n_in)].tolist())
        nodes.append(tuple((op_names[allowed[int(best_o[start + j])]], int(j)) for j in top))
        start += n_in
    return tuple(nodes)


def derive_genotype(
    model: Supernet,
    weights: Mapping[str, torch.Tensor] | None = None,
    k: int = 2,
    exclude: Sequence[str] = ("none",),
) -> Genotype:
    """Read the DARTS genotype out of a supernet (argmax of ``softmax(α)`` per edge, top-``k``
    edges per node, ``none`` excluded).

    Args:
        model: the supernet.
        weights: per cell type ``(E, N)`` scores to use instead of ``softmax(α)``.
        k: inputs kept per node.
        exclude: ops never chosen.

    Returns:
        The genotype; its cells concatenate the supernet's last ``multiplier`` nodes.
    """
    if not isinstance(model, Supernet):
        raise TypeError(f"model must be a Supernet, got {type(model).__name__}")
    cells: dict[str, CellSpec] = {}
    for kind, alpha in model.alphas().items():
        w = weights[kind] if weights is not None and kind in weights else alpha.softmax(-1)
        cells[kind] = derive_cell(w, model.op_names, model.steps, k, exclude)
    concat = tuple(range(2 + model.steps - model.multiplier, 2 + model.steps))
    return Genotype(cells["normal"], concat, cells["reduce"], concat)


def build_from_supernet(genotype: Genotype, model: Supernet) -> DiscreteNetwork:
    """The discrete network of ``genotype`` carrying ``model``'s weights.

    Stem, preprocessing, chosen edge ops and classifier are copied from the supernet (ops are
    non-affine and pooling is followed by BatchNorm when the supernet's is), so in the same mode
    its output equals ``model(x, weights=genotype.supernet_weights(model.op_names))``.

    Args:
        genotype: a genotype over ``model``'s ops with ``model.steps`` nodes.
        model: the supernet.

    Returns:
        The :class:`DiscreteNetwork`, on the supernet's device and dtype.
    """
    if not isinstance(model, Supernet):
        raise TypeError(f"model must be a Supernet, got {type(model).__name__}")
    if genotype.steps != model.steps:
        raise ValueError(
            f"genotype must have model.steps={model.steps} nodes, got {genotype.steps}"
        )
    for kind in ("normal", "reduce"):
        _, concat = genotype.cell(kind)
        expect = tuple(range(2 + model.steps - model.multiplier, 2 + model.steps))
        if concat != expect:
            raise ValueError(f"{kind}_concat must be {expect} to match the supernet, got {concat}")
    net = genotype.build(
        C=model.C,
        num_classes=model.num_classes,
        layers=model.layers,
        in_channels=model.in_channels,
        stem_multiplier=model.stem_multiplier,
        reductions=model.reductions,
        affine=False,
        pool_bn=model.pool_bn,
    )
    p = next(model.parameters())
    net.to(device=p.device, dtype=p.dtype)
    net.stem.load_state_dict(model.stem.state_dict())
    net.classifier.load_state_dict(model.classifier.state_dict())
    index = {e: k for k, e in enumerate(cell_edges(model.steps))}
    for dcell, scell in zip(net.cells, model.cells):
        if not isinstance(dcell, DiscreteCell) or not isinstance(scell, SearchCell):
            raise TypeError("unexpected cell types")  # pragma: no cover
        dcell.preprocess0.load_state_dict(scell.preprocess0.state_dict())
        dcell.preprocess1.load_state_dict(scell.preprocess1.state_dict())
        k = 0
        for i, node in enumerate(dcell.nodes):
            for op, j in node:
                edge = scell.edges[index[(i, j)]]
                if not isinstance(edge, MixedEdge):
                    raise TypeError("unexpected edge type")  # pragma: no cover
                source = edge.ops[model.op_names.index(op)]
                dcell.ops[k].load_state_dict(source.state_dict())
                k += 1
    net.train(model.training)
    return net


def plot_cell(genotype: Genotype, kind: str = "normal", ax: Any = None) -> Any:
    """Draw a cell: inputs ``c_{k-2}``, ``c_{k-1}`` on the left, nodes in order, the output on
    the right, every edge labelled with its op.

    Args:
        genotype: the genotype.
        kind: ``"normal"`` or ``"reduce"``.
        ax: a matplotlib axes, or ``None`` for a new figure.

    Returns:
        The matplotlib figure.
    """
    import matplotlib

    if ax is None:
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(2.2 * (genotype.steps + 2), 3.6))
    else:
        fig = ax.figure
    nodes, concat = genotype.cell(kind)
    n = len(nodes)
    pos: dict[int, tuple[float, float]] = {0: (0.0, 0.0), 1: (0.0, 2.0)}
    for i in range(n):
        pos[i + 2] = (1.0 + i, 1.0 + (0.6 if i % 2 else -0.6))
    out_pos = (float(n + 1), 1.0)
    labels = {0: "c_{k-2}", 1: "c_{k-1}", **{i + 2: str(i) for i in range(n)}}
    box = {"boxstyle": "round", "fc": "#dbe9f6", "ec": "#34495e"}
    for s, (x, y) in pos.items():
        ax.text(x, y, labels[s], ha="center", va="center", bbox=box, zorder=3)
    ax.text(*out_pos, "c_{k}", ha="center", va="center", bbox={**box, "fc": "#f6e3db"}, zorder=3)
    for i, node in enumerate(nodes):
        for op, j in node:
            (x0, y0), (x1, y1) = pos[j], pos[i + 2]
            ax.annotate(
                "",
                xy=(x1, y1),
                xytext=(x0, y0),
                arrowprops={"arrowstyle": "->", "color": "#555", "shrinkA": 12, "shrinkB": 12},
            )
            ax.text((x0 + x1) / 2, (y0 + y1) / 2, op, fontsize=7, ha="center", color="#a33")
    for s in concat:
        (x0, y0) = pos[s]
        ax.annotate(
            "",
            xy=out_pos,
            xytext=(x0, y0),
            arrowprops={"arrowstyle": "->", "color": "#bbb", "shrinkA": 12, "shrinkB": 12},
        )
    ax.set_xlim(-0.6, n + 1.6)
    ax.set_ylim(-0.6, 2.6)
    ax.set_title(f"{kind} cell")
    ax.axis("off")
    return fig
