"""Reproductions of this package's papers, registered under ``torchloom.recipes``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from torchloom.boost.gbnn import GBNNClassifier, GBNNRegressor
from torchloom.core.recipes import Claim, Result, RunContext, recipe

__all__ = ["gbnn"]


def _datasets(seed: int) -> dict[str, tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_diabetes, load_digits, load_wine
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    out = {}
    for name, loader, task in (
        ("digits", load_digits, "clf"),
        ("wine", load_wine, "clf"),
        ("diabetes", load_diabetes, "reg"),
    ):
        x, y = loader(return_X_y=True)
        strat = y if task == "clf" else None
        xtr, xte, ytr, yte = train_test_split(
            x, y, test_size=0.25, random_state=seed, stratify=strat
        )
        sc = StandardScaler().fit(xtr)
        xtr, xte = sc.transform(xtr), sc.transform(xte)
        if task == "reg":
            mu, sd = ytr.mean(), ytr.std()
            ytr, yte = (ytr - mu) / sd, (yte - mu) / sd
        out[name] = (task, xtr, ytr, xte, yte)
    return out


class _MLP(nn.Module):
    def __init__(self, d: int, hidden: int, k: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(d, hidden, dtype=torch.float64)
        self.out = nn.Linear(hidden, k, dtype=torch.float64)

    def forward(self, x: torch.Tensor, keep: int | None = None) -> torch.Tensor:
        h = torch.relu(self.hidden(x))
        if keep is not None:  # switch off the last units, as done for GB-NN
            h = torch.cat([h[:, :keep], torch.zeros_like(h[:, keep:])], 1)
        out: torch.Tensor = self.out(h)
        return out


def _train_mlp(
    task: str, x: torch.Tensor, y: torch.Tensor, hidden: int, epochs: int, seed: int
) -> _MLP:
    torch.manual_seed(seed)
    k = int(y.max()) + 1 if task == "clf" else 1
    net = _MLP(x.shape[1], hidden, k).to(x.device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(epochs):
        opt.zero_grad()
        out = net(x)
        if task == "clf":
            loss = nn.functional.cross_entropy(out, y)
        else:
            loss = ((out[:, 0] - y) ** 2).mean()
        loss.backward()
        opt.step()
    return net


def _score(task: str, pred: torch.Tensor, y: torch.Tensor) -> float:
    if task == "clf":
        return float((pred.argmax(1) == y).double().mean())
    p = pred[:, 0]
    return float(1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum())


@recipe(
    name="boost.gbnn",
    papers=(46,),
    claims=[
        Claim(
            "clf_gap_vs_mlp",
            "<=",
            0.02,
            paper="GB-NN accuracy on par with an MLP of the same size (Tables 3-4)",
        ),
        Claim(
            "clf_gap_vs_sklearn_gb",
            "<=",
            0.02,
            paper="GB-NN competitive with gradient-boosted trees (Tables 3-4)",
        ),
        Claim(
            "keep_after_switch_off",
            ">=",
            0.95,
            paper="last units can be removed with little loss (Section 5); mean over digits, wine",
        ),
        Claim("switch_off_advantage", ">", 0.0, paper="the same cut hurts a standard MLP more"),
    ],
)
def gbnn(ctx: RunContext) -> Result:
    """GB-NN vs an Adam-trained MLP of the same size vs scikit-learn's GradientBoosting on
    digits, wine and diabetes; then switch off the last 25% of hidden units."""
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

    steps, units = ctx.pick(10, 50), 4
    hidden = steps * units
    cut = hidden // 4
    rows: list[dict[str, Any]] = []
    data = _datasets(ctx.seed)
    for name in ctx.progress(list(data), description="datasets"):
        task, xtr, ytr, xte, yte = data[name]
        xt, xe = torch.tensor(xtr, device=ctx.device), torch.tensor(xte, device=ctx.device)
        label_dtype = torch.float64 if task == "reg" else torch.long
        yt = torch.tensor(ytr, dtype=label_dtype, device=ctx.device)
        ye = torch.tensor(yte, dtype=label_dtype, device=ctx.device)
        cls = GBNNClassifier if task == "clf" else GBNNRegressor
        model = cls(
            n_steps=steps,
            units_per_step=units,
            epochs=ctx.pick(15, 60),
            learning_rate=0.5,
            weight_decay=1e-3,
            random_state=ctx.seed,
            device=ctx.device,
        ).fit(xt, yt)
        g_full = _score(task, model.decision_function(xe), ye)
        g_cut = _score(task, model.switch_off(cut).decision_function(xe), ye)
        mlp = _train_mlp(task, xt, yt, hidden, ctx.pick(150, 600), ctx.seed)
        with torch.no_grad():
            m_full = _score(task, mlp(xe), ye)
            m_cut = _score(task, mlp(xe, keep=hidden - cut), ye)
        gb_cls = GradientBoostingClassifier if task == "clf" else GradientBoostingRegressor
        gb = gb_cls(n_estimators=ctx.pick(20, 200), random_state=ctx.seed).fit(xtr, ytr)
        if task == "clf":
            s_gb = float((gb.predict(xte) == yte).mean())
        else:
            s_gb = float(gb.score(xte, yte))
        rows.append(
            {
                "dataset": name,
                "task": task,
                "gbnn": g_full,
                "mlp": m_full,
                "sklearn_gb": s_gb,
                "gbnn_cut": g_cut,
                "mlp_cut": m_cut,
                "gbnn_keep": g_cut / g_full,
                "mlp_keep": m_cut / m_full,
            }
        )
        ctx.log(
            f"{name}: GB-NN {g_full:.3f} (cut {g_cut:.3f})  MLP {m_full:.3f} "
            f"(cut {m_cut:.3f})  sklearn GB {s_gb:.3f}"
        )
    clf = [r for r in rows if r["task"] == "clf"]
    metrics = {
        "clf_gap_vs_mlp": float(np.mean([r["mlp"] - r["gbnn"] for r in clf])),
        "clf_gap_vs_sklearn_gb": float(np.mean([r["sklearn_gb"] - r["gbnn"] for r in clf])),
        # score ratios are only meaningful for accuracies (R² can be negative)
        "keep_after_switch_off": float(np.mean([r["gbnn_keep"] for r in clf])),
        "keep_after_switch_off_mlp": float(np.mean([r["mlp_keep"] for r in clf])),
        "reg_r2_gbnn": next(r["gbnn"] for r in rows if r["task"] == "reg"),
        "reg_r2_mlp": next(r["mlp"] for r in rows if r["task"] == "reg"),
        "reg_r2_sklearn_gb": next(r["sklearn_gb"] for r in rows if r["task"] == "reg"),
        "reg_r2_gbnn_cut": next(r["gbnn_cut"] for r in rows if r["task"] == "reg"),
    }
    metrics["switch_off_advantage"] = (
        metrics["keep_after_switch_off"] - metrics["keep_after_switch_off_mlp"]
    )
    figures = [ctx.savefig(_plot(rows), "gbnn_scores.png")]
    return Result(metrics=metrics, figures=figures, tables={"scores": rows})


def _plot(rows: list[dict[str, Any]]) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [r["dataset"] for r in rows]
    keys = ["gbnn", "mlp", "sklearn_gb", "gbnn_cut", "mlp_cut"]
    w = 0.16
    for i, k in enumerate(keys):
        ax.bar(np.arange(len(rows)) + (i - 2) * w, [r[k] for r in rows], w, label=k)
    ax.set_xticks(np.arange(len(rows)), names)
    ax.set_ylabel("accuracy / R²")
    ax.set_title("GB-NN vs MLP vs gradient-boosted trees; '_cut' = last 25% units off")
    ax.legend(fontsize=7, ncol=3)
    return fig
