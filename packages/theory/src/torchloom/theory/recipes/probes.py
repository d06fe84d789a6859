"""Recipes: probes of learned representations — representational geometry (#50), the
information plane (#51) and convergent learning (#36)."""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

import torch
from torch import nn

from torchloom.core.data import digits
from torchloom.core.recipes import Claim, Result, RunContext, pyplot, recipe
from torchloom.theory.convergent import convergence_summary, layer_activations
from torchloom.theory.geometry import (
    aligned_cluster_task,
    linear_cka,
    rsa,
    task_alignment,
    train_one_hidden_layer,
)
from torchloom.theory.info_plane import InfoPlaneTracker, plot_info_plane, twelve_bit_task

__all__: list[str] = ["convergent", "geometry", "info_plane"]


@recipe(
    name="theory.geometry",
    papers=(50,),
    claims=[
        Claim(
            "target_alignment_gap",
            ">",
            0.0,
            paper="tanh hidden layers reflect the target structure more than ReLU ones "
            "(Alleman et al. 2024, Figs. 1-2): mean over alpha of CKA(h, y)[tanh] - [relu]",
        ),
        Claim(
            "input_alignment_gap",
            ">",
            0.0,
            paper="ReLU hidden layers retain more of the input structure: mean over alpha of "
            "CKA(h, x)[relu] - [tanh]",
        ),
        Claim(
            "frac_alpha_both_signs",
            ">=",
            0.75,
            paper="the ordering holds across the family of input/label alignments",
        ),
    ],
)
def geometry(ctx: RunContext) -> Result:
    """One-hidden-layer tanh vs ReLU nets on :func:`aligned_cluster_task` across the alignment
    ``alpha``: linear CKA of the trained hidden layer with the targets and with the inputs
    (same tasks and seeds for both nonlinearities; logistic loss, no biases)."""
    alphas = ctx.pick([0.0, 0.1, 0.2], [0.0, 0.05, 0.1, 0.2, 0.3, 0.5])
    seeds = ctx.pick(2, 6)
    steps = ctx.pick(1000, 2000)
    acts: tuple[Literal["tanh", "relu"], ...] = ("tanh", "relu")
    ta: dict[str, list[float]] = {a: [] for a in acts}
    ia: dict[str, list[float]] = {a: [] for a in acts}
    rsa_t: dict[str, list[float]] = {a: [] for a in acts}
    task_cka: list[float] = []
    rows = []
    for alpha in ctx.progress(alphas, description="alignment alpha"):
        sums = {a: [0.0, 0.0, 0.0] for a in acts}
        for s in range(seeds):
            task = aligned_cluster_task(alpha, 8, 30, 5, 0.05, generator=ctx.generator)
            for a in acts:
                net = train_one_hidden_layer(
                    task,
                    a,
                    width=100,
                    steps=steps,
                    lr=0.5,
                    seed=s,
                    loss="bce",
                    bias=False,  # type: ignore[arg-type]
                )
                t_al, i_al = task_alignment(net.hidden, task)
                sums[a][0] += t_al / seeds
                sums[a][1] += i_al / seeds
                sums[a][2] += rsa(net.hidden, task.y, method="pearson") / seeds
        task_cka.append(linear_cka(task.x, task.y))
        for a in acts:
            ta[a].append(sums[a][0])
            ia[a].append(sums[a][1])
            rsa_t[a].append(sums[a][2])
        rows.append(
            {
                "alpha": alpha,
                "task_input_target_cka": task_cka[-1],
                **{f"target_cka_{a}": sums[a][0] for a in acts},
                **{f"input_cka_{a}": sums[a][1] for a in acts},
                **{f"target_rsa_{a}": sums[a][2] for a in acts},
            }
        )
        ctx.log(str(rows[-1]))
    n = len(alphas)
    t_gap = [ta["tanh"][i] - ta["relu"][i] for i in range(n)]
    i_gap = [ia["relu"][i] - ia["tanh"][i] for i in range(n)]
    both = sum(1 for i in range(n) if t_gap[i] > 0 and i_gap[i] > 0) / n

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for a, c in (("tanh", "C0"), ("relu", "C3")):
        axes[0].plot(alphas, ta[a], "o-", color=c, label=a)
        axes[1].plot(alphas, ia[a], "o-", color=c, label=a)
    axes[1].plot(alphas, task_cka, "k--", label="CKA(x, y) of the task")
    axes[0].set(xlabel="input/label alignment alpha", ylabel="CKA(hidden, targets)")
    axes[1].set(xlabel="input/label alignment alpha", ylabel="CKA(hidden, inputs)")
    axes[0].legend()
    axes[1].legend()
    fig.suptitle("one hidden layer, logistic loss: tanh mirrors targets, ReLU keeps inputs")
    fig.tight_layout()
    return Result(
        metrics={
            "target_alignment_gap": sum(t_gap) / n,
            "input_alignment_gap": sum(i_gap) / n,
            "frac_alpha_both_signs": both,
            "target_rsa_gap": sum(rsa_t["tanh"][i] - rsa_t["relu"][i] for i in range(n)) / n,
        },
        figures=[ctx.savefig(fig, "geometry.png")],
        tables={"per_alpha": rows},
    )


