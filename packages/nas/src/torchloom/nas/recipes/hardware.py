"""Recipes: hardware- and memory-aware search — ProxylessNAS (#18), FBNet (#47), DASS (#3)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchloom.core.bench import times
from torchloom.core.data import digits
from torchloom.core.memory import SavedTensorMeter
from torchloom.core.recipes import Claim, Result, RunContext, pyplot, recipe
from torchloom.nas.blocks import (
    PROXYLESS_OPS,
    ChainSupernet,
    build_chain,
    mbconv_ops,
    search_chain,
)
from torchloom.nas.darts import DARTS
from torchloom.nas.dass import (
    DASS,
    SPARSE_OPS,
    SparseConv2d,
    SparseLinear,
    finetune_pruned,
    magnitude_prune_,
    sparsity_of,
)
from torchloom.nas.fbnet import FBNet
from torchloom.nas.latency import measure_latency_table
from torchloom.nas.proxyless import ProxylessMixing, model_alphas
from torchloom.nas.search import Batch, GradientStrategy, evaluate, search, train_network
from torchloom.nas.space import PRIMITIVES, GumbelMixing
from torchloom.nas.supernet import Supernet

__all__: list[str] = ["dass", "fbnet", "proxyless_memory"]


def _batches(
    x: torch.Tensor, y: torch.Tensor, size: int, g: torch.Generator | None = None
) -> list[Batch]:
    idx = torch.randperm(x.shape[0], generator=g) if g is not None else torch.arange(x.shape[0])
    return [(x[idx[i : i + size]], y[idx[i : i + size]]) for i in range(0, x.shape[0], size)]


# --------------------------------------------------------------------------- memory


@recipe(
    name="nas.proxyless-memory",
    papers=(18,),
    claims=(
        Claim(
            "darts_growth",
            ">=",
            3.0,
            paper="DARTS-style mixing stores every path: memory O(N) in the candidates (Sec. 3.1)",
        ),
        Claim(
            "proxyless_growth",
            "<=",
            1.3,
            paper="binarised paths: memory O(1) in N, the level of training a compact model",
        ),
        Claim("proxyless_two_growth", "<=", 1.3, paper="two-path mode, same (Sec. 3.2.1)"),
    ),
)
def proxyless_memory(ctx: RunContext) -> Result:
    """Bytes saved for backward per architecture step as the candidate set grows 2 → 8.

    The layer-wise MBConv space with ``N`` candidates (kernels 3/5/7/9 × expansions 3/6, taken
    in that order so every even prefix has the same mean expansion), on digits batches: the
    softmax mixture (DARTS), the Gumbel mixture (FBNet) and ProxylessNAS's binary paths (one-
    and two-path) are run through one forward/backward each, and the peak of the bytes autograd
    holds (:class:`~torchloom.core.memory.SavedTensorMeter`, parameters and input excluded) is
    averaged over sampled steps.
    """
    data = digits(seed=ctx.seed)
    batch = ctx.pick(16, 64)
    steps = ctx.pick(2, 10)
    layers = ctx.pick(3, 6)
    candidates = mbconv_ops((3, 5, 7, 9), (3, 6))
    sizes = ctx.pick([2, 8], [2, 4, 6, 8])
    g = ctx.generator
    rules: dict[str, Callable[[], Callable[[torch.Tensor], Any]]] = {
        "darts": lambda: lambda a: a.softmax(-1),
        "fbnet": lambda: GumbelMixing(1.0, generator=g),
        "proxyless": lambda: ProxylessMixing("one", generator=g),
        "proxyless_two": lambda: ProxylessMixing("two", generator=g),
    }
    mem: dict[str, list[float]] = {k: [] for k in rules}
    for n in ctx.progress(sizes, description="candidates"):
        torch.manual_seed(ctx.seed)
        net = ChainSupernet(stem_channels=8, stages=((8, layers, 1),), ops=candidates[:n])
        net.to(ctx.device)
        for name, make in rules.items():
            rule = make()
            peaks = []
            for s in range(steps):
                lo = (s * batch) % (data.x_train.shape[0] - batch)
                x = data.x_train[lo : lo + batch].to(ctx.device)
                y = data.y_train[lo : lo + batch].to(ctx.device)
                with SavedTensorMeter(exclude=[*net.parameters(), x]) as meter:
                    loss = F.cross_entropy(net(x, rule(net.alpha)), y)
                    loss.backward(inputs=[net.alpha])
                peaks.append(meter.peak_bytes)
            mem[name].append(sum(peaks) / len(peaks))
    metrics = {
        "darts_growth": mem["darts"][-1] / mem["darts"][0],
        "fbnet_growth": mem["fbnet"][-1] / mem["fbnet"][0],
        "proxyless_growth": mem["proxyless"][-1] / mem["proxyless"][0],
        "proxyless_two_growth": mem["proxyless_two"][-1] / mem["proxyless_two"][0],
        "darts_over_proxyless_at_8": mem["darts"][-1] / mem["proxyless"][-1],
    }
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    styles = {"darts": "o-", "fbnet": "x--", "proxyless": "s-", "proxyless_two": "^--"}
    for name, vals in mem.items():
        ax.plot(sizes, [v / 2**20 for v in vals], styles[name], label=name)
    ax.set_xlabel("candidate ops per layer N")
    ax.set_ylabel("saved for backward (MiB)")
    ax.set_title("search-step training memory")
    ax.legend()
    rows = [{"N": n, **{k: mem[k][i] for k in mem}} for i, n in enumerate(sizes)]
    return Result(
        metrics=metrics,
        figures=[ctx.savefig(fig, "proxyless_memory.png")],
        tables={"saved_bytes": rows},
    )


# --------------------------------------------------------------------------- FBNet


class _FirstOrderSoftmax(GradientStrategy):
    """DARTS-style baseline on the chain space: softmax mixing, first-order arch step."""

    def arch_step(self, model: Any, train: Batch, val: Batch) -> dict[str, float]:
        alphas = list(model_alphas(model).values())
        loss = self.criterion(model(val[0]), val[1])
        opt = self._a_opt()
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=alphas)
        opt.step()
        return {"arch_loss": float(loss.detach())}


def _latency_of(nets: dict[str, nn.Module], x: torch.Tensor, repeat: int) -> dict[str, float]:
    """Latency (µs) of each network, measured like the lookup table (``core.bench.times``:
    round-robin, minimum over repeats; on the CPU single-threaded on the thread's CPU clock)."""
    for n in nets.values():
        n.eval()
    cpu = x.device.type == "cpu"
    with torch.no_grad():
        fns = {k: (lambda m=m: m(x)) for k, m in nets.items()}
        secs = times(
            fns,
            repeat,
            2,
            statistic="min",
            threads=1 if cpu else None,
            clock="cpu" if cpu else "wall",
        )
    return {k: t * 1e6 for k, t in secs.items()}


TARGET_INPUT: tuple[int, int, int, int] = (1, 3, 224, 224)
"""FBNet's target setting for the latency table: one 224×224 RGB image (the paper's input)."""


def _target_stages(stages: tuple[tuple[int, int, int], ...]) -> tuple[tuple[int, int, int], ...]:
    # FBNet's first two stages' widths (16, 24), same searchable layers and strides as the proxy
    widths = (16, 24, 32, 64, 96, 160)
    return tuple((widths[i], n, st) for i, (_, n, st) in enumerate(stages))


def _target_latency(
    stages: tuple[tuple[int, int, int], ...], ops: tuple[str, ...], repeats: int
) -> tuple[Any, float]:
    """Latency table (µs) of the chain at the target size, and its fixed layers' latency (ms).

    Measured once per run on this CPU (batch 1, one thread, as on the paper's phone core;
    minimum over repeats of the thread's CPU time, so the load of other processes on the shared
    machine does not enter the table); the fixed layers (stem, transitions, head) are the
    all-``zero`` child, whose searched layers are identities, measured the same way.
    """
    t_stages = _target_stages(stages)
    probe = ChainSupernet(in_channels=3, stem_channels=16, stages=t_stages, ops=ops)
    table = measure_latency_table(probe, TARGET_INPUT, "cpu", repeats=repeats, warmup=1)
    fixed = build_chain(
        ["zero"] * probe.num_layers, in_channels=3, stem_channels=16, stages=t_stages
    )
    x = torch.randn(TARGET_INPUT)
    fixed_ms = _latency_of({"fixed": fixed}, x, repeats)["fixed"] * 1e-3
    return table, fixed_ms


@recipe(
    name="nas.fbnet",
    papers=(47,),
    claims=(
        Claim(
            "latency_ratio",
            "<=",
            0.8,
            paper="FBNet trades accuracy for latency (FBNet-A/B/C, Tab. 2): the latency-aware "
            "search (loss CE·α·log(LAT)^β, the paper's α = 0.2, β = 0.6, LAT in ms of the "
            "target network from its lookup table) finds a faster target network than the "
            "accuracy-only one (target: 80% of its latency)",
            quick=False,
        ),
        Claim(
            "accuracy_gap",
            "<=",
            0.05,
            paper="at comparable accuracy (FBNet-B vs MobileNetV2-1.0: +2.0% top-1, lower latency)",
            quick=False,
        ),
    ),
)
def fbnet(ctx: RunContext) -> Result:
    """FBNet vs a DARTS-style (softmax, accuracy-only) search on digits, same space and data.

    As in the paper, the latency lookup table describes the *target* network on the target
    device while the search trains a proxy: the table is measured on this CPU for every
    candidate of every layer of the same chain at FBNet's target size (one 224×224 RGB image,
    stage widths 16 and 24, batch 1), and the fixed layers' latency is added, so ``LAT`` is
    the target network's latency in ms (the paper's unit). The searches train the small
    digits proxy (weights on 80% of the training split, the architecture on 20%, first epoch
    weights only). FBNet runs with the paper's loss and constants, ``CE · 0.2 · log(LAT)^0.6``;
    the claims are made on that run (``latency_ratio``: target-network latency from the table,
    FBNet / accuracy-only). A latency-heavy ``β = 3`` run is reported beside it
    (``latency_heavy_*``, not checked). The found architectures are retrained from scratch
    on digits; their test accuracy and the *measured* end-to-end latency of the proxy networks
    (round-robin minima of the thread's CPU time, same process: ``proxy_latency_ratio``) are
    reported.
    """
    data = digits(seed=ctx.seed)
    dev = ctx.device
    stages = ctx.pick(((8, 1, 1), (16, 1, 2)), ((8, 2, 1), (16, 2, 2)))
    ops = ctx.pick(("mb_k3_e3", "mb_k5_e6", "zero"), PROXYLESS_OPS)
    lat_batch = 32
    n_w = ctx.pick(192, 640)
    n_a = ctx.pick(128, 256)
    x_w, y_w = data.x_train[:n_w].to(dev), data.y_train[:n_w].to(dev)
    x_a, y_a = data.x_train[n_w : n_w + n_a].to(dev), data.y_train[n_w : n_w + n_a].to(dev)
    n_fit = ctx.pick(256, data.x_train.shape[0])  # retraining: whole split in full mode
    x_fit, y_fit = data.x_train[:n_fit].to(dev), data.y_train[:n_fit].to(dev)
    x_t, y_t = data.x_test.to(dev), data.y_test.to(dev)
    batch = 64
    search_epochs = ctx.pick(2, 6)
    # FBNet's schedule: weights only for the first ~10% of the epochs (at least one), then θ
    warmup = max(1, round(0.1 * search_epochs))
    retrain_epochs = ctx.pick(1, 15)
    seeds = ctx.pick([ctx.seed], [ctx.seed + i for i in range(2)])
    methods = {"darts": None, "fbnet": 0.6, "fbnet_latency_heavy": 3.0}

    table, fixed_ms = _target_latency(stages, ops, ctx.pick(2, 5))
    edges = ChainSupernet(stem_channels=8, stages=stages, ops=ops).edge_names()

    def target_ms(choice: list[str]) -> float:
        return fixed_ms + table.total(dict(zip(edges, choice))) * 1e-3

    results: dict[str, dict[str, list[float]]] = {
        k: {"acc": [], "lat": [], "target_ms": []} for k in methods
    }
    choices: dict[str, list[list[str]]] = {k: [] for k in methods}
    for seed in ctx.progress(seeds, description="seeds"):
        for name, beta in methods.items():
            torch.manual_seed(seed)
            g = torch.Generator().manual_seed(seed)
            net = ChainSupernet(stem_channels=8, stages=stages, ops=ops).to(dev)
            strat: GradientStrategy
            if beta is not None:
                strat = FBNet(
                    latency_table=table,
                    latency_scale=1e-3,
                    latency_offset=fixed_ms,
                    alpha=0.2,
                    beta=beta,
                    generator=g,
                    arch_start_epoch=warmup,
                )  # the paper's optimisers: w SGD 0.1 (wd 1e-4), θ Adam 0.01 (wd 5e-4)
            else:
                strat = _FirstOrderSoftmax(w_lr=0.1, a_lr=0.05, arch_start_epoch=warmup)
            train = _batches(x_w, y_w, batch, g)
            val = _batches(x_a, y_a, batch, g)
            choice, _ = search_chain(strat, net, train, val, search_epochs)
            choices[name].append(choice)
            torch.manual_seed(seed)
            child = build_chain(choice, stem_channels=8, stages=stages).to(dev)
            train_network(child, _batches(x_fit, y_fit, batch, g), retrain_epochs, lr=0.05)
            results[name]["acc"].append(evaluate(child, [(x_t, y_t)]))
            results[name]["target_ms"].append(target_ms(choice))
        # measured latency of the found proxy networks, side by side, same seed
        nets: dict[str, nn.Module] = {
            k: build_chain(choices[k][-1], stem_channels=8, stages=stages).to(dev) for k in methods
        }
        lat = _latency_of(nets, torch.randn(lat_batch, 1, 8, 8, device=dev), ctx.pick(9, 40))
        for k in nets:
            results[k]["lat"].append(lat[k])

    def mean(v: list[float]) -> float:
        return sum(v) / len(v)

    metrics: dict[str, float] = {"target_fixed_ms": fixed_ms}
    for k in methods:
        metrics[f"{k}_accuracy"] = mean(results[k]["acc"])
        metrics[f"{k}_target_ms"] = mean(results[k]["target_ms"])
        metrics[f"{k}_proxy_latency_us"] = mean(results[k]["lat"])
    metrics["accuracy_gap"] = metrics["darts_accuracy"] - metrics["fbnet_accuracy"]
    metrics["latency_ratio"] = metrics["fbnet_target_ms"] / metrics["darts_target_ms"]
    metrics["proxy_latency_ratio"] = (
        metrics["fbnet_proxy_latency_us"] / metrics["darts_proxy_latency_us"]
    )
    metrics["latency_heavy_latency_ratio"] = (
        metrics["fbnet_latency_heavy_target_ms"] / metrics["darts_target_ms"]
    )
    metrics["latency_heavy_accuracy_gap"] = (
        metrics["darts_accuracy"] - metrics["fbnet_latency_heavy_accuracy"]
    )
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for k, marker in zip(methods, "so^"):
        ax.scatter(results[k]["target_ms"], results[k]["acc"], marker=marker, label=k)
    ax.set_xlabel("target-network latency (ms, lookup table, 1×3×224×224, CPU)")
    ax.set_ylabel("test accuracy (digits proxy)")
    ax.legend()
    return Result(
        metrics=metrics,
        figures=[ctx.savefig(fig, "fbnet_latency_accuracy.png")],
        tables={
            "choices": [
                {
                    "method": k,
                    "seed": seeds[i],
                    "ops": ",".join(c),
                    "target_ms": results[k]["target_ms"][i],
                    "accuracy": results[k]["acc"][i],
                }
                for k in choices
                for i, c in enumerate(choices[k])
            ]
        },
        notes=[f"target latency table (µs): {table.to_json()['entries']}"],
    )


# --------------------------------------------------------------------------- DASS


def _total_weights(model: nn.Module, skip: list[nn.Module]) -> float:
    skipped = {id(m) for m in skip}
    return float(
        sum(
            m.weight.numel()
            for m in model.modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in skipped
        )
    )


def _nonzero_weights(model: nn.Module, skip: list[nn.Module]) -> float:
    skipped = {id(m) for m in skip}
    with torch.no_grad():
        return float(
            sum(
                int((m.weight != 0).sum())
                for m in model.modules()
                if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in skipped
            )
        )


@recipe(
    name="nas.dass",
    papers=(3,),
    claims=(
        Claim(
            "dass_advantage",
            ">",
            0.0,
            paper="DASS-searched sparse networks beat pruned DARTS cells at the same pruning "
            "ratio (CIFAR-10 at 90%: DASS 92.1% vs DARTS+pruning 89.6%, Tab. 3)",
            quick=False,
        ),
    ),
)
def dass(ctx: RunContext) -> Result:
    """DASS vs DARTS at the same pruning ratio on digits (mean over seeds).

    DARTS (first order) searches the standard space on the dense supernet; DASS searches the
    space plus the sparse ops (``sparse_conv_3x3/5x5``, ``sparse_linear``) on a supernet pruned
    in the loop (magnitude masks, straight-through, ratio ramped to the target). Each derived
    cell is trained from scratch, pruned layer-wise by magnitude to the ratio (stem and
    classifier dense) and fine-tuned; the test accuracies of the two pruned networks are
    compared.

    Also reported, not checked (the paper makes no such claim; it compares at equal pruning
    ratio): ``dass_advantage_weight_matched``, the DASS cell against the trained DARTS cell
    pruned to the DASS cell's number of non-zero weights (the sparse ops are larger, so at an
    equal ratio the DASS cell keeps more weights).
    """
    data = digits(seed=ctx.seed)
    dev = ctx.device
    ratio = 0.9
    C, layers, steps = 4, 3, 2
    n_w = ctx.pick(128, 480)
    n_fit = ctx.pick(256, data.x_train.shape[0])
    # quick: a reduced candidate set (the sparse ops stay), full: DARTS's eight ops
    base_ops = ctx.pick(("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"), PRIMITIVES)
    x_w, y_w = data.x_train[:n_w].to(dev), data.y_train[:n_w].to(dev)
    x_a, y_a = data.x_train[n_w : 2 * n_w].to(dev), data.y_train[n_w : 2 * n_w].to(dev)
    x_fit, y_fit = data.x_train[:n_fit].to(dev), data.y_train[:n_fit].to(dev)
    x_t, y_t = data.x_test.to(dev), data.y_test.to(dev)
    search_epochs = ctx.pick(1, 4)
    train_epochs = ctx.pick(1, 6)
    finetune_epochs = ctx.pick(1, 2)
    seeds = ctx.pick([ctx.seed], [ctx.seed + i for i in range(2)])
    acc: dict[str, list[float]] = {"darts": [], "dass": []}
    dense_acc: dict[str, list[float]] = {"darts": [], "dass": []}
    sparsity: dict[str, list[float]] = {"darts": [], "dass": []}
    nonzero: dict[str, list[float]] = {"darts": [], "dass": []}
    genotypes: list[dict[str, Any]] = []
    matched_acc: list[float] = []
    matched_nonzero: list[float] = []
    for seed in ctx.progress(seeds, description="seeds"):
        darts_dense: Any = None
        for name in ("darts", "dass"):
            torch.manual_seed(seed)
            g = torch.Generator().manual_seed(seed)
            ops = base_ops if name == "darts" else (*base_ops, *SPARSE_OPS)
            net = Supernet(C=C, layers=layers, steps=steps, ops=ops).to(dev)
            strat: GradientStrategy = (
                DARTS(order=1, w_lr=0.05, a_lr=3e-3)
                if name == "darts"
                else DASS(sparsity=ratio, ramp_epochs=1, w_lr=0.05, a_lr=3e-3)
            )
            result = search(
                strat, net, _batches(x_w, y_w, 64, g), _batches(x_a, y_a, 64, g), search_epochs
            )
            genotypes.append({"method": name, "seed": seed, **result.genotype.to_dict()})
            torch.manual_seed(seed)
            child = result.genotype.build(C=C, layers=layers).to(dev)
            skip = [child.stem, child.classifier]
            for m in child.modules():  # sparse ops train at the target ratio
                if isinstance(m, (SparseConv2d, SparseLinear)):
                    m.sparsity = ratio
            train_network(child, _batches(x_fit, y_fit, 64, g), train_epochs, lr=0.05)
            dense_acc[name].append(evaluate(child, [(x_t, y_t)]))
            if name == "darts":
                darts_dense = copy.deepcopy(child)  # pruned below to DASS's weight count
            magnitude_prune_(child, ratio, skip)
            finetune_pruned(child, _batches(x_fit, y_fit, 64, g), finetune_epochs)
            sparsity[name].append(sparsity_of(child, skip))
            nonzero[name].append(_nonzero_weights(child, skip))
            acc[name].append(evaluate(child, [(x_t, y_t)]))
        # weight-matched: the trained DARTS child pruned to the DASS child's non-zero count
        if darts_dense is None:
            raise RuntimeError("the DARTS child was not trained")  # pragma: no cover
        skip_m: list[nn.Module] = [darts_dense.stem, darts_dense.classifier]
        target = 1.0 - nonzero["dass"][-1] / _total_weights(darts_dense, skip_m)
        if target > 0:
            magnitude_prune_(darts_dense, target, skip_m)
            g = torch.Generator().manual_seed(seed)
            finetune_pruned(darts_dense, _batches(x_fit, y_fit, 64, g), finetune_epochs)
        matched_nonzero.append(_nonzero_weights(darts_dense, skip_m))
        matched_acc.append(evaluate(darts_dense, [(x_t, y_t)]))

    def mean(v: list[float]) -> float:
        return sum(v) / len(v)

    metrics = {
        "dass_pruned_accuracy": mean(acc["dass"]),
        "darts_pruned_accuracy": mean(acc["darts"]),
        "dass_advantage": mean(acc["dass"]) - mean(acc["darts"]),
        "dass_before_pruning": mean(dense_acc["dass"]),
        "darts_before_pruning": mean(dense_acc["darts"]),
        "dass_sparsity": mean(sparsity["dass"]),
        "darts_sparsity": mean(sparsity["darts"]),
        "dass_nonzero_weights": mean(nonzero["dass"]),
        "darts_nonzero_weights": mean(nonzero["darts"]),
        "darts_weight_matched_accuracy": mean(matched_acc),
        "darts_weight_matched_nonzero": mean(matched_nonzero),
        "dass_advantage_weight_matched": mean(acc["dass"]) - mean(matched_acc),
    }
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for i, k in enumerate(("darts", "dass")):
        ax.bar(
            [i - 0.2, i + 0.2],
            [mean(dense_acc[k]), mean(acc[k])],
            width=0.4,
            color=["#999", "C0" if k == "dass" else "C1"],
        )
    ax.set_xticks([0, 1], ["DARTS", "DASS"])
    ax.set_ylabel(f"test accuracy (grey: dense, colour: {ratio:.0%} pruned)")
    return Result(
        metrics=metrics,
        figures=[ctx.savefig(fig, "dass_pruned_accuracy.png")],
        tables={"genotypes": genotypes},
    )
