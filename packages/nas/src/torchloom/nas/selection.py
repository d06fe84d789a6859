"""DARTS-PT: perturbation-based architecture selection (Wang et al., ICLR 2021).

The magnitude of ``α`` does not say how much an operation contributes to the supernet. DARTS-PT
instead reads the architecture out of a trained supernet by perturbing it:

1. **Operation selection.** While undecided edges remain, pick one at random; for each op on it,
   remove the op (zero its weight, the others unchanged) and measure the supernet's validation
   accuracy; keep the op whose removal hurts most (the lowest accuracy) and project the edge onto
   it (its weights become one-hot). Fine-tune the supernet's weights for a few steps.
2. **Topology selection.** For each intermediate node (in random order), remove each incoming
   edge in turn; keep the ``k`` edges (two in DARTS) whose removal hurts most and drop the
   others. Fine-tune after each node.

:class:`Projection` holds the decisions as masks over the supernet's edge weights, so the
supernet itself is never rebuilt; :func:`perturbation_selection` runs the whole procedure and
returns the :class:`~torchloom.nas.genotype.Genotype`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchloom.core.checks import check_int
from torchloom.nas.genotype import Genotype
from torchloom.nas.search import Batch
from torchloom.nas.space import cell_edges
from torchloom.nas.supernet import CELL_TYPES, Supernet

__all__ = ["Projection", "SelectionRecord", "perturbation_selection", "supernet_score"]


class Projection:
    """Decisions of a DARTS-PT read-out, as masks over a supernet's edge weights.

    For each cell type: ``chosen[kind][e]`` is the op index of a decided edge (``-1`` if
    undecided) and ``kept[kind][e]`` whether the edge survives topology selection.

    Args:
        model: the supernet (its ``α`` and mixing rule give the undecided edges' weights).
    """

    def __init__(self, model: Supernet) -> None:
        self.model = model
        E = model.num_edges
        self.chosen: dict[str, list[int]] = {k: [-1] * E for k in CELL_TYPES}
        self.kept: dict[str, list[bool]] = {k: [True] * E for k in CELL_TYPES}

    def undecided(self) -> list[tuple[str, int]]:
        """Edges whose op is not chosen yet.

        Returns:
            ``(kind, edge)`` pairs.
        """
        return [(k, e) for k in CELL_TYPES for e, c in enumerate(self.chosen[k]) if c < 0]

    def weights(
        self,
        drop_op: tuple[str, int, int] | None = None,
        drop_edge: tuple[str, int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Edge weights of the projected supernet, optionally with one op or edge removed.

        Undecided edges use the mixing rule on ``α``; decided edges are one-hot on their op;
        dropped edges are zero.

        Args:
            drop_op: ``(kind, edge, op)`` whose weight is zeroed (the op perturbation).
            drop_edge: ``(kind, edge)`` whose weights are zeroed (the edge perturbation).

        Returns:
            ``{"normal": (E, N), "reduce": (E, N)}``.
        """
        mixes = self.model.mixtures()
        out: dict[str, torch.Tensor] = {}
        for kind in CELL_TYPES:
            w = mixes[kind].weights.detach().clone()
            for e, c in enumerate(self.chosen[kind]):
                if c >= 0:
                    w[e] = 0.0
                    w[e, c] = 1.0
                if not self.kept[kind][e]:
                    w[e] = 0.0
            if drop_op is not None and drop_op[0] == kind:
                w[drop_op[1], drop_op[2]] = 0.0
            if drop_edge is not None and drop_edge[0] == kind:
                w[drop_edge[1]] = 0.0
            out[kind] = w
        return out

    def genotype(self, k: int = 2) -> Genotype:
        """The genotype of the decisions (every edge decided, ``k`` kept per node).

        Args:
            k: inputs per node.

        Returns:
            The genotype.
        """
        m = self.model
        cells = {}
        for kind in CELL_TYPES:
            nodes: list[list[tuple[str, int]]] = [[] for _ in range(m.steps)]
            for e, (i, j) in enumerate(cell_edges(m.steps)):
                if self.kept[kind][e]:
                    c = self.chosen[kind][e]
                    if c < 0:
                        raise RuntimeError(f"edge {e} of the {kind} cell is undecided")
                    nodes[i].append((m.op_names[c], j))
            for i, node in enumerate(nodes):
                if len(node) > k:
                    raise RuntimeError(f"node {i} of the {kind} cell keeps {len(node)} > {k} edges")
            cells[kind] = nodes
        concat = tuple(range(2 + m.steps - m.multiplier, 2 + m.steps))
        return Genotype(cells["normal"], concat, cells["reduce"], concat)  # type: ignore[arg-type]


@torch.no_grad()
def supernet_score(
    model: Supernet, batches: Sequence[Batch], weights: dict[str, torch.Tensor]
) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of the supernet (eval mode) with given edge weights.

    Args:
        model: the supernet.
        batches: validation batches.
        weights: per cell type ``(E, N)`` weights.

    Returns:
        ``(accuracy, loss)``.
    """
    was = model.training
    model.eval()
    correct = total = 0
    loss = 0.0
    for x, y in batches:
        logits = model(x, weights=weights)
        correct += int((logits.argmax(-1) == y).sum())
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        total += y.numel()
    model.train(was)
    return correct / total, loss / total


def _worse(score: tuple[float, float]) -> tuple[float, float]:
    # sort key: lower accuracy first, then higher loss (ties on small validation sets)
    return (score[0], -score[1])


@dataclass
class SelectionRecord:
    """What :func:`perturbation_selection` decided, in order.

    Attributes:
        ops: ``(kind, edge, op_name, {op_name: accuracy after removing it})`` per projection.
        edges: ``(kind, node, kept_inputs, {input: accuracy after removing it})`` per node.
    """

    ops: list[tuple[str, int, str, dict[str, float]]] = field(default_factory=list)
    edges: list[tuple[str, int, list[int], dict[int, float]]] = field(default_factory=list)


def _cycle(batches: Iterable[Batch]) -> Iterator[Batch]:
    while True:
        yield from batches


def perturbation_selection(
    model: Supernet,
    val: Sequence[Batch],
    train: Iterable[Batch] | None = None,
    tune_steps: int = 10,
    lr: float = 0.01,
    momentum: float = 0.9,
    k: int = 2,
    exclude: Sequence[str] = ("none",),
    generator: torch.Generator | None = None,
    progress: Callable[..., Iterator[Any]] | None = None,
) -> tuple[Genotype, SelectionRecord]:
    """Perturbation-based operation and topology selection on a trained supernet.

    Args:
        model: the trained supernet; its weights are fine-tuned in place between projections
            (pass a copy to keep the original).
        val: validation batches for the perturbation scores.
        train: training batches for fine-tuning (cycled); ``None`` skips fine-tuning.
        tune_steps: SGD steps on the weights after each projection.
        lr: fine-tuning learning rate.
        momentum: fine-tuning momentum.
        k: inputs kept per node.
        exclude: ops never selected (DARTS-PT, like DARTS, never picks ``none``).
        generator: randomness for the edge and node order.
        progress: optional progress wrapper over the projections.

    Returns:
        ``(genotype, record)``.
    """
    if not isinstance(model, Supernet):
        raise TypeError(f"model must be a Supernet, got {type(model).__name__}")
    check_int(k, "k")
    check_int(tune_steps, "tune_steps", minimum=0)
    if len(val) == 0:
        raise ValueError("val must hold at least one batch")
    allowed = [o for o, n in enumerate(model.op_names) if n not in exclude]
    if not allowed:
        raise ValueError(f"every op is excluded: {list(model.op_names)} minus {list(exclude)}")
    proj = Projection(model)
    record = SelectionRecord()
    stream = _cycle(train) if train is not None else None
    opt = torch.optim.SGD(list(model.weight_parameters()), lr=lr, momentum=momentum)

    def tune() -> None:
        if stream is None or tune_steps == 0:
            return
        model.train()
        for _ in range(tune_steps):
            x, y = next(stream)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x, weights=proj.weights()), y)
            loss.backward()
            nn.utils.clip_grad_norm_(list(model.weight_parameters()), 5.0)
            opt.step()

    n_ops = len(proj.undecided())
    steps: Iterable[int] = range(n_ops)
    if progress is not None:
        steps = progress(steps, total=n_ops, description="select ops")
    for _ in steps:
        todo = proj.undecided()
        pick = int(torch.randint(len(todo), (1,), generator=generator))
        kind, e = todo[pick]
        scores = {
            o: supernet_score(model, val, proj.weights(drop_op=(kind, e, o))) for o in allowed
        }
        best = min(allowed, key=lambda o: _worse(scores[o]))
        proj.chosen[kind][e] = best
        record.ops.append(
            (kind, e, model.op_names[best], {model.op_names[o]: s[0] for o, s in scores.items()})
        )
        tune()

    edges = cell_edges(model.steps)
    nodes = [(kind, i) for kind in CELL_TYPES for i in range(model.steps) if i + 2 > k]
    order = torch.randperm(len(nodes), generator=generator).tolist()
    for idx in order:
        kind, i = nodes[idx]
        incoming = [e for e, (n, _) in enumerate(edges) if n == i]
        scores_e = {
            e: supernet_score(model, val, proj.weights(drop_edge=(kind, e))) for e in incoming
        }
        ranked = sorted(incoming, key=lambda e: _worse(scores_e[e]))
        keep = set(ranked[:k])
        for e in incoming:
            proj.kept[kind][e] = e in keep
        record.edges.append(
            (
                kind,
                i,
                sorted(edges[e][1] for e in keep),
                {edges[e][1]: s[0] for e, s in scores_e.items()},
            )
        )
        tune()
    return proj.genotype(k), record
