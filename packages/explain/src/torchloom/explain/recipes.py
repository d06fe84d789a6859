"""Reproductions of this package's papers, registered under ``torchloom.recipes``."""

from __future__ import annotations

from typing import Any

import numpy as np

from torchloom.core.recipes import Claim, Result, RunContext, recipe
from torchloom.explain.prototype import PrototypeLoss, PrototypeNetwork
from torchloom.explain.tell import TELLClustering

__all__ = ["prototype", "tell"]


def cluster_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Best accuracy over one-to-one maps of clusters to labels (Hungarian matching)."""
    from scipy.optimize import linear_sum_assignment

    k = int(max(y.max(), pred.max())) + 1
    table = np.zeros((k, k), dtype=np.int64)
    np.add.at(table, (pred, y), 1)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(y))


@recipe(
    name="explain.tell",
    papers=(1,),
    claims=[
        Claim(
            "nmi_gap_vs_kmeans",
            "<=",
            0.02,
            paper="TELL matches or beats k-means NMI (Table 3); mean over blobs, digits",
        ),
        Claim(
            "acc_gap_vs_kmeans",
            "<=",
            0.02,
            paper="TELL matches or beats k-means ACC (Table 3); mean over blobs, digits",
        ),
        Claim(
            "online_gap",
            "<=",
            0.03,
            paper="online (mini-batch) TELL close to full-batch (Section 5.4)",
        ),
    ],
)
def tell(ctx: RunContext) -> Result:
    """TELL vs scikit-learn KMeans on blobs and digits (NMI, ACC), online vs full-batch TELL,
    and the digits cluster centres decoded into readable prototype images."""
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_digits, make_blobs
    from sklearn.metrics import normalized_mutual_info_score as nmi

    xb, yb = make_blobs(
        n_samples=ctx.pick(600, 3000), centers=5, cluster_std=1.0, random_state=ctx.seed
    )
    xd, yd = load_digits(return_X_y=True)
    sets = {
        "blobs": (xb.astype(np.float32), yb, {"autoencoder": False}),
        "digits": (
            (xd / 16).astype(np.float32),
            yd,
            {"autoencoder": True, "pretrain_epochs": ctx.pick(12, 60), "epochs": ctx.pick(6, 30)},
        ),
    }
    rows: list[dict[str, Any]] = []
    models = {}
    for name in ctx.progress(list(sets), description="datasets"):
        x, y, kw = sets[name]
        k = len(np.unique(y))
        km = KMeans(k, n_init=10, random_state=ctx.seed).fit(x)
        full = TELLClustering(k, random_state=ctx.seed, **kw).fit(x)  # type: ignore[arg-type]
        models[name] = full
        # online: the autoencoder is pretrained, then centres and network learn only from a
        # stream of mini-batches through partial_fit (the first batch initialises the centres)
        online = TELLClustering(k, random_state=ctx.seed, **kw)  # type: ignore[arg-type]
        online.pretrain(x)
        rng = np.random.default_rng(ctx.seed)
        for _ in range(ctx.pick(3, 10)):
            for idx in np.array_split(rng.permutation(len(x)), max(1, len(x) // 128)):
                online.partial_fit(x[idx])
        preds = {"kmeans": km.labels_, "tell": full.predict(x), "tell_online": online.predict(x)}
        row: dict[str, Any] = {"dataset": name}
        for m, p in preds.items():
            row[f"{m}_nmi"] = float(nmi(y, p))
            row[f"{m}_acc"] = cluster_accuracy(y, p)
        rows.append(row)
        ctx.log(
            f"{name}: NMI kmeans {row['kmeans_nmi']:.3f} TELL {row['tell_nmi']:.3f} "
            f"online {row['tell_online_nmi']:.3f}"
        )
    metrics = {
        "nmi_gap_vs_kmeans": float(np.mean([r["kmeans_nmi"] - r["tell_nmi"] for r in rows])),
        "acc_gap_vs_kmeans": float(np.mean([r["kmeans_acc"] - r["tell_acc"] for r in rows])),
        "online_gap": float(np.mean([r["tell_nmi"] - r["tell_online_nmi"] for r in rows])),
        "digits_nmi_tell": rows[1]["tell_nmi"],
        "digits_nmi_kmeans": rows[1]["kmeans_nmi"],
    }
    figures = [ctx.savefig(_prototype_figure(models["digits"].prototypes_), "tell_prototypes.png")]
    return Result(metrics=metrics, figures=figures, tables={"clustering": rows})


def _prototype_figure(protos: np.ndarray) -> Any:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(protos), figsize=(1.2 * len(protos), 1.5))
    for i, (ax, p) in enumerate(zip(np.atleast_1d(axes), protos)):
        ax.imshow(p.reshape(8, 8), cmap="gray_r")
        ax.set_title(f"c{i}", fontsize=8)
        ax.axis("off")
    fig.suptitle("TELL centres decoded to input space (digits)")
    return fig


@recipe(
    name="explain.prototype",
    papers=(40,),
    claims=[
        Claim(
            "acc_gap_vs_cnn",
            "<=",
            0.03,
            paper="prototype network within ~1 point of a plain CNN on MNIST (Section 4.1)",
        ),
    ],
)
def prototype(ctx: RunContext) -> Result:
    """Prototype network vs a plain CNN with the same encoder on digits; decoded prototypes."""
    import torch
    from torch import nn

    from torchloom.core.data import digits

    data = digits(seed=ctx.seed)
    xtr, ytr, xte, yte = data.x_train, data.y_train, data.x_test, data.y_test
    epochs = ctx.pick(15, 150)
    torch.manual_seed(ctx.seed)
    proto = PrototypeNetwork(10, n_prototypes=15, image_size=8, code=16)
    cnn_base = PrototypeNetwork(10, n_prototypes=15, image_size=8, code=16)
    cnn = nn.Sequential(cnn_base.encoder, nn.Sigmoid(), nn.Linear(16, 10))
    loss_fn = PrototypeLoss()
    opt_p = torch.optim.Adam(proto.parameters(), lr=3e-3)
    opt_c = torch.optim.Adam(cnn.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(ctx.seed)
    history: list[dict[str, Any]] = []
    for epoch in ctx.progress(range(epochs), description="epochs"):
        for idx in torch.randperm(len(xtr), generator=g).split(64):
            opt_p.zero_grad()
            loss, parts = loss_fn(proto, xtr[idx], ytr[idx])
            loss.backward()
            opt_p.step()
            opt_c.zero_grad()
            nn.functional.cross_entropy(cnn(xtr[idx]), ytr[idx]).backward()
            opt_c.step()
        history.append({"epoch": epoch, **parts})
    with torch.no_grad():
        acc_p = float((proto(xte).argmax(1) == yte).float().mean())
        acc_c = float((cnn(xte).argmax(1) == yte).float().mean())
    ctx.log(f"prototype network {acc_p:.3f}  plain CNN {acc_c:.3f}")
    figures = [ctx.savefig(_decoded_figure(proto), "prototypes_decoded.png")]
    return Result(
        metrics={
            "acc_prototype": acc_p,
            "acc_cnn": acc_c,
            "acc_gap_vs_cnn": acc_c - acc_p,
            "final_r1": history[-1]["r1"],
            "final_r2": history[-1]["r2"],
        },
        figures=figures,
        tables={
            "accuracy": [
                {"model": "prototype network", "acc": acc_p},
                {"model": "plain CNN", "acc": acc_c},
            ],
            "training": history,
        },
    )


def _decoded_figure(model: PrototypeNetwork) -> Any:
    import matplotlib.pyplot as plt

    protos = model.decode_prototypes()
    w = model.classifier.weight.detach()
    fig, axes = plt.subplots(1, len(protos), figsize=(1.1 * len(protos), 1.6))
    for j, ax in enumerate(np.atleast_1d(axes)):
        ax.imshow(protos[j, 0].numpy(), cmap="gray_r")
        ax.set_title(f"p{j}→{int(w[:, j].argmax())}", fontsize=7)
        ax.axis("off")
    fig.suptitle("decoded prototypes (→ class whose weight on −distance is largest)")
    return fig
