"""DeepRobust as a peer for the structure attacks, importable without ``torch_sparse``.

DeepRobust (the issue's peer library for graph attacks) cannot be imported the usual way here:
``deeprobust/graph/global_attack/__init__.py`` imports ``prbcd``, which imports ``torch_sparse``
(not installed) and ``deeprobust.graph.defense_pyg``; the package's fallback for that
``ImportError`` then fails itself with ``NameError`` (it calls ``warnings.warn`` without
importing ``warnings``). So ``from deeprobust.graph.global_attack import DICE`` always raises.

**Workaround** (:func:`load_deeprobust`): the attacks we need live in files that do not touch
``torch_sparse`` (``base_attack.py``, ``dice.py``, ``random_attack.py``, ``mettack.py``,
``topology_attack.py``, and ``defense/gcn.py`` for the surrogate). The loader imports
``torch_geometric`` first, then registers an *empty* stand-in module object for
``deeprobust.graph.global_attack`` (and ``deeprobust.graph.defense``) whose ``__path__`` is the
real folder, so those files are executed by the normal import machinery as submodules without
running the broken package ``__init__``. ``BaseAttack`` is set on the stand-in right after
``base_attack.py`` runs, because the attack files do
``from deeprobust.graph.global_attack import BaseAttack``. No placeholder is inserted for
``torch_sparse`` or any other missing name. When the loading is done, ``sys.modules`` is put
back as it was (the stand-ins and the submodules loaded through them are removed), so nothing
outside the loader sees a partial package; the loaded classes are cached and returned.

The helpers :func:`deeprobust_dice` and :func:`deeprobust_metattack` run those attacks on PyG
``edge_index`` graphs. DeepRobust draws from the *global* NumPy / Python / torch random
states (not from a ``torch.Generator``); the helpers seed them from ``seed`` and restore them.
"""

from __future__ import annotations

import importlib
import importlib.util
import random
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from torchloom.core.checks import check_int
from torchloom.gnn.forward import check_graph

__all__ = ["deeprobust_dice", "deeprobust_metattack", "load_deeprobust"]

_CACHE: dict[str, Any] = {}

_ATTACK_FILES = ("base_attack", "dice", "random_attack", "mettack", "topology_attack")


def load_deeprobust() -> dict[str, Any]:
    """Import DeepRobust's global structure attacks and its GCN without ``torch_sparse``.

    See the module docstring for the workaround. Raises ``ImportError`` when DeepRobust is not
    installed.

    Returns:
        A dict with the classes ``BaseAttack``, ``DICE``, ``Random``, ``Metattack``,
        ``MetaApprox``, ``PGDAttack``, ``MinMax`` (from ``deeprobust.graph.global_attack``) and
        ``GCN`` (from ``deeprobust.graph.defense``), plus the module ``utils``
        (``deeprobust.graph.utils``).
    """
    if _CACHE:
        return dict(_CACHE)
    import torch_geometric  # noqa: F401  (loaded first, as DeepRobust's own imports expect)

    spec = importlib.util.find_spec("deeprobust")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("deeprobust is not installed")
    graph_dir = Path(next(iter(spec.submodule_search_locations))) / "graph"
    utils = importlib.import_module("deeprobust.graph.utils")  # plain module, imports cleanly

    stand_ins = {
        "deeprobust.graph.global_attack": graph_dir / "global_attack",
        "deeprobust.graph.defense": graph_dir / "defense",
    }
    saved = {
        k: v
        for k, v in sys.modules.items()
        if any(k == p or k.startswith(p + ".") for p in stand_ins)
    }
    for name in saved:
        del sys.modules[name]
    out: dict[str, Any] = {"utils": utils}
    try:
        for name, folder in stand_ins.items():
            pkg = types.ModuleType(name)
            pkg.__path__ = [str(folder)]
            pkg.__package__ = name
            sys.modules[name] = pkg
        ga = sys.modules["deeprobust.graph.global_attack"]
        for file in _ATTACK_FILES:
            mod = importlib.import_module(f"deeprobust.graph.global_attack.{file}")
            if file == "base_attack":
                ga.BaseAttack = mod.BaseAttack  # type: ignore[attr-defined]
        mods = {f: sys.modules[f"deeprobust.graph.global_attack.{f}"] for f in _ATTACK_FILES}
        out["BaseAttack"] = mods["base_attack"].BaseAttack
        out["DICE"] = mods["dice"].DICE
        out["Random"] = mods["random_attack"].Random
        out["Metattack"] = mods["mettack"].Metattack
        out["MetaApprox"] = mods["mettack"].MetaApprox
        out["PGDAttack"] = mods["topology_attack"].PGDAttack
        out["MinMax"] = mods["topology_attack"].MinMax
        out["GCN"] = importlib.import_module("deeprobust.graph.defense.gcn").GCN
    finally:
        for name in [
            k for k in sys.modules if any(k == p or k.startswith(p + ".") for p in stand_ins)
        ]:
            del sys.modules[name]
        sys.modules.update(saved)
    _CACHE.update(out)
    return dict(out)