@recipe(
    name="theory.info-plane",
    papers=(51,),
    claims=[
        Claim(
            "fitting_bits",
            ">",
            0.5,
            paper="fitting phase: I(X;T) of the last hidden layer first rises "
            "(Shwartz-Ziv & Tishby 2017, Fig. 3)",
        ),
        Claim(
            "compression_bits",
            ">",
            0.2,
            paper="compression phase: I(X;T) of the last hidden layer then falls while "
            "I(T;Y) keeps rising (Fig. 3, main result (i))",
        ),
        Claim(
            "label_info_gain_bits",
            ">",
            0.5,
            paper="the layers gain information about the label, I(T;Y) -> H(Y)",
        ),
        Claim(
            "peak_epoch_fraction",
            "<",
            0.5,
            paper="most training epochs are spent in the compression phase (result (i))",
        ),
    ],
)
def info_plane(ctx: RunContext) -> Result:
    """The paper's 12-10-7-5-4-3-2 tanh net on the 12-bit task (85% of the 4096 patterns for
    training, cross-entropy, Adam on minibatches); I(X;T) and I(T;Y) of every hidden layer by
    binning each unit into 30 bins of [-1, 1], on all 4096 patterns, at log-spaced epochs."""
    x, y = twelve_bit_task()
    x, y = x.to(ctx.device), y.to(ctx.device)
    epochs = ctx.pick(200, 1000)
    batch = ctx.pick(512, 256)
    lr = ctx.pick(3e-3, 1e-3)
    seeds = ctx.pick(1, 2)
    n_rec = ctx.pick(18, 30)
    sizes = [12, 10, 7, 5, 4, 3]
    record_at = sorted({int(v) for v in torch.logspace(0, math.log10(epochs), n_rec)} | {epochs})
    g = ctx.generator
    per_seed: list[dict[str, float]] = []
    history: list[dict[str, Any]] = []
    for seed in range(seeds):
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), nn.Tanh()]
        model = nn.Sequential(*layers, nn.Linear(sizes[-1], 2)).to(ctx.device)
        with torch.no_grad():
            for m in model:
                if isinstance(m, nn.Linear):
                    # PyTorch's default uniform init, drawn from the run's generator.
                    bound = 1.0 / math.sqrt(m.in_features)
                    m.weight.copy_((torch.rand(m.weight.shape, generator=g) * 2 - 1) * bound)
                    m.bias.copy_((torch.rand(m.bias.shape, generator=g) * 2 - 1) * bound)
        tanhs = [m for m in model if isinstance(m, nn.Tanh)]
        names = [f"T{i + 1} ({sizes[i + 1]})" for i in range(len(tanhs))]
        train = torch.randperm(x.shape[0], generator=g)[: int(0.85 * x.shape[0])].to(ctx.device)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        with InfoPlaneTracker(
            model, dict(zip(names, tanhs, strict=True)), x, y, bin_range=(-1.0, 1.0)
        ) as trk:
            trk.record(0)
            for ep in ctx.progress(range(1, epochs + 1), description=f"seed {seed}: epochs"):
                order = train[torch.randperm(train.shape[0], generator=g).to(ctx.device)]
                for i in range(0, order.shape[0], batch):
                    idx = order[i : i + batch]
                    opt.zero_grad()
                    nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                    opt.step()
                if ep in record_at:
                    trk.record(ep)
            e, ixt, ity = trk.trajectory(names[-1])
            with torch.no_grad():
                acc = float((model(x).argmax(1) == y).double().mean())
            peak = int(ixt.argmax())
            per_seed.append(
                {
                    "fitting_bits": float(ixt[peak] - ixt[0]),
                    "compression_bits": float(ixt[peak] - ixt[-1]),
                    "label_info_gain_bits": float(ity[-1] - ity[0]),
                    "peak_epoch_fraction": float(e[peak] / e[-1]),
                    "accuracy": acc,
                }
            )
            ctx.log(f"seed {seed}: {per_seed[-1]}")
            if seed == 0:
                history = list(trk.history)
                last = (e, ixt, ity, names[-1])

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    plot_info_plane(history, ax=axes[0])
    e, ixt, ity, name = last
    axes[1].semilogx(e.clamp_min(0.5), ixt, "o-", label=f"I(X;T), {name}")
    axes[1].semilogx(e.clamp_min(0.5), ity, "s-", label=f"I(T;Y), {name}")
    axes[1].set(xlabel="epoch", ylabel="bits", title="last hidden layer: fitting, then compression")
    axes[1].legend()
    fig.tight_layout()
    metrics = {k: sum(r[k] for r in per_seed) / seeds for k in per_seed[0]}
    return Result(
        metrics=metrics,
        figures=[ctx.savefig(fig, "info_plane.png")],
        tables={"per_seed": [dict(r) for r in per_seed], "history_seed0": history},
    )


