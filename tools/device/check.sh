#!/usr/bin/env bash
# Runs ON the device machine (carry .snap and .whl): CUDA tests, recipes' quick modes on CUDA,
# the LIF benchmark on CUDA. Usage there: [PARTS=tests,recipes,bench] bash .snap/check.sh [recipe-regex]
cd "$(dirname "$0")"
SNAP=$(pwd)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
# one torch thread per process: 16 cores shared by pytest workers and recipe processes
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg OMP_NUM_THREADS=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site ../.whl/*.whl >"$OUT/pip.log" 2>&1 || { echo "pip failed"; tail "$OUT/pip.log"; }
PYTHONPATH=$(ls -d "$SNAP"/packages/*/src | paste -sd:):/tmp/site
export PYTHONPATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/env.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())" | tee -a "$OUT/env.txt"
PARTS=${PARTS:-tests,recipes,bench}
# 1) the tests parametrised by the `device` fixture, on CUDA only
# -v: every result is logged as it happens, so a timeout still leaves the names of failures
[[ $PARTS == *tests* ]] && (TORCHLOOM_DEVICE=cuda timeout 300 python3 -m pytest packages -m "not slow" -k cuda -n 6 \
    --timeout 200 -v --tb=short -rfE -p no:cacheprovider -p no:benchmark --durations=10 \
    >"$OUT/gpu_tests.log" 2>&1; echo "pytest rc=$?" >>"$OUT/gpu_tests.log") &
# 2) recipes' quick modes on CUDA, 6 at a time
mkdir -p /tmp/runs
[[ $PARTS == *recipes* ]] && (python3 -c "
import re, sys
from torchloom.core.recipes import discover
pat = re.compile(sys.argv[1])
print('\n'.join(n for n in sorted(discover()) if pat.search(n)))" "${1:-.}" >/tmp/names.txt
 timeout 400 xargs -P 6 -I{} sh -c 'timeout 240 python3 run_recipe.py {} >/tmp/runs/{}.log 2>&1 \
     || echo "RECIPE {} FAIL rc=$?" >>/tmp/runs/{}.log' </tmp/names.txt
 for f in /tmp/runs/*.log; do grep -h "^RECIPE" "$f" || echo "RECIPE ? $f (no verdict)"; done >"$OUT/recipes.log"
 for f in /tmp/runs/*.log; do grep -q "ok=True" "$f" || { echo "== $f"; tail -25 "$f"; }; done \
     >"$OUT/recipe_failures.log") &
# 3) LIF benchmark vs snnTorch / SpikingJelly on CUDA
if [[ $PARTS == *bench* ]]; then
    timeout 150 python3 packages/snn/benchmarks/bench_lif.py --device cuda --out "$OUT" \
        >"$OUT/bench_lif.log" 2>&1; echo "bench rc=$?" >>"$OUT/bench_lif.log"
fi
wait
touch "$OUT/gpu_tests.log" "$OUT/recipes.log" "$OUT/bench_lif.log"
grep -E "FAILED|ERROR" "$OUT/gpu_tests.log" | cut -c1-200 | head -40; tail -4 "$OUT/gpu_tests.log"
cut -c1-160 "$OUT/recipes.log"; tail -12 "$OUT/bench_lif.log"
