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
        differentiable: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Edge weights of the projected supernet, optionally with one op or edge removed.

        Undecided edges use the mixing rule on ``α``; decided edges are one-hot on their op;
        dropped edges are zero.

        Args:
            drop_op: ``(kind, edge, op)`` whose weight is zeroed (the op perturbation).
            drop_edge: ``(kind, edge)`` whose weights are zeroed (the edge perturbation).
            differentiable: keep the undecided edges' weights differentiable in ``α`` (for
                architecture steps during fine-tuning); detached otherwise.

        Returns:
            ``{"normal": (E, N), "reduce": (E, N)}``.
        """
        mixes = self.model.mixtures()
        out: dict[str, torch.Tensor] = {}
        for kind in CELL_TYPES:
            soft = mixes[kind].weights
            keep = torch.ones_like(soft)
            fixed = torch.zeros_like(soft)
            for e, c in enumerate(self.chosen[kind]):
                if c >= 0:
                    keep[e] = 0.0
                    fixed[e, c] = 1.0
                if not self.kept[kind][e]:
                    keep[e] = 0.0
                    fixed[e] = 0.0
            if drop_op is not None and drop_op[0] == kind:
                keep[drop_op[1], drop_op[2]] = 0.0
                fixed[drop_op[1], drop_op[2]] = 0.0
            if drop_edge is not None and drop_edge[0] == kind:
                keep[drop_edge[1]] = 0.0
                fixed[drop_edge[1]] = 0.0
            w = (soft if differentiable else soft.detach()) * keep + fixed
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


class _FrozenBuffers:
    """Restore a module's buffers (BatchNorm running statistics) on exit."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.saved: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __enter__(self) -> None:
        self.saved = [(b, b.detach().clone()) for b in self.model.buffers()]

    def __exit__(self, *exc: object) -> None:
        with torch.no_grad():
            for b, v in self.saved:
                b.copy_(v)


