"""Distributed helpers: two gloo processes == one process on the whole batch; no-op otherwise."""

from __future__ import annotations

import importlib
import json
import multiprocessing as mp
import os
import socket
import traceback
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from torchloom.core import distributed as D


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    X = torch.randn(8, 4, generator=g, dtype=torch.float64)
    Y = torch.randn(8, 2, generator=g, dtype=torch.float64)
    return X, Y


def _worker(r: int, port: int, out_dir: str) -> None:
    """One rank: the environment torchrun would set, then one DDP SGD step on its shard."""
    try:
        os.environ.update(
            RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )  # fmt: skip
        torch.set_num_threads(1)
        info = D.init_from_env(backend="gloo")
        torch.manual_seed(0)
        model = nn.Linear(4, 2).double()
        ddp = D.wrap_ddp(model)
        X, Y = _data()
        loader = D.distributed_loader(TensorDataset(X, Y), batch_size=4, shuffle=True, seed=3)
        D.set_epoch(loader, 0)
        xb, yb = next(iter(loader))
        opt = torch.optim.SGD(ddp.parameters(), lr=0.5)
        nn.functional.mse_loss(ddp(xb), yb).backward()
        opt.step()
        mean_rank = D.all_reduce_mean(torch.tensor([float(D.rank())], dtype=torch.float64))
        record = {
            "info": [info.rank, info.world_size, info.local_rank, info.backend, info.initialized],
            "main": D.is_main_process(),
            "ddp": type(ddp).__name__,
            "rows": [X.tolist().index(row) for row in xb.tolist()],
            "params": {k: v.tolist() for k, v in model.state_dict().items()},
            "mean_rank": mean_rank.item(),
        }
        D.barrier()
        D.cleanup()
    except BaseException:
        record = {"error": traceback.format_exc()}
    Path(out_dir, f"rank{r}.json").write_text(json.dumps(record))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs the fork start method")
def test_two_gloo_processes_match_one_process_on_whole_batch(tmp_path: Path) -> None:
    # DDP's constructor imports torch._dynamo; importing it once here, before forking, saves
    # each worker that import (forked workers start in well under a second).
    importlib.import_module("torch._dynamo")
    ctx = mp.get_context("fork")
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0, 0]
    recs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rec in recs:
        assert "error" not in rec, rec["error"]
    assert recs[0]["info"] == [0, 2, 0, "gloo", True]
    assert recs[1]["info"] == [1, 2, 1, "gloo", True]
    assert [rec["main"] for rec in recs] == [True, False]
    assert recs[0]["ddp"] == "DistributedDataParallel"
    assert recs[0]["mean_rank"] == recs[1]["mean_rank"] == 0.5
    # the two shards partition the batch
    assert sorted(recs[0]["rows"] + recs[1]["rows"]) == list(range(8))
    assert recs[0]["params"] == recs[1]["params"]  # identical, bit for bit

    # one process, one SGD step on the whole batch, same initialisation
    torch.manual_seed(0)
    model = nn.Linear(4, 2).double()
    X, Y = _data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    nn.functional.mse_loss(model(X), Y).backward()
    opt.step()
    for k, v in model.state_dict().items():
        got = torch.tensor(recs[0]["params"][k], dtype=torch.float64)
        torch.testing.assert_close(got, v, rtol=0, atol=1e-12)
        assert not torch.allclose(got, before[k])  # the step did something


@pytest.fixture
def no_dist_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_dist_env")
def test_single_process_is_a_no_op() -> None:
    info = D.init_from_env()
    assert not info.initialized and info.is_main
    assert (info.rank, info.world_size, info.local_rank, info.backend) == (0, 1, 0, None)
    assert D.rank() == 0 and D.world_size() == 1 and D.local_rank() == 0
    assert D.is_main_process() and not D.is_initialized()
    model = nn.Linear(2, 2)
    assert D.wrap_ddp(model) is model
    t = torch.tensor([1.0, 2.0])
    m = D.all_reduce_mean(t)
    assert torch.equal(m, t) and m is not t
    D.barrier()
    D.cleanup()


@pytest.mark.usefixtures("no_dist_env")
def test_single_process_loader_is_seeded() -> None:
    ds = TensorDataset(torch.arange(20.0))
    order = [
        torch.cat([b[0] for b in D.distributed_loader(ds, batch_size=6, seed=s)]).tolist()
        for s in (4, 4, 5)
    ]
    assert order[0] == order[1] != order[2]
    assert sorted(order[0]) == list(range(20))
    plain = D.distributed_loader(ds, batch_size=6, shuffle=False, drop_last=True)
    assert [len(b[0]) for b in plain] == [6, 6, 6]
    D.set_epoch(plain, 3)  # no-op without a DistributedSampler


def test_bad_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "zero")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="RANK must be an integer, got 'zero'"):
        D.init_from_env()
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK must lie in"):
        D.init_from_env()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="MASTER_ADDR must be set"):
        D.init_from_env()
    assert not D.is_initialized()
    with pytest.raises(TypeError, match="backend"):
        D.init_from_env(backend=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model"):
        D.wrap_ddp(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        D.distributed_loader(TensorDataset(torch.zeros(3)), batch_size=0)
    with pytest.raises(TypeError, match="sampler"):
        D.distributed_loader(TensorDataset(torch.zeros(3)), batch_size=1, sampler=None)
    with pytest.raises(TypeError, match="tensor"):
        D.all_reduce_mean(torch.ones(2, dtype=torch.long))
