"""Reproductions of this package's papers, registered under ``torchloom.recipes``."""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from torchloom.core.data import Split, digits
from torchloom.core.nn import mlp
from torchloom.core.recipes import Claim, Result, RunContext, recipe
from torchloom.quantize.biper import (
    BiPerConv2d,
    binarize_model,
    biper_regularizer,
    quantization_error,
    set_biper_stage,
    tau_schedule,
)
from torchloom.quantize.distill import (
    DifferentiableQuantization,
    QuantizedDistillation,
    distillation_loss,
)
from torchloom.quantize.uniform import (
    fake_quantize_model,
    freeze_quantization,
    model_size_bits,
)

__all__ = ["biper_digits", "distill_digits"]

Loss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def _train(
    ctx: RunContext,
    model: nn.Module,
    data: Split,
    *,
    epochs: int,
    lr: float,
    seed: int,
    description: str,
    loss_fn: Loss = _ce,
    extra: Callable[[int], torch.Tensor | float] | None = None,
    params: list[nn.Parameter] | None = None,
    after_step: Callable[[], None] | None = None,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
) -> None:
    """Adam (or SGD with momentum 0.9, ``optimizer="sgd"``) with a cosine schedule over shuffled
    mini-batches of 64; ``extra(epoch)`` is added to the loss (a regulariser). The batch order
    depends on ``seed`` only, so every method of a comparison sees the same batches."""
    ps = list(model.parameters()) if params is None else params
    opt: torch.optim.Optimizer
    if optimizer == "sgd":
        opt = torch.optim.SGD(ps, lr=lr, momentum=0.9, weight_decay=weight_decay)
    else:
        opt = torch.optim.Adam(ps, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))
    g = torch.Generator().manual_seed(seed)
    n = data.x_train.shape[0]
    for epoch in ctx.progress(range(epochs), total=epochs, description=description):
        model.train()
        perm = torch.randperm(n, generator=g).to(data.x_train.device)
        for i in range(0, n, 64):
            idx = perm[i : i + 64]
            loss = loss_fn(model, data.x_train[idx], data.y_train[idx])
            if extra is not None:
                loss = loss + extra(epoch)
            if not bool(torch.isfinite(loss)):
                raise FloatingPointError(f"{description}: loss became {loss.item()}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step()
        sched.step()


def _paired_se(a: list[float], b: list[float]) -> float:
    """Standard error of the mean of the paired differences ``a − b`` (0 for one pair)."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    return statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else 0.0


# ----------------------------------------------------------------------------------- BiPer


def _binary_cnn(width: int) -> nn.Sequential:
    """First conv and classifier full precision (as in BNN practice); the two middle convs are
    the ones binarised (weights and inputs)."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.Conv2d(width, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.MaxPool2d(2),
        nn.Conv2d(width, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(width * 4, 10),
    )


_FP_LAYERS = ["0", "9"]


def _random_alpha_(model: nn.Module, generator: torch.Generator) -> None:
    """Initialise every binary layer's per-channel scale ``α`` uniformly in ``[0, 1)`` (as the
    authors' ``BinarizeConv2d``: ``torch.rand``)."""
    with torch.no_grad():
        for m in model.modules():
            alpha = getattr(m, "alpha", None)
            if isinstance(alpha, nn.Parameter):
                r = torch.rand(alpha.shape, generator=generator, dtype=alpha.dtype)
                alpha.copy_(r.to(alpha.device))


@recipe(
    name="quantize.biper",
    papers=(5,),
    claims=[
        Claim(
            "acc_gain_vs_ste",
            ">",
            0.0,
            paper="BiPer above sign+STE binarisation on the same BNN (CIFAR-10 ResNet-18: "
            "BiPer 93.75% vs ReCU 92.8%, up to +1%, Tab. 2)",
            quick=False,
        ),
        Claim(
            "acc_gain_vs_clipped_ste",
            ">",
            0.0,
            paper="BiPer above clipped sign+STE on the same BNN (Tab. 2)",
            quick=False,
        ),
        Claim(
            "qe_drop_over_freq",
            ">=",
            0.5,
            paper="ω₀ controls the quantisation error: E|sin(ω₀w) − sign(sin(ω₀w))| of the "
            "trained latent weights falls from ≈1 towards 1 − 2/π as ω₀ grows (Sec. 3.2, Fig. 3)",
        ),
    ],
)
def biper_digits(ctx: RunContext) -> Result:
    """BiPer vs sign+STE (identity and clipped) on the same binary CNN, 8×8 digits."""
    data = digits().to(ctx.device)
    width = ctx.pick(8, 8)
    stage_epochs = ctx.pick(1, 15)
    seeds = ctx.pick([ctx.seed], [ctx.seed + k for k in range(5)])
    # the authors' CIFAR-10 recipe (run_stg1.sh / run_stg2.sh): SGD with momentum, cosine
    # schedule per stage, stage 2 at a lower learning rate and weight decay, a constant τ per
    # stage (tau_min = tau_max), α initialised uniformly in [0, 1), ω₀ = 20
    # clipped STE: no gradient where |w| > 0.1 ≈ the initial weight bound 1/√fan_in
    freq, clip = 20.0, 0.1
    lrs, decays, taus = (0.05, 0.01), (5e-4, 5e-5), (0.037, 0.0468)
    accs: dict[str, list[float]] = {"biper": [], "ste": [], "clipped_ste": []}
    stage1_acc: list[float] = []
    biper_models: list[nn.Module] = []
    for seed in seeds:
        torch.manual_seed(seed)
        base = _binary_cnn(width).to(ctx.device)
        for method in accs:
            model = binarize_model(base, method=method, freq=freq, clip=clip, exclude=_FP_LAYERS)  # type: ignore[arg-type]
            _random_alpha_(model, torch.Generator().manual_seed(seed + 7))
            for stage in (1, 2):
                extra: Callable[[int], torch.Tensor] | None = None
                if method == "biper":
                    set_biper_stage(model, stage)  # type: ignore[arg-type]
                    tau = taus[stage - 1]

                    def extra(epoch: int, m: nn.Module = model, t: float = tau) -> torch.Tensor:
                        return biper_regularizer(m, tau_schedule(epoch, stage_epochs, t, t))

                # the baselines run the same two phases (same batches, lr and decay restarts)
                _train(
                    ctx,
                    model,
                    data,
                    epochs=stage_epochs,
                    lr=lrs[stage - 1],
                    weight_decay=decays[stage - 1],
                    optimizer="sgd",
                    seed=seed + 100 * stage,
                    description=f"{method} stage {stage} seed {seed}",
                    extra=extra,
                )
                if method == "biper" and stage == 1:
                    stage1_acc.append(_accuracy(model, data.x_test, data.y_test))
            if method == "biper":
                biper_models.append(model)
            accs[method].append(_accuracy(model, data.x_test, data.y_test))
            ctx.log(f"seed {seed} {method}: test accuracy {accs[method][-1]:.4f}")

    mean = {k: statistics.fmean(v) for k, v in accs.items()}
    se = {k: _paired_se(accs["biper"], accs[k]) for k in ("ste", "clipped_ste")}

    # the paper's analysis: QE(ω₀) for Laplacian weights vs the QE of the trained latent weights
    # ω₀ from far below to far above 1/b (b ≈ 0.3 for the trained weights)
    freqs = torch.logspace(-3, 3, 49, dtype=torch.float64)
    # the high-frequency end is summarised by the median over its last decade: the regulariser
    # τ·sin²(ω₀w) gathers the weights near multiples of π/ω₀, so at single frequencies that are
    # multiples of ω₀ (e.g. 1000 = 50·ω₀) the error jumps back up (aliasing)
    top = freqs >= freqs[-1] / 10
    layers = [m for m in biper_models[0].modules() if isinstance(m, BiPerConv2d)]
    curves = []
    max_err, qe_drop = 0.0, float("inf")
    qe_trained: list[float] = []
    for layer in layers:
        w = layer.weight.detach().double().reshape(-1).cpu()
        b = float((w - w.median()).abs().mean())  # Laplace scale, maximum likelihood
        s = torch.sin(freqs[:, None] * w[None, :])
        empirical = (s - torch.where(s >= 0, 1.0, -1.0)).abs().mean(1)
        model_qe = quantization_error(freqs, b)
        max_err = max(max_err, float((empirical - model_qe).abs().max()))
        curves.append((b, empirical, model_qe))
        qe_drop = min(qe_drop, float(empirical[0] - empirical[top].median()))
        s0 = torch.sin(freq * w)
        qe_trained.append(float((s0 - torch.where(s0 >= 0, 1.0, -1.0)).abs().mean()))

    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.8))
    for k, (b, emp, qe) in enumerate(curves):
        ax0.semilogx(freqs, qe, label=f"Laplace closed form, layer {k + 1} (b={b:.3f})")
        ax0.semilogx(freqs, emp, "o", ms=3, label=f"trained weights, layer {k + 1}")
    ax0.axvline(freq, color="grey", ls=":", label=f"ω₀ = {freq:g} (used)")
    ax0.set(xlabel="ω₀", ylabel="E|sin(ω₀w) − sign(sin(ω₀w))|", title="quantisation error")
    ax0.legend(fontsize=7)
    names = list(accs)
    ax1.bar(names, [100 * mean[n] for n in names], color=["C0", "C1", "C2"])
    for i, n in enumerate(names):
        ax1.plot([i] * len(accs[n]), [100 * a for a in accs[n]], "k.", ms=6)
    lo = min(min(v) for v in accs.values())
    ax1.set_ylim(100 * lo - 3, 100)
    ax1.set(ylabel="test accuracy (%)", title=f"same binary CNN, {len(seeds)} seed(s)")
    fig.tight_layout()
    path = ctx.savefig(fig, "biper.png")

    rows = [
        {
            "method": n,
            "mean_acc": round(mean[n], 4),
            "per_seed": [round(a, 4) for a in accs[n]],
            "epochs": 2 * stage_epochs,
        }
        for n in names
    ]
    return Result(
        metrics={
            "biper_acc": mean["biper"],
            "ste_acc": mean["ste"],
            "clipped_ste_acc": mean["clipped_ste"],
            "acc_gain_vs_ste": mean["biper"] - mean["ste"],
            "acc_gain_vs_clipped_ste": mean["biper"] - mean["clipped_ste"],
            "acc_gain_vs_ste_se": se["ste"],
            "acc_gain_vs_clipped_ste_se": se["clipped_ste"],
            "qe_laplace_max_abs_err": max_err,
            "qe_drop_over_freq": qe_drop,
            "qe_at_freq_closed_form": float(quantization_error(freq, curves[0][0])),
            "qe_at_freq_trained": statistics.fmean(qe_trained),
            "biper_stage1_acc": statistics.fmean(stage1_acc),
        },
        figures=[path],
        tables={"accuracy": rows},
        notes=[
            f"binary CNN (width {width}): FP first conv and classifier, two binarised 3×3 convs "
            "(weights and inputs); the authors' schedule for every method: SGD (momentum 0.9), "
            f"two cosine phases of {stage_epochs} epochs with lr {lrs[0]:g} then {lrs[1]:g} and "
            f"weight decay {decays[0]:g} then {decays[1]:g}, α ~ U[0, 1); BiPer: stage 1 "
            f"sin(ω₀w), stage 2 sign(sin(ω₀w)), ω₀={freq:g}, τ = {taus[0]:g} then {taus[1]:g}; "
            f"clipped STE zeroes the gradient where |w| > {clip:g}.",
            "width 8 so that binarisation costs accuracy (at width 16 with Adam every method "
            "saturates near 97.5% and ties); full mode averages 5 seeds (same initialisation and "
            "batches for every method within a seed); *_se is the standard error of the paired "
            "per-seed differences; biper_stage1_acc is BiPer after stage 1 (sine weights).",
        ],
    )


