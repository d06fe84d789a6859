"""Run one recipe's quick mode on CUDA and print a one-line verdict (used by check.sh)."""

import json
import sys
import time

from torchloom.core.recipes import discover, run_recipe

name = sys.argv[1]
start = time.time()
res = run_recipe(
    discover()[name], quick=True, device="cuda", out_dir="/tmp/runs", show_progress=False
)
failed = [c.claim.metric for c in res.claims if c.checked and not c.holds]
metrics = json.dumps(res.to_json()["metrics"], default=str)[:300]
print(f"RECIPE {name} ok={res.ok} {time.time() - start:.1f}s failed={failed} {metrics}")
