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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from torchloom.core.data import cifar10, digits
from torchloom.core.recipes import Claim, Result, RunContext, recipe
from torchloom.nas.darts import DARTS
from torchloom.nas.genotype import Genotype, derive_genotype
from torchloom.nas.rarts import RARTS
from torchloom.nas.sd_darts import SDDARTS, dominant_hessian_eigenvalue
from torchloom.nas.search import Batch, evaluate, search, train_network
from torchloom.nas.selection import perturbation_selection, supernet_score
from torchloom.nas.sharpdarts import SHARP_PRIMITIVES, SharpDARTS
from torchloom.nas.space import MaxWMixing, MixingRule
from torchloom.nas.supernet import Supernet

__all__: list[str] = ["cifar_batches", "rarts", "sd_darts", "selection", "sharpdarts"]

SEARCH_OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "dil_conv_3x3",
)
"""A reduced DARTS space that fits the CPU budget of the recipes."""

W_LR = 0.05
"""Weight learning rate of every search (method and baseline alike): twice DARTS's 0.025,
because the digits searches run few steps."""


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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


def _genotype_figure(ctx: RunContext, genotypes: dict[str, Genotype], name: str) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(len(genotypes), 2, figsize=(12, 3.2 * len(genotypes)), squeeze=False)
    for row, (label, g) in enumerate(genotypes.items()):
        for col, kind in enumerate(("normal", "reduce")):
            g.plot(kind, ax=axes[row][col])
            axes[row][col].set_title(f"{label}: {kind} cell")
    return ctx.savefig(fig, name)


