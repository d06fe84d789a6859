"""The search loop: alternation, progress, checkpoint/resume equals an uninterrupted run, DDP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from torchloom.nas.darts import DARTS
from torchloom.nas.genotype import Genotype
from torchloom.nas.search import Batch, GradientStrategy, evaluate, search, train_network
from torchloom.nas.space import GumbelMixing
from torchloom.nas.supernet import Supernet

OPS = ("none", "skip_connect", "avg_pool_3x3", "conv_1x1")


def model(seed: int = 0, **kw: Any) -> Supernet:
    torch.manual_seed(seed)  # the weights' initialisation
    g = torch.Generator().manual_seed(seed)
    return Supernet(C=2, layers=2, steps=2, ops=OPS, reductions=(1,), generator=g, **kw)


def data(n_batches: int = 3, seed: int = 0) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g))
        for _ in range(n_batches)
    ]


class Crash(DARTS):
    """DARTS that dies at the start of epoch ``crash_at``."""

    def __init__(self, crash_at: int, **kw: Any) -> None:
        super().__init__(**kw)
        self.crash_at = crash_at

    def step(self, model: Supernet, train: Batch, val: Batch, epoch: int) -> dict[str, float]:
        if epoch == self.crash_at:
            raise KeyboardInterrupt
        return super().step(model, train, val, epoch)


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    train, val = data(3, 0), data(2, 1)
    kw: dict[str, Any] = {"order": 1, "a_lr": 1e-2}
    ref = search(
        DARTS(**kw),
        model(mixing=GumbelMixing(generator=torch.Generator().manual_seed(5))),
        train,
        val,
        epochs=3,
    )
    ckpt = tmp_path / "search.pt"
    m1 = model(mixing=GumbelMixing(generator=torch.Generator().manual_seed(5)))
    with pytest.raises(KeyboardInterrupt):
        search(Crash(2, **kw), m1, train, val, epochs=3, checkpoint=ckpt)
    assert ckpt.exists()
    m2 = model(seed=9, mixing=GumbelMixing(generator=torch.Generator().manual_seed(77)))
    res = search(DARTS(**kw), m2, train, val, epochs=3, checkpoint=ckpt)
    assert len(res.history) == 3
    assert ref.model is not None
    for (k, a), b in zip(ref.model.state_dict().items(), m2.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    assert res.genotype == ref.genotype
    # without resume it starts from scratch and differs
    m3 = model(seed=9)
    search(DARTS(**kw), m3, train, val, epochs=1, checkpoint=ckpt, resume=False)
    assert not torch.allclose(m3.alpha_normal, m2.alpha_normal)


def test_alternation_and_warmup() -> None:
    calls: list[str] = []

    class Recording(GradientStrategy):
        def arch_step(self, model: Supernet, train: Batch, val: Batch) -> dict[str, float]:
            calls.append("arch")
            return {}

        def weight_step(self, model: Supernet, batch: Batch) -> dict[str, float]:
            calls.append("weight")
            return super().weight_step(model, batch)

    res = search(Recording(arch_start_epoch=1), model(), data(2), data(1), epochs=2)
    assert calls == ["weight", "weight", "arch", "weight", "arch", "weight"]
    assert isinstance(res.genotype, Genotype)
    assert [h["epoch"] for h in res.history] == [0.0, 1.0]


def test_progress_and_log_are_used() -> None:
    seen: list[Any] = []
    lines: list[str] = []

    def progress(it: Any, total: int | None = None, description: str = "") -> Any:
        seen.append((total, description))
        yield from it

    search(DARTS(), model(), data(2), data(2), epochs=2, progress=progress, log=lines.append)
    assert seen == [(2, "search 1/2"), (2, "search 2/2")]
    assert len(lines) == 2 and "train_loss=" in lines[0]


def test_cosine_schedule() -> None:
    s = DARTS(w_lr=0.1, w_lr_min=0.0)
    s.setup(model(), 4)
    assert [round(s.lr_at(e), 6) for e in range(4)] == [0.1, 0.085355, 0.05, 0.014645]


def test_weight_step_only_touches_weights() -> None:
    m = model()
    s = DARTS()
    s.setup(m, 1)
    alphas = [a.clone() for a in m.arch_parameters()]
    s.weight_step(m, data(1)[0])
    assert all(torch.equal(a, b) for a, b in zip(alphas, m.arch_parameters()))


def test_nan_loss_is_reported() -> None:
    m = model()
    s = DARTS()
    s.setup(m, 1)
    x, y = data(1)[0]
    with pytest.raises(FloatingPointError, match="training loss is not finite"):
        s.weight_step(m, (x * float("nan"), y))


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="model must be a Supernet or a ChainSupernet"):
        search(DARTS(), torch.nn.Linear(2, 2), data(1), data(1), 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Strategy protocol"):
        search(object(), model(), data(1), data(1), 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="train must yield"):
        search(DARTS(), model(), [], data(1), 1)


def test_train_network_and_evaluate() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 10, generator=g)
    x = torch.randn(64, 1, 8, 8, generator=g)
    y = (x.flatten(1) @ w).argmax(-1)
    batches = [(x[:32], y[:32]), (x[32:], y[32:])]
    before = evaluate(net, batches)
    train_network(net, batches, epochs=30, lr=0.1)
    assert evaluate(net, batches) > max(before, 0.9)


_WORKER = """
import sys
from pathlib import Path

import torch

sys.path.insert(0, sys.argv[2])
from test_search import data, model

from torchloom.core import distributed as tdist
from torchloom.nas.darts import DARTS
from torchloom.nas.search import search

torch.set_num_threads(1)
info = tdist.init_from_env("gloo")
m = model(seed=info.rank)  # different initialisations: search must broadcast rank 0's
search(DARTS(), m, data(2, seed=info.rank), data(2, seed=10 + info.rank), epochs=1)
torch.save(m.state_dict(), Path(sys.argv[1]) / f"rank{info.rank}.pt")
tdist.cleanup()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_ddp_ranks_stay_in_sync(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(_free_port()),
        str(script),
        str(tmp_path),
        str(Path(__file__).parent),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    for k in a:
        if "running" in k or "num_batches" in k:
            continue  # BatchNorm statistics are per rank, as with DDP
        torch.testing.assert_close(a[k], b[k], msg=k)
    assert not torch.equal(a["alpha_normal"], model(seed=0).alpha_normal)
