"""``torchrun -m``-style launch of the CLI: two gloo ranks run a distributed recipe, only rank 0
prints and writes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
import torch
import torch.distributed as dist
from torchloom.cli.main import main
from torchloom.core.recipes import Claim, Result, recipe

@recipe(name="toy.dist", papers=(1,), claims=[Claim("world", "==", 2.0)], distributed=True)
def toy(ctx):
    t = torch.ones(1)
    dist.all_reduce(t)  # needs the process group the CLI initialised
    return Result(metrics={"world": float(t.item()), "rank": float(dist.get_rank())})

raise SystemExit(main(sys.argv[1:], recipes={"toy.dist": toy}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_ranks_run_a_distributed_recipe(tmp_path: Path) -> None:
    script = tmp_path / "launch.py"
    script.write_text(SCRIPT)
    out = tmp_path / "runs"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        str(script),
        "repro",
        "toy.dist",
        "--out",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((out / "toy.dist" / "result.json").read_text())
    assert data["ok"] and data["metrics"]["world"] == 2.0
    assert data["metrics"]["rank"] == 0.0  # the file is rank 0's
    assert proc.stdout.count("toy.dist") >= 1
    assert proc.stdout.count("world == 2") == 1  # one claims table: rank 1 stays quiet
