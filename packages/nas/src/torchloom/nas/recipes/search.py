"""Recipes: the DARTS family on cells (RARTS, DARTS-PT selection, sharpDARTS, SD-DARTS).

Every recipe searches on scikit-learn's 8×8 digits (embedded, see
:func:`torchloom.core.data.digits`): the training split is cut in two halves, one for the
weights and one for the architecture (DARTS's data split), and each derived genotype is then
retrained from scratch on the whole training split and scored on the held-out test split.
Method and baseline run side by side in the same recipe, with the same seeds. Users with
CIFAR-10 on disk can run the same functions on :func:`cifar_batches` (``in_channels=3``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from torchloom.core.data import cifar10, digits
from torchloom.core.recipes import Claim, Result, RunContext, pyplot, recipe
from torchloom.nas.darts import DARTS
from torchloom.nas.genotype import Genotype, derive_genotype
from torchloom.nas.rarts import RARTS
from torchloom.nas.sd_darts import SDDARTS, dominant_hessian_eigenvalue
from torchloom.nas.search import Batch, SearchResult, evaluate, search, train_network
from torchloom.nas.selection import perturbation_selection, supernet_score
from torchloom.nas.sharpdarts import SHARP_PRIMITIVES, SharpDARTS
from torchloom.nas.space import MaxWMixing, MixingRule
from torchloom.nas.supernet import Supernet

__all__: list[str] = ["arch_lr", "cifar_batches", "rarts", "sd_darts", "selection", "sharpdarts"]

SEARCH_OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "dil_conv_3x3",
)
"""A reduced DARTS space that fits the CPU budget of the recipes."""

S2_OPS: tuple[str, ...] = ("skip_connect", "sep_conv_3x3")
"""RobustDARTS's space S2 (Zela et al. 2020), on which DARTS-PT is evaluated (Wang et al.
2021, Tab. 4): DARTS's failure mode — skip connections taking over as the search runs long —
in its plainest form."""

DARTS_ARCH_DISPLACEMENT = 3e-4 * 50 * 196
"""DARTS's architecture step budget on CIFAR-10: Adam at ``3e-4`` for 50 epochs of 196 steps
(≈ 2.9, the farthest a logit can move). The digits searches run a few hundred steps, so
``arch_lr`` below spreads the same budget over them (at ``3e-4`` the logits of a digits
search move less than 0.03: ``α`` stays at its initial noise and every read-out of it is
random)."""


def arch_lr(steps: int) -> float:
    """Adam learning rate of ``α`` that gives a search of ``steps`` architecture steps DARTS's
    CIFAR-10 budget (:data:`DARTS_ARCH_DISPLACEMENT`).

    Args:
        steps: architecture steps of the search.

    Returns:
        The learning rate.
    """
    return DARTS_ARCH_DISPLACEMENT / max(steps, 1)


W_LR = 0.05
"""Weight learning rate of every search (method and baseline alike): twice DARTS's 0.025,
because the digits searches run few steps."""


def _batches(x: torch.Tensor, y: torch.Tensor, size: int, seed: int) -> list[Batch]:
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    return [(x[perm[i : i + size]], y[perm[i : i + size]]) for i in range(0, x.shape[0], size)]


class DigitsTask:
    """Digits split for search (weights half, architecture half), retraining and test.

    Args:
        seed: split and shuffling seed.
        batch_size: batch size.
        limit: keep at most this many training images (quick mode).
        device: where the tensors live.
    """

    def __init__(
        self, seed: int, batch_size: int, limit: int | None = None, device: Any = "cpu"
    ) -> None:
        s = digits(seed=seed).to(device)
        xt, yt = s.x_train, s.y_train
        if limit is not None:
            xt, yt = xt[:limit], yt[:limit]
        half = xt.shape[0] // 2
        self.search_train = _batches(xt[:half], yt[:half], batch_size, seed)
        self.search_val = _batches(xt[half:], yt[half:], batch_size, seed + 1)
        self.train = _batches(xt, yt, batch_size, seed + 2)
        self.test = _batches(s.x_test, s.y_test, 256, seed)
        self.in_channels = 1


def cifar_batches(root: str | Path, batch_size: int = 64, seed: int = 0) -> DigitsTask:
    """The same task layout on CIFAR-10 read from ``root`` (no download; for users with data).

    Args:
        root: folder with CIFAR-10's python pickles.
        batch_size: batch size.
        seed: shuffling seed.

    Returns:
        A task object with ``search_train``, ``search_val``, ``train``, ``test`` batch lists.
    """
    task = DigitsTask.__new__(DigitsTask)
    x, y = cifar10(root, train=True)
    xte, yte = cifar10(root, train=False)
    half = x.shape[0] // 2
    task.search_train = _batches(x[:half], y[:half], batch_size, seed)
    task.search_val = _batches(x[half:], y[half:], batch_size, seed + 1)
    task.train = _batches(x, y, batch_size, seed + 2)
    task.test = _batches(xte, yte, 256, seed)
    task.in_channels = 3
    return task


def _supernet(
    C: int,
    steps: int,
    seed: int,
    device: Any,
    in_channels: int = 1,
    ops: Sequence[str] = SEARCH_OPS,
    mixing: MixingRule | None = None,
) -> Supernet:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    return Supernet(
        C=C, layers=3, steps=steps, ops=ops, in_channels=in_channels, generator=g, mixing=mixing
    ).to(device)


def _retrain(
    genotype: Genotype, task: DigitsTask, C: int, epochs: int, seed: int, device: Any
) -> float:
    if epochs == 0:
        return float("nan")  # quick mode: no retraining
    torch.manual_seed(seed)
    net = genotype.build(C=C, layers=3, in_channels=task.in_channels).to(device)
    train_network(net, task.train, epochs, lr=0.05)
    return evaluate(net, task.test)


class _Tally:
    """Measured values per metric and method over seeds, and the genotypes, of one recipe.

    Args:
        labels: the methods compared side by side.
    """

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)
        self.values: dict[str, dict[str, list[float]]] = {}
        self.genotypes: dict[str, Genotype] = {}

    def add(self, metric: str, label: str, value: float) -> None:
        self.values.setdefault(metric, {k: [] for k in self.labels})[label].append(value)

    def lists(self, metric: str) -> dict[str, list[float]]:
        return self.values[metric]

    def mean(self, metric: str) -> dict[str, float]:
        return {k: sum(v) / len(v) for k, v in self.values[metric].items()}

    def seed0(self) -> dict[str, Genotype]:
        return {k: v for k, v in self.genotypes.items() if "seed 0" in k}

    def table(self) -> list[dict[str, Any]]:
        return [{"name": k, **g.to_dict()} for k, g in self.genotypes.items()]


def _run_search(
    ctx: RunContext, strategy: Any, model: Supernet, task: DigitsTask, epochs: int
) -> SearchResult[Genotype]:
    """The search phase of every recipe: weights on one half, architecture on the other."""
    return search(
        strategy, model, task.search_train, task.search_val, epochs, progress=ctx.progress
    )


def _score_genotype(
    ctx: RunContext,
    tally: _Tally,
    label: str,
    seed: int,
    genotype: Genotype,
    task: DigitsTask,
    retrain_epochs: int,
) -> float:
    """The evaluation phase: record the genotype, retrain it from scratch, test it."""
    tally.genotypes[f"{label} (seed {seed})"] = genotype
    acc = _retrain(genotype, task, 8, retrain_epochs, seed, ctx.device)
    tally.add("acc", label, acc)
    return acc


def _search_and_score(
    ctx: RunContext,
    tally: _Tally,
    label: str,
    seed: int,
    strategy: Any,
    model: Supernet,
    task: DigitsTask,
    epochs: int,
    retrain_epochs: int,
) -> SearchResult[Genotype]:
    """Search → derive → retrain → test, shared by every method of every recipe here."""
    res = _run_search(ctx, strategy, model, task, epochs)
    _score_genotype(ctx, tally, label, seed, res.genotype, task, retrain_epochs)
    return res


def _genotype_figure(ctx: RunContext, genotypes: dict[str, Genotype], name: str) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(len(genotypes), 2, figsize=(12, 3.2 * len(genotypes)), squeeze=False)
    for row, (label, g) in enumerate(genotypes.items()):
        for col, kind in enumerate(("normal", "reduce")):
            g.plot(kind, ax=axes[row][col])
            axes[row][col].set_title(f"{label}: {kind} cell")
    return ctx.savefig(fig, name)


def _bars(
    ctx: RunContext, values: Mapping[str, Sequence[float]], ylabel: str, name: str, title: str
) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    labels = list(values)
    values = {k: [x for x in v if x == x] for k, v in values.items()}  # drop NaN (not measured)
    if not any(values.values()):
        ax.text(0.5, 0.5, "not measured in quick mode", ha="center", transform=ax.transAxes)
        return ctx.savefig(fig, name)
    means = [sum(v) / len(v) if v else 0.0 for v in values.values()]
    ax.bar(labels, means, color=["#4c72b0", "#dd8452", "#55a868", "#c44e52"][: len(labels)])
    for i, v in enumerate(values.values()):
        ax.scatter([i] * len(v), v, color="k", s=12, zorder=3)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return ctx.savefig(fig, name)


# --------------------------------------------------------------------------- RARTS


@recipe(
    name="nas.rarts",
    papers=(11,),
    claims=[
        Claim(
            "speedup_vs_darts2",
            ">=",
            1.5,
            paper="RARTS: 60% lower search cost than second-order DARTS on CIFAR-10 (Tab. 1)",
            # the quick supernet (C=8, one batch) is so small that Python overhead, the same
            # for y at any width, sets the step time: the ratio is a full-scale claim
            quick=False,
        ),
        Claim(
            "acc_gap_vs_darts2",
            ">=",
            -0.01,
            paper="RARTS 2.65% vs DARTS-2nd 2.76% CIFAR-10 test error (Tab. 1): not lower",
            quick=False,
        ),
    ],
)
def rarts(ctx: RunContext) -> Result:
    """RARTS vs second-order DARTS: search step time and retrained accuracy, same seeds."""
    seeds = ctx.pick([0], [0, 1])
    C, steps = ctx.pick(8, 16), 2  # full: wide enough that compute, not Python, sets step time
    epochs = ctx.pick(1, 4)
    retrain_epochs = ctx.pick(0, 12)
    limit = ctx.pick(128, None)
    tally = _Tally(("DARTS-2nd", "RARTS"))
    for seed in seeds:
        task = DigitsTask(seed, 64, limit, ctx.device)
        for label in tally.labels:
            model = _supernet(C, steps, seed, ctx.device)
            if label == "RARTS":
                y_model = _supernet(max(C // 2, 2), steps, seed + 100, ctx.device)
                strategy: Any = RARTS(y_model, beta=1.0, lam=0.1, w_lr=W_LR)
            else:
                strategy = DARTS(order=2, w_lr=W_LR)
            res = _search_and_score(
                ctx, tally, label, seed, strategy, model, task, epochs, retrain_epochs
            )
            tally.add("time", label, res.seconds_per_step)
            ctx.log(
                f"seed {seed} {label}: {res.seconds_per_step:.3f} s/step "
                f"acc {tally.lists('acc')[label][-1]:.3f}"
            )
    mean = tally.mean("acc")
    times = tally.lists("time")
    speed = sum(times["DARTS-2nd"]) / sum(times["RARTS"])
    figs = [
        _bars(
            ctx,
            tally.lists("acc"),
            "retrained test accuracy",
            "rarts_accuracy.png",
            "RARTS vs DARTS-2nd",
        ),
        _bars(ctx, times, "seconds per search step", "rarts_step_time.png", "search step cost"),
        _genotype_figure(ctx, tally.seed0(), "rarts_cells.png"),
    ]
    return Result(
        metrics={
            "speedup_vs_darts2": speed,
            "acc_rarts": mean["RARTS"],
            "acc_darts2": mean["DARTS-2nd"],
            "acc_gap_vs_darts2": mean["RARTS"] - mean["DARTS-2nd"],
        },
        figures=figs,
        tables={"genotypes": tally.table()},
    )


# --------------------------------------------------------------------------- DARTS-PT


@recipe(
    name="nas.selection",
    papers=(20,),
    claims=[
        Claim(
            "acc_gap_pt_vs_magnitude",
            ">=",
            0.0,
            paper="DARTS+PT 2.61% vs DARTS 3.00% CIFAR-10 test error from the same supernet "
            "(Tab. 2): perturbation selection is better",
            quick=False,
        ),
        Claim(
            "supernet_gap_pt_vs_magnitude",
            ">=",
            0.0,
            paper="the perturbation-selected architecture keeps more of the supernet's "
            "accuracy than the alpha-magnitude one (Sec. 3)",
            quick=False,
        ),
    ],
)
def selection(ctx: RunContext) -> Result:
    """DARTS-PT vs alpha-magnitude selection from the same DARTS supernet, same seeds.

    The regime where DARTS fails and DARTS-PT is meant to fix it: a long first-order search on
    RobustDARTS's space S2 (skip connection vs separable convolution, :data:`S2_OPS`), with
    DARTS's architecture step budget (:func:`arch_lr`), so that ``α`` moves and the skip
    connections' magnitudes grow as the weights converge. DARTS-PT as in the reference code:
    perturbed supernets scored on the whole validation half with batch statistics, one normal
    and one reduction edge projected per round, then the supernet fine-tuned for an epoch
    (weights at a tenth of the search learning rate, ``α`` of the undecided edges by Adam at
    the search's rate); magnitude selection is DARTS's argmax read-out. The restricted-supernet
    accuracy is scored with batch statistics too.
    """
    seeds = ctx.pick([0], [0, 1])
    C, steps = ctx.pick(4, 8), ctx.pick(1, 2)  # quick: two edges per cell, no topology step
    epochs = ctx.pick(1, 40)
    retrain_epochs = ctx.pick(0, 12)
    limit = ctx.pick(128, None)
    labels = ("magnitude", "perturbation")
    tally = _Tally(labels)
    for seed in seeds:
        task = DigitsTask(seed, 64, limit, ctx.device)
        model = _supernet(C, steps, seed, ctx.device, ops=S2_OPS)
        a_lr = arch_lr(epochs * len(task.search_train))
        _run_search(ctx, DARTS(order=1, w_lr=W_LR, a_lr=a_lr), model, task, epochs)
        g_mag = derive_genotype(model)
        trained = copy.deepcopy(model)
        g_pt, _ = perturbation_selection(
            model,
            task.search_val[: ctx.pick(1, len(task.search_val))],
            train=task.search_train,
            tune_steps=ctx.pick(1, len(task.search_train)),
            lr=W_LR / 10,
            arch_lr=a_lr,
            generator=torch.Generator().manual_seed(seed),
            progress=ctx.progress,
        )
        for label, g in zip(labels, (g_mag, g_pt)):
            # accuracy of the trained supernet restricted to the architecture (no retraining)
            w = {k: v.to(ctx.device) for k, v in g.supernet_weights(trained.op_names).items()}
            tally.add("inside", label, supernet_score(trained, task.test, w, batch_stats=True)[0])
            _score_genotype(ctx, tally, label, seed, g, task, retrain_epochs)
            ctx.log(
                f"seed {seed} {label}: supernet {tally.lists('inside')[label][-1]:.3f} "
                f"retrained {tally.lists('acc')[label][-1]:.3f}"
            )
    mean, mean_in = tally.mean("acc"), tally.mean("inside")
    figs = [
        _bars(
            ctx,
            tally.lists("acc"),
            "retrained test accuracy",
            "selection_accuracy.png",
            "DARTS-PT vs magnitude",
        ),
        _bars(
            ctx,
            tally.lists("inside"),
            "restricted supernet accuracy",
            "selection_supernet.png",
            "in the supernet",
        ),
        _genotype_figure(ctx, tally.seed0(), "selection_cells.png"),
    ]
    return Result(
        metrics={
            "acc_magnitude": mean["magnitude"],
            "acc_perturbation": mean["perturbation"],
            "acc_gap_pt_vs_magnitude": mean["perturbation"] - mean["magnitude"],
            "supernet_acc_magnitude": mean_in["magnitude"],
            "supernet_acc_perturbation": mean_in["perturbation"],
            "supernet_gap_pt_vs_magnitude": mean_in["perturbation"] - mean_in["magnitude"],
        },
        figures=figs,
        tables={"genotypes": tally.table()},
    )


# --------------------------------------------------------------------------- sharpDARTS


@recipe(
    name="nas.sharpdarts",
    papers=(9,),
    claims=[
        Claim(
            "acc_gap_vs_darts",
            ">=",
            -0.01,
            paper="sharpDARTS 1.93% vs DARTS 2.76% CIFAR-10 test error (Tab. 1): not worse",
            quick=False,
        ),
    ],
)
def sharpdarts(ctx: RunContext) -> Result:
    """sharpDARTS (CPA schedule, Max-W mixing, SharpSepConv space) vs DARTS, same seeds."""
    seeds = ctx.pick([0], [0, 1])
    C, steps = ctx.pick(4, 8), 2
    epochs = ctx.pick(1, 8)
    retrain_epochs = ctx.pick(0, 12)
    limit = ctx.pick(128, None)
    tally = _Tally(("DARTS", "sharpDARTS"))
    lrs: dict[str, list[float]] = {}
    for seed in seeds:
        task = DigitsTask(seed, 64, limit, ctx.device)
        for label in tally.labels:
            if label == "DARTS":
                model = _supernet(C, steps, seed, ctx.device)
                strategy: Any = DARTS(order=1, w_lr=W_LR)
            else:
                model = _supernet(
                    C, steps, seed, ctx.device, ops=SHARP_PRIMITIVES, mixing=MaxWMixing()
                )
                strategy = SharpDARTS(power=10.0, w_lr=W_LR)
            _search_and_score(
                ctx, tally, label, seed, strategy, model, task, epochs, retrain_epochs
            )
            lrs[label] = [strategy.lr_at(e) for e in range(epochs)]
            tally.add("supernet", label, evaluate(model, task.test))
            ctx.log(
                f"seed {seed} {label}: supernet {tally.lists('supernet')[label][-1]:.3f} "
                f"retrained {tally.lists('acc')[label][-1]:.3f}"
            )
    mean, mean_sup = tally.mean("acc"), tally.mean("supernet")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for label, values in lrs.items():
        ax.plot(range(1, epochs + 1), values, marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("weight learning rate")
    ax.set_title("Cosine Power Annealing (p=10) vs cosine")
    ax.legend()
    figs = [
        ctx.savefig(fig, "sharpdarts_schedule.png"),
        _bars(
            ctx,
            tally.lists("acc"),
            "retrained test accuracy",
            "sharpdarts_accuracy.png",
            "sharpDARTS vs DARTS",
        ),
        _genotype_figure(ctx, tally.seed0(), "sharpdarts_cells.png"),
    ]
    return Result(
        metrics={
            "acc_sharpdarts": mean["sharpDARTS"],
            "acc_darts": mean["DARTS"],
            "acc_gap_vs_darts": mean["sharpDARTS"] - mean["DARTS"],
            "supernet_acc_sharpdarts": mean_sup["sharpDARTS"],
            "supernet_acc_darts": mean_sup["DARTS"],
        },
        figures=figs,
        tables={"genotypes": tally.table()},
    )


# --------------------------------------------------------------------------- SD-DARTS


def _op_projection(weights: torch.Tensor, op_names: Sequence[str]) -> torch.Tensor:
    """``(E, N)`` mixture weights → one-hot on each edge's strongest op other than ``none``
    (every edge kept: the op half of DARTS's discretisation, without the edge pruning)."""
    masked = weights.clone()
    for i, name in enumerate(op_names):
        if name == "none":
            masked[:, i] = -1.0
    return torch.nn.functional.one_hot(masked.argmax(-1), weights.shape[-1]).to(weights)


class _EpochProbe:
    """Delegates to a search strategy and records ``probe(model)`` after every ``every``-th
    epoch (and after the last one): a measurement taken during the search, not part of it."""

    def __init__(
        self, inner: Any, probe: Callable[[Supernet], float], every: int, epochs: int
    ) -> None:
        self.inner, self.probe, self.every, self.epochs = inner, probe, every, epochs
        self.values: list[tuple[int, float]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def on_epoch_end(self, model: Supernet, epoch: int) -> dict[str, float]:
        metrics: dict[str, float] = self.inner.on_epoch_end(model, epoch)
        if (epoch + 1) % self.every == 0 or epoch + 1 == self.epochs:
            self.values.append((epoch + 1, self.probe(model)))
        return metrics


@recipe(
    name="nas.sd-darts",
    papers=(22,),
    claims=[
        Claim(
            "sharpness_ratio",
            "<=",
            1.0,
            paper="SD-DARTS lowers the dominant Hessian eigenvalue of the validation loss "
            "w.r.t. alpha compared with DARTS (Fig. 3)",
            quick=False,
        ),
        Claim(
            "gap_reduction",
            ">=",
            0.0,
            paper="SD-DARTS narrows the gap between the supernet and the discretised "
            "architecture (Sec. 4)",
            quick=False,
        ),
        Claim(
            "acc_gap_vs_darts",
            ">=",
            -0.01,
            paper="SD-DARTS 2.52% vs DARTS 3.00% CIFAR-10 test error (Tab. 1): not worse",
            quick=False,
        ),
    ],
)
def sd_darts(ctx: RunContext) -> Result:
    """SD-DARTS (voting-teacher self-distillation) vs DARTS: sharpness, discretisation gap and
    retrained accuracy, same seeds.

    Sharpness is the dominant eigenvalue of the Hessian of the validation loss in ``α`` at the
    end of the search, taken on the loss the architecture step optimises (train-mode BatchNorm);
    the discretisation gap is the supernet's test accuracy minus that of the supernet restricted
    to the derived genotype, both with batch statistics (reported beside it, ``op_gap_*``: the
    gap of the op projection alone, every edge kept). Both searches get DARTS's
    architecture step budget (:func:`arch_lr`), so that ``α`` leaves its initial noise and the
    discretisation reads out a decision; SD-DARTS distils in both of its steps.
    """
    seeds = ctx.pick([0], [0, 1, 2, 3])
    C, steps = ctx.pick(4, 8), 2
    epochs = ctx.pick(1, 8)
    retrain_epochs = ctx.pick(0, 12)
    limit = ctx.pick(128, None)
    tally = _Tally(("DARTS", "SD-DARTS"))
    curves: dict[str, list[list[tuple[int, float]]]] = {k: [] for k in tally.labels}
    for seed in seeds:
        task = DigitsTask(seed, 64, limit, ctx.device)
        a_lr = arch_lr(epochs * len(task.search_train))

        def sharpness(model: Supernet, seed: int = seed, task: DigitsTask = task) -> float:
            # RobustDARTS's measure: top eigenvalue of the Hessian of the validation loss
            # in alpha, train-mode BatchNorm, on a fixed set of validation batches
            return dominant_hessian_eigenvalue(
                model,
                task.search_val[:2],
                iters=ctx.pick(2, 20),
                generator=torch.Generator().manual_seed(seed),
                batch_stats=True,
                tol=1e-3,
                largest=True,
            )

        start = sharpness(_supernet(C, steps, seed, ctx.device))  # the shared initialisation
        tally.add("sharpness_start", "DARTS", start)
        tally.add("sharpness_start", "SD-DARTS", start)
        for label in tally.labels:
            model = _supernet(C, steps, seed, ctx.device)
            inner: Any = (
                DARTS(order=1, w_lr=W_LR, a_lr=a_lr)
                if label == "DARTS"
                else SDDARTS(
                    num_teachers=2, snapshot_every=1, distill_weight=1.0, w_lr=W_LR, a_lr=a_lr
                )
            )
            strategy = _EpochProbe(inner, sharpness, every=2, epochs=epochs)
            res = _search_and_score(
                ctx, tally, label, seed, strategy, model, task, epochs, retrain_epochs
            )
            curves[label].append([(0, start), *strategy.values])
            sharp = strategy.values[-1][1]  # at the end of the search
            tally.add("sharpness", label, sharp)
            tally.add("sharpness_peak", label, max(v for _, v in strategy.values))
            w = {
                k: v.to(ctx.device)
                for k, v in res.genotype.supernet_weights(model.op_names).items()
            }
            soft = {k: m.weights.detach() for k, m in model.mixtures().items()}
            test = task.test[: ctx.pick(1, len(task.test))]
            full = supernet_score(model, test, soft, batch_stats=True)[0]
            tally.add("gap", label, full - supernet_score(model, test, w, batch_stats=True)[0])
            # reported only: the op projection alone (every edge kept, argmax op at weight 1)
            ops = {k: _op_projection(v, model.op_names) for k, v in soft.items()}
            tally.add("op_gap", label, full - supernet_score(model, test, ops, batch_stats=True)[0])
            ctx.log(
                f"seed {seed} {label}: sharpness "
                + " ".join(f"e{e}={v:.4g}" for e, v in curves[label][-1])
                + f" gap {tally.lists('gap')[label][-1]:.3f}"
                f" op_gap {tally.lists('op_gap')[label][-1]:.3f}"
                f" retrained {tally.lists('acc')[label][-1]:.3f}"
            )
    mean, m_sharp, m_gap = tally.mean("acc"), tally.mean("sharpness"), tally.mean("gap")
    m_op = tally.mean("op_gap")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for label, color in zip(tally.labels, ("#4c72b0", "#dd8452")):
        for i, curve in enumerate(curves[label]):
            ax.plot(*zip(*curve), color=color, marker="o", label=label if i == 0 else None)
    ax.set_xlabel("search epoch")
    ax.set_ylabel("dominant eigenvalue of Hessian (alpha)")
    ax.set_title("sharpness during the search (one line per seed)")
    ax.legend()
    figs = [
        ctx.savefig(fig, "sd_darts_sharpness_curve.png"),
        _bars(
            ctx,
            tally.lists("sharpness"),
            "dominant eigenvalue of Hessian (alpha)",
            "sd_darts_sharpness.png",
            "sharpness",
        ),
        _bars(
            ctx,
            tally.lists("gap"),
            "supernet acc - discretised acc",
            "sd_darts_gap.png",
            "discretisation gap",
        ),
        _bars(
            ctx,
            tally.lists("acc"),
            "retrained test accuracy",
            "sd_darts_accuracy.png",
            "SD-DARTS vs DARTS",
        ),
    ]
    return Result(
        metrics={
            "sharpness_darts": m_sharp["DARTS"],
            "sharpness_sd_darts": m_sharp["SD-DARTS"],
            "sharpness_ratio": m_sharp["SD-DARTS"] / m_sharp["DARTS"],
            "sharpness_start": tally.mean("sharpness_start")["DARTS"],
            "sharpness_peak_darts": tally.mean("sharpness_peak")["DARTS"],
            "sharpness_peak_sd_darts": tally.mean("sharpness_peak")["SD-DARTS"],
            "seeds_sharpness_lower": float(
                sum(
                    a < b
                    for a, b in zip(
                        tally.lists("sharpness")["SD-DARTS"], tally.lists("sharpness")["DARTS"]
                    )
                )
            ),
            "seeds_gap_lower": float(
                sum(
                    a < b
                    for a, b in zip(tally.lists("gap")["SD-DARTS"], tally.lists("gap")["DARTS"])
                )
            ),
            "gap_darts": m_gap["DARTS"],
            "gap_sd_darts": m_gap["SD-DARTS"],
            "gap_reduction": m_gap["DARTS"] - m_gap["SD-DARTS"],
            "op_gap_darts": m_op["DARTS"],
            "op_gap_sd_darts": m_op["SD-DARTS"],
            "op_gap_reduction": m_op["DARTS"] - m_op["SD-DARTS"],
            "acc_darts": mean["DARTS"],
            "acc_sd_darts": mean["SD-DARTS"],
            "acc_gap_vs_darts": mean["SD-DARTS"] - mean["DARTS"],
        },
        figures=figs,
        tables={"genotypes": tally.table()},
    )