# ----------------------------------------------------------------------------- distillation


class _DigitsCNN(nn.Module):
    """The teacher: a small CNN with dropout on flattened 8×8 digits ``(B, 64)`` → ``(B, 10)``
    (the paper's teachers are wider, deeper convolutional nets with dropout)."""

    def __init__(self, dropout: float = 0.3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(64 * 2 * 2, 128),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(-1, 1, 8, 8))


def _resorter(dq: DifferentiableQuantization) -> Callable[[], None]:
    def resort() -> None:
        for q in dq.quantizers:
            q.sort_points_()

    return resort


@recipe(
    name="quantize.distill",
    papers=(25,),
    claims=[
        Claim(
            "qd4_gap_to_fp",
            "<=",
            0.02,
            paper="4-bit quantized distillation: student close to its full-precision accuracy "
            "(CIFAR-10 4-bit student 92.3% vs FP 92.9%, Tab. 1/2)",
            # one seed x 8 epochs is inside the noise: 0.016 on CPU, 0.024 on CUDA (H200)
            quick=False,
        ),
        Claim(
            "qd4_gain_vs_q4",
            ">=",
            0.0,
            paper="quantized distillation above 4-bit quantised training without a teacher "
            "(Tab. 1)",
            quick=False,
        ),
        Claim(
            "dq2_gain_vs_uniform2",
            ">",
            0.0,
            paper="2-bit differentiable quantization above 2-bit uniform quantisation (Tab. 2)",
            quick=False,
        ),
        Claim(
            "dq2_distill_loss_ratio",
            "<",
            1.0,
            paper="learning the points by SGD lowers the distillation loss (Sec. 2.2, Alg. 2)",
        ),
    ],
)
def distill_digits(ctx: RunContext) -> Result:
    """Quantized distillation and differentiable quantization of a small MLP student, digits."""
    data = digits(flatten=True).to(ctx.device)
    # a convolutional teacher (≈99%) and a one-hidden-layer MLP student (≈98%); a narrower
    # student (64-32-10) is made worse by distillation here, see the README
    student_sizes = [64, 128, 10]
    teacher_epochs = ctx.pick(5, 20)
    # distillation needs a long schedule (a "patient" teacher): at 40 epochs every student ties
    epochs = ctx.pick(8, 100)
    dq_epochs = 5  # cheap (only the points learn); fewer epochs leave the loss ratio at noise
    seeds = ctx.pick([ctx.seed], [ctx.seed + k for k in range(5)])
    bucket, temperature, alpha, lr = 256, 4.0, 0.7, 1e-2
    keys = ("teacher", "fp", "fp_kd", "qd4", "q4", "pm4", "uniform2", "dq2")
    res: dict[str, list[float]] = {k: [] for k in keys}
    sizes: dict[str, int] = {}
    for seed in seeds:
        torch.manual_seed(seed)
        teacher = _DigitsCNN().to(ctx.device)
        _train(
            ctx,
            teacher,
            data,
            epochs=teacher_epochs,
            lr=5e-3,
            seed=seed,
            description=f"teacher seed {seed}",
        )
        res["teacher"].append(_accuracy(teacher, data.x_test, data.y_test))
        teacher.eval()

        torch.manual_seed(seed + 1)
        init = mlp(student_sizes).to(ctx.device)
        fp = copy.deepcopy(init)
        _train(
            ctx,
            fp,
            data,
            epochs=epochs,
            lr=lr,
            seed=seed + 1,
            description=f"FP student seed {seed}",
        )
        res["fp"].append(_accuracy(fp, data.x_test, data.y_test))
        # the paper's "PM Quant." row: 4-bit post-training quantisation of the FP student
        res["pm4"].append(
            _accuracy(fake_quantize_model(copy.deepcopy(fp), 4, bucket), data.x_test, data.y_test)
        )

        # 4-bit quantized distillation vs 4-bit quantised training with labels only
        qd = QuantizedDistillation(
            copy.deepcopy(init),
            teacher,
            bits=4,
            bucket_size=bucket,
            temperature=temperature,
            alpha=alpha,
        )

        def kd_loss(
            m: nn.Module, x: torch.Tensor, y: torch.Tensor, teacher: nn.Module = teacher
        ) -> torch.Tensor:
            with torch.no_grad():
                t = teacher(x)
            return distillation_loss(m(x), t, y, temperature=temperature, alpha=alpha)

        _train(
            ctx,
            qd.student,
            data,
            epochs=epochs,
            lr=lr,
            seed=seed + 1,
            loss_fn=kd_loss,
            description=f"4-bit distilled seed {seed}",
        )
        qd4 = qd.export()
        res["qd4"].append(_accuracy(qd4, data.x_test, data.y_test))

        # diagnostic: the same distillation without quantisation (does the teacher help at all?)
        fp_kd = copy.deepcopy(init)
        _train(
            ctx,
            fp_kd,
            data,
            epochs=epochs,
            lr=lr,
            seed=seed + 1,
            loss_fn=kd_loss,
            description=f"FP distilled seed {seed}",
        )
        res["fp_kd"].append(_accuracy(fp_kd, data.x_test, data.y_test))

        q4 = fake_quantize_model(copy.deepcopy(init), 4, bucket)
        _train(
            ctx,
            q4,
            data,
            epochs=epochs,
            lr=lr,
            seed=seed + 1,
            description=f"4-bit no teacher seed {seed}",
        )
        res["q4"].append(_accuracy(freeze_quantization(q4), data.x_test, data.y_test))

        # 2 bits: uniform post-training quantisation of the FP student vs learned points
        u2 = fake_quantize_model(copy.deepcopy(fp), 2, bucket)
        sizes["uniform2"] = model_size_bits(u2)
        res["uniform2"].append(_accuracy(u2, data.x_test, data.y_test))
        dq = DifferentiableQuantization(
            copy.deepcopy(fp),
            teacher,
            bits=2,
            bucket_size=bucket,
            init="uniform",
            temperature=temperature,
            alpha=alpha,
        )
        sizes["dq2"] = model_size_bits(dq.student)
        with torch.no_grad():
            kd_before = float(dq.loss(data.x_train, data.y_train))
        _train(
            ctx,
            dq.student,
            data,
            epochs=dq_epochs,
            lr=1e-3,
            seed=seed + 2,
            loss_fn=kd_loss,
            params=list(dq.point_parameters()),
            after_step=_resorter(dq),
            description=f"2-bit differentiable seed {seed}",
        )
        res["dq2"].append(_accuracy(dq.student, data.x_test, data.y_test))
        dq.student.eval()
        with torch.no_grad():
            kd_after = float(dq.loss(data.x_train, data.y_train))
        res["dq2_loss_ratio"] = [*res.get("dq2_loss_ratio", []), kd_after / kd_before]

        sizes["teacher"] = model_size_bits(teacher)
        sizes["fp"] = model_size_bits(fp)
        sizes["fp_kd"] = sizes["fp"]
        sizes["qd4"] = model_size_bits(qd.student)
        sizes["q4"] = sizes["qd4"]
        sizes["pm4"] = sizes["qd4"]

    mean = {k: statistics.fmean(v) for k, v in res.items()}
    labels = {
        "teacher": "teacher (FP CNN 32-64-64-128, dropout)",
        "fp": f"student FP ({'-'.join(map(str, student_sizes))})",
        "fp_kd": "student FP, distilled",
        "qd4": "student 4-bit, quantized distillation",
        "q4": "student 4-bit, labels only",
        "pm4": "student 4-bit, post-training (PM)",
        "uniform2": "student 2-bit uniform (post-training)",
        "dq2": "student 2-bit differentiable quantization",
    }
    rows = [
        {
            "model": labels[k],
            "mean_acc": round(mean[k], 4),
            "per_seed": [round(a, 4) for a in res[k]],
            "size_bits": sizes[k],
            "compression_vs_teacher": round(sizes["teacher"] / sizes[k], 1),
        }
        for k in labels
    ]
    for r in rows:
        ctx.log(f"{r['model']:45s} acc {r['mean_acc']:.4f}  size {r['size_bits']} bits")

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for k in labels:
        ax.scatter(sizes[k] / 8 / 1024, 100 * mean[k], s=40, label=labels[k])
    ax.set_xscale("log")
    ax.set(xlabel="model size (KiB)", ylabel="test accuracy (%)", title="digits: size vs accuracy")
    ax.legend(fontsize=7, loc="lower right")
    path = ctx.savefig(fig, "distill.png")

    return Result(
        metrics={
            "teacher_acc": mean["teacher"],
            "fp_acc": mean["fp"],
            "qd4_acc": mean["qd4"],
            "q4_acc": mean["q4"],
            "uniform2_acc": mean["uniform2"],
            "dq2_acc": mean["dq2"],
            "qd4_gap_to_fp": mean["fp"] - mean["qd4"],
            "qd4_gain_vs_q4": mean["qd4"] - mean["q4"],
            "qd4_gain_vs_q4_se": _paired_se(res["qd4"], res["q4"]),
            "pm4_acc": mean["pm4"],
            "qd4_gain_vs_pm4": mean["qd4"] - mean["pm4"],
            "fp_kd_acc": mean["fp_kd"],
            "fp_kd_gain_vs_fp": mean["fp_kd"] - mean["fp"],
            "fp_kd_gain_vs_fp_se": _paired_se(res["fp_kd"], res["fp"]),
            "teacher_gap_to_fp": mean["teacher"] - mean["fp"],
            "dq2_gain_vs_uniform2": mean["dq2"] - mean["uniform2"],
            "dq2_distill_loss_ratio": mean["dq2_loss_ratio"],
            "qd4_compression_vs_teacher": sizes["teacher"] / sizes["qd4"],
            "qd4_size_bits": sizes["qd4"],
            "teacher_size_bits": sizes["teacher"],
        },
        figures=[path],
        tables={"models": rows},
        notes=[
            f"buckets of {bucket}, T={temperature:g}, loss {alpha:g}·T²·KL + "
            f"{1 - alpha:.1f}·CE; all students start from the same initialisation and see the "
            "same batches; sizes count codes, (α, β) per bucket in 32 bits, codebooks and FP "
            "biases.",
            "differentiable quantization learns only the points (weights fixed), from the FP "
            "student, initialised uniformly so that it starts exactly at the 2-bit uniform "
            "baseline; dq2_distill_loss_ratio is the training distillation loss after/before.",
        ],
    )
