"""Small datasets that need no network, synthetic generators, and real loaders.

Embedded: :func:`digits` (scikit-learn's bundled 8×8 digits) and :func:`sequential_digits`.
Synthetic (seeded through a ``torch.Generator``): :func:`two_moons`, :func:`spirals`,
:func:`blobs`. Real: :func:`mnist` and :func:`cifar10` read the standard files from ``root``
(IDX files, CIFAR's python pickles); ``download=True`` fetches them with torchvision, which needs
torchvision and a network, and says so when either is missing.
"""

from __future__ import annotations

import gzip
import math
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from torchloom.core.checks import check_positive

__all__ = [
    "Split",
    "blobs",
    "cifar10",
    "digits",
    "mnist",
    "sequential_digits",
    "spirals",
    "two_moons",
]


@dataclass(frozen=True)
class Split:
    """A train/test split of tensors: ``x_*`` inputs, ``y_*`` integer labels ``(N,)``."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def num_classes(self) -> int:
        return int(torch.cat([self.y_train, self.y_test]).max()) + 1

    def to(self, device: str | torch.device) -> Split:
        parts = (self.x_train, self.y_train, self.x_test, self.y_test)
        return Split(*(t.to(device) for t in parts))


def _split(x: torch.Tensor, y: torch.Tensor, test_fraction: float, seed: int) -> Split:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(x.shape[0], generator=g)
    n_test = max(1, round(test_fraction * x.shape[0]))
    te, tr = perm[:n_test], perm[n_test:]
    return Split(x[tr], y[tr], x[te], y[te])


def digits(test_fraction: float = 0.25, seed: int = 0, flatten: bool = False) -> Split:
    """scikit-learn's 1797 8×8 digits, pixels scaled to [0, 1], seeded split.

    Shapes: ``x`` is ``(N, 1, 8, 8)`` (``(N, 64)`` with ``flatten=True``), ``y`` is ``(N,)``.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    if not flatten:
        x = x.reshape(-1, 1, 8, 8)
    return _split(x, y, test_fraction, seed)


def sequential_digits(test_fraction: float = 0.25, seed: int = 0) -> Split:
    """:func:`digits` as pixel sequences ``(N, 64, 1)`` (row-major), the small stand-in for
    sequential MNIST."""
    s = digits(test_fraction, seed, flatten=True)
    return Split(s.x_train.unsqueeze(-1), s.y_train, s.x_test.unsqueeze(-1), s.y_test)


def _gen(generator: torch.Generator | None) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return generator