def _digits_cnn(g: torch.Generator) -> nn.Sequential:
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 16, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Conv2d | nn.Linear):
                fan_in = m.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in)
                m.weight.copy_((torch.rand(m.weight.shape, generator=g) * 2 - 1) * bound)
                if m.bias is not None:
                    m.bias.copy_((torch.rand(m.bias.shape, generator=g) * 2 - 1) * bound)
    return net


@recipe(
    name="theory.convergent",
    papers=(36,),
    claims=[
        Claim(
            "frac_reliable_conv1",
            ">=",
            0.25,
            paper="some features are learned reliably: many conv1 units have a one-to-one "
            "match with correlation >= 0.5 in a net trained from another seed "
            "(Li et al. 2016, Sec. 3, Fig. 2)",
        ),
        Claim(
            "frac_unreliable_conv1",
            ">",
            0.0,
            paper="... yet others are not (some units have no good match)",
        ),
        Claim(
            "matched_corr_gain_conv1",
            ">",
            0.0,
            paper="convergence comes from learning: matched correlation of trained nets minus "
            "that of untrained nets from the same seeds",
        ),
        Claim(
            "many_over_one_r2_conv1",
            ">",
            1.0,
            paper="units span subspaces shared across nets while the basis is not: a unit is "
            "predicted better from its spectral cluster than from its one-to-one match (Sec. 5)",
        ),
        Claim(
            "many_over_one_r2_conv2",
            ">",
            1.0,
            paper="the same in the second layer",
            quick=False,
        ),
    ],
)
def convergent(ctx: RunContext) -> Result:
    """Two (full: four) small CNNs trained on the 8x8 digits from different seeds; conv1, conv2
    and fc units compared on held-out digits by bipartite matching, sparse (L1) prediction and
    spectral clustering, next to the same comparison for the untrained nets."""
    data = digits().to(ctx.device)
    n_nets = ctx.pick(2, 4)
    epochs = ctx.pick(6, 20)
    g = ctx.generator
    trained, untrained = [], []
    for k in range(n_nets):
        net = _digits_cnn(g).to(ctx.device)
        untrained.append(_digits_cnn(g).to(ctx.device))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        for _ in ctx.progress(range(epochs), description=f"net {k}"):
            perm = torch.randperm(data.x_train.shape[0], generator=g).to(ctx.device)
            for i in range(0, perm.shape[0], 64):
                idx = perm[i : i + 64]
                opt.zero_grad()
                nn.functional.cross_entropy(net(data.x_train[idx]), data.y_train[idx]).backward()
                opt.step()
        trained.append(net)
    layers = {"conv1": 1, "conv2": 3, "fc": 7}
    pairs = [(i, j) for i in range(n_nets) for j in range(i + 1, n_nets)]
    metrics: dict[str, float] = {}
    rows = []
    matched_conv1 = []
    for name, li in layers.items():
        acc: dict[str, float] = {}
        for i, j in pairs:
            for tag, nets in (("", trained), ("untrained_", untrained)):
                a = layer_activations(nets[i], nets[i][li], data.x_test)
                b = layer_activations(nets[j], nets[j][li], data.x_test)
                s = convergence_summary(a, b, threshold=0.5, generator=g)
                vals = {
                    "matched_corr": float(s.matched_corr.mean()),
                    "semi_corr": float(s.semi_corr.mean()),
                    "within_corr": float(s.within_corr.mean()),
                    "frac_reliable": s.frac_reliable,
                    "one_to_one_r2": s.one_to_one_r2,
                    "one_to_many_r2": s.one_to_many_r2,
                    "many_to_many_r2": s.many_to_many_r2,
                    "full_r2": s.full_r2,
                }
                for key, v in vals.items():
                    acc[tag + key] = acc.get(tag + key, 0.0) + v / len(pairs)
                if name == "conv1" and tag == "" and (i, j) == pairs[0]:
                    matched_conv1 = sorted(s.matched_corr.tolist(), reverse=True)
        rows.append({"layer": name, **acc})
        ctx.log(str(rows[-1]))
        metrics[f"frac_reliable_{name}"] = acc["frac_reliable"]
        metrics[f"frac_unreliable_{name}"] = 1.0 - acc["frac_reliable"]
        metrics[f"matched_corr_{name}"] = acc["matched_corr"]
        metrics[f"matched_corr_gain_{name}"] = acc["matched_corr"] - acc["untrained_matched_corr"]
        metrics[f"many_over_one_r2_{name}"] = acc["many_to_many_r2"] / max(
            acc["one_to_one_r2"], 1e-12
        )
        for key in ("one_to_one_r2", "one_to_many_r2", "many_to_many_r2", "full_r2"):
            metrics[f"{key}_{name}"] = acc[key]
    with torch.no_grad():
        metrics["test_accuracy"] = (
            sum(float((n(data.x_test).argmax(1) == data.y_test).double().mean()) for n in trained)
            / n_nets
        )

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].bar(range(len(matched_conv1)), matched_conv1, color="C0")
    axes[0].axhline(0.5, color="k", ls="--", lw=0.8)
    axes[0].set(
        xlabel="conv1 unit (sorted)", ylabel="correlation with its match", title="one-to-one"
    )
    kinds = ["one_to_one_r2", "many_to_many_r2", "one_to_many_r2", "full_r2"]
    width = 0.2
    for q, kind in enumerate(kinds):
        axes[1].bar(
            [li + (q - 1.5) * width for li in range(len(rows))],
            [r[kind] for r in rows],
            width,
            label=kind.replace("_r2", "").replace("_", "-"),
        )
    axes[1].set_xticks(range(len(rows)), [r["layer"] for r in rows])
    axes[1].set(ylabel="held-out R² of net-2 units", title="alignment of two nets")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return Result(
        metrics=metrics,
        figures=[ctx.savefig(fig, "convergent.png")],
        tables={"per_layer": rows},
    )