@torch.no_grad()
def supernet_score(
    model: Supernet,
    batches: Sequence[Batch],
    weights: dict[str, torch.Tensor],
    batch_stats: bool = False,
) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of the supernet with given edge weights.

    Args:
        model: the supernet.
        batches: validation batches.
        weights: per cell type ``(E, N)`` weights.
        batch_stats: normalise with each batch's own BatchNorm statistics (train-mode
            BatchNorm, running statistics left untouched), as DARTS-PT's reference code scores
            perturbed supernets; ``False`` uses the running statistics (eval mode), which were
            gathered under the unperturbed mixture.

    Returns:
        ``(accuracy, loss)``.
    """
    was = model.training
    model.train(batch_stats)
    correct = total = 0
    loss = 0.0
    with _FrozenBuffers(model):
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
    weight_decay: float = 3e-4,
    arch_lr: float = 0.0,
    k: int = 2,
    exclude: Sequence[str] = ("none",),
    batch_stats: bool = True,
    generator: torch.Generator | None = None,
    progress: Callable[..., Iterator[Any]] | None = None,
) -> tuple[Genotype, SelectionRecord]:
    """Perturbation-based operation and topology selection on a trained supernet.

    Follows the reference implementation of Wang et al. (2021): each *round* projects one
    randomly chosen undecided edge of the normal cell and one of the reduction cell (the op
    whose removal lowers the validation accuracy most is kept), then fine-tunes the supernet
    for ``tune_steps`` steps; once every op is chosen, each round takes one random node per cell
    type with more than ``k`` inputs and removes, one at a time, the input whose removal hurts
    least until ``k`` remain, then fine-tunes again. Fine-tuning is SGD on the weights (cosine
    from ``lr`` over all rounds; the reference uses a tenth of the search learning rate) and,
    with ``arch_lr > 0``, Adam on the ``α`` of the still undecided edges on the validation
    batches, as the reference keeps the architecture step running.

    Args:
        model: the trained supernet; its weights (and ``α`` with ``arch_lr``) are fine-tuned in
            place between projections (pass a copy to keep the original).
        val: validation batches for the perturbation scores (and the architecture steps).
        train: training batches for fine-tuning (cycled); ``None`` skips fine-tuning.
        tune_steps: fine-tuning steps after each round.
        lr: initial fine-tuning learning rate of the weights.
        momentum: fine-tuning momentum.
        weight_decay: fine-tuning weight decay.
        arch_lr: Adam learning rate of ``α`` during fine-tuning (0: ``α`` frozen).
        k: inputs kept per node.
        exclude: ops never selected (DARTS-PT, like DARTS, never picks ``none``).
        batch_stats: score perturbed supernets with batch statistics (see
            :func:`supernet_score`; the reference code's choice).
        generator: randomness for the edge and node order.
        progress: optional progress wrapper over the rounds.

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
    val_stream = _cycle(val)
    edges = cell_edges(model.steps)
    todo_nodes = {
        kind: [i for i in range(model.steps) if sum(1 for n, _ in edges if n == i) > k]
        for kind in CELL_TYPES
    }
    n_rounds = model.num_edges + max(len(v) for v in todo_nodes.values())
    params = list(model.weight_parameters())
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    total_steps = max(tune_steps * n_rounds, 1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total_steps)
    a_opt = (
        torch.optim.Adam(model.arch_parameters(), lr=arch_lr, betas=(0.5, 0.999))
        if arch_lr > 0
        else None
    )

    def score(w: dict[str, torch.Tensor]) -> tuple[float, float]:
        return supernet_score(model, val, w, batch_stats=batch_stats)

    def tune() -> None:
        if stream is None or tune_steps == 0:
            return
        model.train()
        for _ in range(tune_steps):
            if a_opt is not None and proj.undecided():
                vx, vy = next(val_stream)
                a_opt.zero_grad(set_to_none=True)
                arch_loss = F.cross_entropy(
                    model(vx, weights=proj.weights(differentiable=True)), vy
                )
                arch_loss.backward(inputs=model.arch_parameters())
                a_opt.step()
            x, y = next(stream)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x, weights=proj.weights()), y)
            loss.backward(inputs=params)
            nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()

    rounds: Iterable[int] = range(n_rounds)
    if progress is not None:
        rounds = progress(rounds, total=n_rounds, description="select")
    for _ in rounds:
        if proj.undecided():
            for kind in CELL_TYPES:
                open_edges = [e for kk, e in proj.undecided() if kk == kind]
                if not open_edges:
                    continue
                e = open_edges[int(torch.randint(len(open_edges), (1,), generator=generator))]
                scores = {o: score(proj.weights(drop_op=(kind, e, o))) for o in allowed}
                best = min(allowed, key=lambda o: _worse(scores[o]))
                proj.chosen[kind][e] = best
                record.ops.append(
                    (
                        kind,
                        e,
                        model.op_names[best],
                        {model.op_names[o]: sc[0] for o, sc in scores.items()},
                    )
                )
        else:
            for kind in CELL_TYPES:
                if not todo_nodes[kind]:
                    continue
                pick = int(torch.randint(len(todo_nodes[kind]), (1,), generator=generator))
                i = todo_nodes[kind].pop(pick)
                incoming = [e for e, (n, _) in enumerate(edges) if n == i]
                first: dict[int, float] = {}
                while len(incoming) > k:
                    scores_e = {e: score(proj.weights(drop_edge=(kind, e))) for e in incoming}
                    if not first:
                        first = {edges[e][1]: sc[0] for e, sc in scores_e.items()}
                    # the input whose removal hurts least (highest accuracy) goes
                    worst = max(incoming, key=lambda e: _worse(scores_e[e]))
                    proj.kept[kind][worst] = False
                    incoming.remove(worst)
                record.edges.append((kind, i, sorted(edges[e][1] for e in incoming), first))
        tune()
    return proj.genotype(k), record