def _count(n: int, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be a positive int, got {n!r}")
    return n


def two_moons(
    n: int = 200, noise: float = 0.1, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaving half circles (as scikit-learn's ``make_moons``).

    Returns ``x`` of shape ``(n, 2)`` and labels ``(n,)`` in {0, 1}.
    """
    _count(n)
    check_positive(noise, "noise", strict=False)
    g = _gen(generator)
    n0 = n // 2
    n1 = n - n0
    t0 = torch.linspace(0, math.pi, n0)
    t1 = torch.linspace(0, math.pi, n1)
    x0 = torch.stack([torch.cos(t0), torch.sin(t0)], 1)
    x1 = torch.stack([1 - torch.cos(t1), 0.5 - torch.sin(t1)], 1)
    x = torch.cat([x0, x1]) + noise * torch.randn(n, 2, generator=g)
    y = torch.cat([torch.zeros(n0, dtype=torch.long), torch.ones(n1, dtype=torch.long)])
    perm = torch.randperm(n, generator=g)
    return x[perm], y[perm]


def spirals(
    n: int = 300,
    n_classes: int = 2,
    noise: float = 0.05,
    turns: float = 1.5,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_classes`` interleaved Archimedean spirals in 2D: ``x (n, 2)``, ``y (n,)``."""
    _count(n)
    _count(n_classes, "n_classes")
    check_positive(noise, "noise", strict=False)
    g = _gen(generator)
    y = torch.arange(n) % n_classes
    r = torch.rand(n, generator=g)
    theta = 2 * math.pi * turns * r + 2 * math.pi * y / n_classes
    x = torch.stack([r * torch.cos(theta), r * torch.sin(theta)], 1)
    x = x + noise * torch.randn(n, 2, generator=g)
    perm = torch.randperm(n, generator=g)
    return x[perm], y[perm]


def blobs(
    n: int = 300,
    centers: int | torch.Tensor = 3,
    dim: int = 2,
    std: float = 1.0,
    box: float = 10.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Isotropic Gaussian blobs: ``x (n, dim)``, labels ``(n,)``.

    ``centers`` is a count (drawn uniformly in ``[-box, box]^dim``) or a ``(K, dim)`` tensor.
    """
    _count(n)
    check_positive(std, "std")
    g = _gen(generator)
    if isinstance(centers, torch.Tensor):
        if centers.dim() != 2:
            raise ValueError(f"centers must have shape (K, dim), got {tuple(centers.shape)}")
        c = centers.float()
        dim = c.shape[1]
    else:
        _count(centers, "centers")
        _count(dim, "dim")
        c = (torch.rand(centers, dim, generator=g) * 2 - 1) * box
    y = torch.arange(n) % c.shape[0]
    x = c[y] + std * torch.randn(n, dim, generator=g)
    perm = torch.randperm(n, generator=g)
    return x[perm], y[perm]


# --- real datasets ------------------------------------------------------------------------

_MNIST_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_idx(path: Path) -> torch.Tensor:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = data[4 + 4 * ndim :]
    if len(body) != math.prod(shape):
        raise ValueError(f"{path}: header says {shape}, body has {len(body)} bytes")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape)


def _find(root: Path, stem: str) -> Path | None:
    for sub in ("MNIST/raw", "raw", "."):
        for suffix in ("", ".gz"):
            p = root / sub / (stem + suffix)
            if p.exists():
                return p
    return None


def _torchvision_download(name: str, root: Path, train: bool) -> None:
    try:
        import torchvision
    except ImportError as e:
        raise ImportError(
            f"{name}(download=True) needs torchvision (pip install torchvision) and a network; "
            f"or place the files under {root}"
        ) from e
    cls = {"mnist": torchvision.datasets.MNIST, "cifar10": torchvision.datasets.CIFAR10}[name]
    try:
        cls(str(root), train=train, download=True)
    except Exception as e:  # network failures come in many types
        msg = f"downloading {name} into {root} failed (is there a network?): {e}"
        raise RuntimeError(msg) from e


def mnist(
    root: str | Path, train: bool = True, download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST from the IDX files under ``root`` (``root/MNIST/raw`` as torchvision lays them out,
    or ``root`` itself; ``.gz`` accepted). Returns ``x (N, 1, 28, 28)`` in [0, 1], ``y (N,)``."""
    root = Path(root)
    img_stem, lbl_stem = _MNIST_FILES[train]
    img, lbl = _find(root, img_stem), _find(root, lbl_stem)
    if (img is None or lbl is None) and download:
        _torchvision_download("mnist", root, train)
        img, lbl = _find(root, img_stem), _find(root, lbl_stem)
    if img is None or lbl is None:
        raise FileNotFoundError(
            f"MNIST files {img_stem}/{lbl_stem} not found under {root}; pass download=True "
            "(needs torchvision and a network) or copy them there"
        )
    x = _read_idx(img).unsqueeze(1).float() / 255.0
    y = _read_idx(lbl).long()
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"MNIST image/label counts differ: {x.shape[0]} vs {y.shape[0]}")
    return x, y


def cifar10(
    root: str | Path, train: bool = True, download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 from the python batches under ``root/cifar-10-batches-py``.

    Returns ``x (N, 3, 32, 32)`` in [0, 1] and ``y (N,)``.
    """
    root = Path(root)
    folder = root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    if not all((folder / n).exists() for n in names) and download:
        _torchvision_download("cifar10", root, train)
    missing = [n for n in names if not (folder / n).exists()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 batches {missing} not found under {folder}; pass download=True "
            "(needs torchvision and a network) or copy them there"
        )
    xs, ys = [], []
    for n in names:
        with open(folder / n, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        xs.append(torch.as_tensor(batch["data"], dtype=torch.uint8).reshape(-1, 3, 32, 32))
        ys.append(torch.as_tensor(batch["labels"], dtype=torch.long))
    return torch.cat(xs).float() / 255.0, torch.cat(ys)