def _bars(
    ctx: RunContext, values: Mapping[str, Sequence[float]], ylabel: str, name: str, title: str
) -> Path:
    plt = _plt()
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
    C, steps = 16, 2  # wide enough that compute, not Python, sets the step time
    epochs = ctx.pick(1, 4)
    retrain_C, retrain_epochs = 8, ctx.pick(0, 12)
    limit = ctx.pick(384, None)
    times: dict[str, list[float]] = {"DARTS-2nd": [], "RARTS": []}
    accs: dict[str, list[float]] = {"DARTS-2nd": [], "RARTS": []}
    genos: dict[str, Genotype] = {}
    for seed in seeds:
        task = DigitsTask(seed, 64, limit, ctx.device)
        for label in ("DARTS-2nd", "RARTS"):
            model = _supernet(C, steps, seed, ctx.device)
            if label == "RARTS":
                y_model = _supernet(max(C // 2, 2), steps, seed + 100, ctx.device)
                strategy: Any = RARTS(y_model, beta=1.0, lam=0.1, w_lr=W_LR)
            else:
                strategy = DARTS(order=2, w_lr=W_LR)
            res = search(
                strategy, model, task.search_train, task.search_val, epochs, progress=ctx.progress
            )
            times[label].append(res.seconds_per_step)
            genos[f"{label} (seed {seed})"] = res.genotype
            accs[label].append(
                _retrain(res.genotype, task, retrain_C, retrain_epochs, seed, ctx.device)
            )
            ctx.log(
                f"seed {seed} {label}: {res.seconds_per_step:.3f} s/step acc {accs[label][-1]:.3f}"
            )
    mean = {k: sum(v) / len(v) for k, v in accs.items()}
    speed = sum(times["DARTS-2nd"]) / sum(times["RARTS"])
    figs = [
        _bars(ctx, accs, "retrained test accuracy", "rarts_accuracy.png", "RARTS vs DARTS-2nd"),
        _bars(ctx, times, "seconds per search step", "rarts_step_time.png", "search step cost"),
        _genotype_figure(ctx, {k: v for k, v in genos.items() if "seed 0" in k}, "rarts_cells.png"),
    ]
    return Result(
        metrics={
            "speedup_vs_darts2": speed,
            "acc_rarts": mean["RARTS"],
            "acc_darts2": mean["DARTS-2nd"],
            "acc_gap_vs_darts2": mean["RARTS"] - mean["DARTS-2nd"],
        },
        figures=figs,
        tables={"genotypes": [{"name": k, **g.to_dict()} for k, g in genos.items()]},
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
    """DARTS-PT vs alpha-magnitude selection from the same DARTS supernet, same seeds."""
    seeds = ctx.pick([0], [0, 1])
    C, steps = ctx.pick(4, 8), 2
    epochs = ctx.pick(1, 8)
    retrain_epochs = ctx.pick(0, 12)
    limit = ctx.pick(128, None)
    tune = ctx.pick(1, 10)
    n_val = ctx.pick(1, 4)
    accs: dict[str, list[float]] = {"magnitude": [], "perturbation": []}
    inside: dict[str, list[float]] = {"magnitude": [], "perturbation": []}
    genos: dict[str, Genotype] = {}
    for seed in seeds:
        task = DigitsTask(seed, 64, limit, ctx.device)
        model = _supernet(C, steps, seed, ctx.device)
        search(
            DARTS(order=1, w_lr=W_LR),
            model,
            task.search_train,
            task.search_val,
            epochs,
            progress=ctx.progress,
        )
        g_mag = derive_genotype(model)
        trained = copy.deepcopy(model)
        g_pt, _ = perturbation_selection(
            model,
            task.search_val[:n_val],
            train=task.search_train,
            tune_steps=tune,
            generator=torch.Generator().manual_seed(seed),
            progress=ctx.progress,
        )
        for label, g in (("magnitude", g_mag), ("perturbation", g_pt)):
            # accuracy of the trained supernet restricted to the architecture (no retraining)
            w = {k: v.to(ctx.device) for k, v in g.supernet_weights(trained.op_names).items()}
            inside[label].append(supernet_score(trained, task.test, w)[0])
            accs[label].append(_retrain(g, task, 8, retrain_epochs, seed, ctx.device))
            genos[f"{label} (seed {seed})"] = g
            ctx.log(
                f"seed {seed} {label}: supernet {inside[label][-1]:.3f} "
                f"retrained {accs[label][-1]:.3f}"
            )
    mean = {k: sum(v) / len(v) for k, v in accs.items()}
    mean_in = {k: sum(v) / len(v) for k, v in inside.items()}
    figs = [
        _bars(
            ctx, accs, "retrained test accuracy", "selection_accuracy.png", "DARTS-PT vs magnitude"
        ),
        _bars(
            ctx, inside, "restricted supernet accuracy", "selection_supernet.png", "in the supernet"
        ),
        _genotype_figure(
            ctx, {k: v for k, v in genos.items() if "seed 0" in k}, "selection_cells.png"
        ),
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
        tables={"genotypes": [{"name": k, **g.to_dict()} for k, g in genos.items()]},
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
    accs: dict[str, list[float]] = {"DARTS": [], "sharpDARTS": []}
    sup: dict[str, list[float]] = {"DARTS": [], "sharpDARTS": []}
    genos: dict[str, Genotype] = {}
    lrs: dict[str, list[float]] = {}
    for seed in seeds:
        task = DigitsTask(seed, 64, limit, ctx.device)
        for label in ("DARTS", "sharpDARTS"):
            if label == "DARTS":
                model = _supernet(C, steps, seed, ctx.device)
                strategy: Any = DARTS(order=1, w_lr=W_LR)
            else:
                model = _supernet(
                    C, steps, seed, ctx.device, ops=SHARP_PRIMITIVES, mixing=MaxWMixing()
                )
                strategy = SharpDARTS(power=10.0, w_lr=W_LR)
            res = search(
                strategy, model, task.search_train, task.search_val, epochs, progress=ctx.progress
            )
            lrs[label] = [strategy.lr_at(e) for e in range(epochs)]
            genos[f"{label} (seed {seed})"] = res.genotype
            sup[label].append(evaluate(model, task.test))
            accs[label].append(_retrain(res.genotype, task, 8, retrain_epochs, seed, ctx.device))
            ctx.log(
                f"seed {seed} {label}: supernet {sup[label][-1]:.3f} "
                f"retrained {accs[label][-1]:.3f}"
            )
    mean = {k: sum(v) / len(v) for k, v in accs.items()}
    mean_sup = {k: sum(v) / len(v) for k, v in sup.items()}
    plt = _plt()
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
            ctx, accs, "retrained test accuracy", "sharpdarts_accuracy.png", "sharpDARTS vs DARTS"
        ),
        _genotype_figure(
            ctx, {k: v for k, v in genos.items() if "seed 0" in k}, "sharpdarts_cells.png"
        ),
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
        tables={"genotypes": [{"name": k, **g.to_dict()} for k, g in genos.items()]},
    )


# --------------------------------------------------------------------------- SD-DARTS


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
    retrained accuracy, same seeds."""
    seeds = ctx.pick([0], [0, 1])
    C, steps = ctx.pick(4, 8), 2
    epochs = ctx.pick(2, 8)
    retrain_epochs = ctx.pick(0, 12)
    limit = ctx.pick(128, None)
    labels = ("DARTS", "SD-DARTS")
    accs: dict[str, list[float]] = {k: [] for k in labels}
    sharp: dict[str, list[float]] = {k: [] for k in labels}
    gap: dict[str, list[float]] = {k: [] for k in labels}
    genos: dict[str, Genotype] = {}
    for seed in seeds:
        task = DigitsTask(seed, 64, limit, ctx.device)
        for label in labels:
            model = _supernet(C, steps, seed, ctx.device)
            strategy: Any = (
                DARTS(order=1, w_lr=W_LR)
                if label == "DARTS"
                else SDDARTS(
                    num_teachers=2, snapshot_every=ctx.pick(1, 5), distill_weight=1.0, w_lr=W_LR
                )
            )
            res = search(
                strategy, model, task.search_train, task.search_val, epochs, progress=ctx.progress
            )
            g = res.genotype
            genos[f"{label} (seed {seed})"] = g
            sharp[label].append(
                dominant_hessian_eigenvalue(
                    model,
                    task.search_val[:2],
                    iters=ctx.pick(5, 20),
                    generator=torch.Generator().manual_seed(seed),
                )
            )
            w = {k: v.to(ctx.device) for k, v in g.supernet_weights(model.op_names).items()}
            gap[label].append(evaluate(model, task.test) - supernet_score(model, task.test, w)[0])
            accs[label].append(_retrain(g, task, 8, retrain_epochs, seed, ctx.device))
            ctx.log(
                f"seed {seed} {label}: sharpness {sharp[label][-1]:.4g} "
                f"gap {gap[label][-1]:.3f} retrained {accs[label][-1]:.3f}"
            )
    mean = {k: sum(v) / len(v) for k, v in accs.items()}
    m_sharp = {k: sum(v) / len(v) for k, v in sharp.items()}
    m_gap = {k: sum(v) / len(v) for k, v in gap.items()}
    figs = [
        _bars(
            ctx,
            sharp,
            "dominant eigenvalue of Hessian (alpha)",
            "sd_darts_sharpness.png",
            "sharpness",
        ),
        _bars(ctx, gap, "supernet acc - discretised acc", "sd_darts_gap.png", "discretisation gap"),
        _bars(ctx, accs, "retrained test accuracy", "sd_darts_accuracy.png", "SD-DARTS vs DARTS"),
    ]
    return Result(
        metrics={
            "sharpness_darts": m_sharp["DARTS"],
            "sharpness_sd_darts": m_sharp["SD-DARTS"],
            "sharpness_ratio": m_sharp["SD-DARTS"] / m_sharp["DARTS"],
            "gap_darts": m_gap["DARTS"],
            "gap_sd_darts": m_gap["SD-DARTS"],
            "gap_reduction": m_gap["DARTS"] - m_gap["SD-DARTS"],
            "acc_darts": mean["DARTS"],
            "acc_sd_darts": mean["SD-DARTS"],
            "acc_gap_vs_darts": mean["SD-DARTS"] - mean["DARTS"],
        },
        figures=figs,
        tables={"genotypes": [{"name": k, **g.to_dict()} for k, g in genos.items()]},
    )
