"""Embedded datasets, synthetic generators and the file-based real loaders."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from torchloom.core import data


def test_digits_split_is_seeded_and_disjoint() -> None:
    a, b = data.digits(seed=1), data.digits(seed=1)
    assert torch.equal(a.x_train, b.x_train)
    assert a.x_train.shape[1:] == (1, 8, 8) and a.num_classes == 10
    assert a.x_train.shape[0] + a.x_test.shape[0] == 1797
    assert 0.0 <= float(a.x_train.min()) and float(a.x_train.max()) <= 1.0
    flat = data.digits(seed=1, flatten=True)
    torch.testing.assert_close(flat.x_train, a.x_train.reshape(-1, 64))
    seq = data.sequential_digits(seed=1)
    assert seq.x_train.shape[1:] == (64, 1)
    # rows are unique images, so a disjoint split shares none
    tr = {tuple(r.tolist()) for r in flat.x_train}
    assert sum(tuple(r.tolist()) in tr for r in flat.x_test) < 10  # a few true duplicates exist


def test_generators_shapes_labels_and_seeding() -> None:
    for fn in (data.two_moons, data.spirals, data.blobs):
        x1, y1 = fn(n=101, generator=torch.Generator().manual_seed(0))
        x2, y2 = fn(n=101, generator=torch.Generator().manual_seed(0))
        assert x1.shape == (101, 2) and y1.shape == (101,)
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x, y = data.blobs(n=500, centers=torch.tensor([[0.0, 0.0], [10.0, 10.0]]), std=0.5)
    torch.testing.assert_close(x[y == 1].mean(0), torch.tensor([10.0, 10.0]), atol=0.2, rtol=0)


def test_two_moons_matches_sklearn_without_noise() -> None:
    from sklearn.datasets import make_moons

    x, _ = data.two_moons(n=100, noise=0.0)
    ref, _ = make_moons(n_samples=100, noise=0.0, shuffle=False)
    # same point set: sort both lexicographically and compare in float64
    ours = np.array(sorted(map(tuple, x.double().numpy())))
    theirs = np.array(sorted(map(tuple, ref)))
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_generator_errors() -> None:
    with pytest.raises(ValueError, match="n must be a positive int"):
        data.two_moons(n=0)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        data.spirals(generator=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="test_fraction"):
        data.digits(test_fraction=1.5)


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def test_mnist_reads_tiny_idx_files(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    imgs = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28))
    _write_idx(raw / "t10k-images-idx3-ubyte", imgs)
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.array([3, 1, 4, 1, 5]))
    x, y = data.mnist(tmp_path, train=False)
    assert x.shape == (5, 1, 28, 28) and y.tolist() == [3, 1, 4, 1, 5]
    torch.testing.assert_close(x[0, 0] * 255, torch.tensor(imgs[0], dtype=torch.float32))
    with pytest.raises(FileNotFoundError, match="download=True"):
        data.mnist(tmp_path, train=True)


def test_cifar10_reads_tiny_batch(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    arr = np.random.default_rng(0).integers(0, 256, size=(4, 3072), dtype=np.uint8)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": arr, "labels": [0, 9, 2, 3]}, f)
    x, y = data.cifar10(tmp_path, train=False)
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [0, 9, 2, 3]
    torch.testing.assert_close(x[1].reshape(-1) * 255, torch.tensor(arr[1], dtype=torch.float32))


def test_download_errors_name_package_and_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import types

    monkeypatch.setitem(sys.modules, "torchvision", None)  # as if not installed
    with pytest.raises(ImportError, match="needs torchvision"):
        data.mnist(tmp_path, download=True)

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("no route to host")

    fake = types.SimpleNamespace(datasets=types.SimpleNamespace(MNIST=offline, CIFAR10=offline))
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    with pytest.raises(RuntimeError, match="is there a network"):
        data.cifar10(tmp_path, download=True)