class _GlobalSeed:
    """Seed NumPy, ``random`` and torch's global generators; restore them on exit."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        self.np_state = np.random.get_state()  # noqa: NPY002 (DeepRobust draws from it)
        self.py_state = random.getstate()
        self.torch_state = torch.get_rng_state()
        np.random.seed(self.seed)  # noqa: NPY002
        random.seed(self.seed)
        torch.manual_seed(self.seed)

    def __exit__(self, *exc: object) -> None:
        np.random.set_state(self.np_state)  # noqa: NPY002
        random.setstate(self.py_state)
        torch.set_rng_state(self.torch_state)


def _to_scipy(edge_index: Tensor, num_nodes: int) -> Any:
    import scipy.sparse as sp

    ei = edge_index.detach().cpu().numpy()
    keep = ei[0] != ei[1]
    data = np.ones(int(keep.sum()), dtype=np.float32)
    a = sp.csr_matrix((data, (ei[0][keep], ei[1][keep])), shape=(num_nodes, num_nodes))
    a = ((a + a.T) > 0).astype(np.float32)
    return sp.csr_matrix(a)


def _from_adj(adj: Any, device: torch.device) -> Tensor:
    import scipy.sparse as sp
    from torch_geometric.utils import coalesce

    if isinstance(adj, Tensor):
        a = adj.detach().cpu().to_dense() if adj.is_sparse else adj.detach().cpu()
        r, c = torch.nonzero(a > 0.5, as_tuple=True)
    else:
        coo = sp.coo_matrix(adj)
        m = coo.data > 0.5
        r, c = torch.as_tensor(coo.row[m]).long(), torch.as_tensor(coo.col[m]).long()
    keep = r != c
    n = adj.shape[0]
    ei = coalesce(torch.stack([r[keep], c[keep]]), num_nodes=n)
    return ei.to(device)


def deeprobust_dice(edge_index: Tensor, y: Tensor, n_perturbations: int, seed: int = 0) -> Tensor:
    """DeepRobust's ``DICE`` on a PyG graph (peer of :func:`~torchloom.gnn.dice_attack`).

    Args:
        edge_index: undirected edges ``(2, E)``.
        y: integer labels ``(N,)``.
        n_perturbations: number of undirected pairs changed (DeepRobust draws the split
            between deletions and insertions as ``Binomial(n, 1/2)``).
        seed: seed of the global NumPy / Python / torch generators it draws from.

    Returns:
        Perturbed undirected ``edge_index`` (both directions, coalesced).
    """
    check_graph(torch.zeros(y.shape[0], 1), edge_index, y)
    check_int(n_perturbations, "n_perturbations", 0)
    dr = load_deeprobust()
    n = y.shape[0]
    adj = _to_scipy(edge_index, n)
    attack = dr["DICE"]()
    with _GlobalSeed(seed):
        _quiet(attack.attack, adj, y.cpu().numpy(), n_perturbations)
    return _from_adj(attack.modified_adj, edge_index.device)


def deeprobust_metattack(
    x: Tensor,
    edge_index: Tensor,
    y: Tensor,
    train_mask: Tensor,
    n_perturbations: int,
    variant: str = "Meta-Self",
    train_iters: int = 100,
    seed: int = 0,
) -> Tensor:
    """DeepRobust's ``Metattack`` (``Meta-Self``, as in STABLE's ``generate_attack.py``) or
    ``MetaApprox`` (``A-Meta-Self``) poisoning of a PyG graph, with DeepRobust's own linearised
    GCN surrogate (16 hidden units, no ReLU, as in STABLE's
    ``generate_attack.py``) trained on the clean graph.

    Args:
        x: features ``(N, F)``.
        edge_index: clean undirected edges ``(2, E)``.
        y: integer labels ``(N,)`` (only the training nodes' are used for the surrogate; the
            attack self-trains on its predictions for the rest).
        train_mask: boolean ``(N,)`` labelled nodes.
        n_perturbations: number of undirected pairs flipped.
        variant: ``"Meta-Self"`` (exact meta-gradients) or ``"A-Meta-Self"`` (approximate).
        train_iters: inner training steps of the meta-gradient.
        seed: seed of the global generators DeepRobust draws from.

    Returns:
        Perturbed undirected ``edge_index``.
    """
    check_graph(x, edge_index, y)
    check_int(n_perturbations, "n_perturbations", 0)
    check_int(train_iters, "train_iters", 1)
    if variant not in ("Meta-Self", "A-Meta-Self"):
        raise ValueError(f"variant must be 'Meta-Self' or 'A-Meta-Self', got {variant!r}")
    dr = load_deeprobust()
    n = x.shape[0]
    adj = torch.as_tensor(_to_scipy(edge_index, n).toarray())
    feats = x.detach().cpu().float()
    labels = y.detach().cpu().long()
    idx_train = np.nonzero(train_mask.cpu().numpy())[0]
    idx_unlabeled = np.nonzero(~train_mask.cpu().numpy())[0]
    with _GlobalSeed(seed):
        surrogate = dr["GCN"](
            nfeat=feats.shape[1],
            nclass=int(labels.max()) + 1,
            nhid=16,
            dropout=0.5,
            with_relu=False,
            with_bias=True,
            weight_decay=5e-4,
            device="cpu",
        )
        surrogate.fit(feats, adj, labels, idx_train)
        cls = dr["Metattack"] if variant == "Meta-Self" else dr["MetaApprox"]
        attack = cls(
            model=surrogate,
            nnodes=n,
            feature_shape=feats.shape,
            attack_structure=True,
            attack_features=False,
            device="cpu",
            lambda_=0,
            train_iters=train_iters,
        )
        _quiet(
            attack.attack,
            feats,
            adj,
            labels,
            idx_train,
            idx_unlabeled,
            n_perturbations,
            ll_constraint=False,
        )
    return _from_adj(attack.modified_adj, edge_index.device)


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with stdout and stderr silenced (DeepRobust prints progress bars)."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*args, **kwargs)
