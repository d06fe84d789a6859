"""Oh et al.'s per-model hyperparameter search for the ``neural-de.stable-sde`` benchmark.

    python packages/neural-de/benchmarks/search_stable_sde.py [--quick] [--out DIR]

(not a peer benchmark: ``nox -s bench`` runs ``bench_*.py`` only; ``--out`` defaults to
``runs/stable-sde-search``.)

Runs :func:`torchloom.neural_de.recipes.irregular.search_configs` on the recipe's full-mode
data (complete series, seeds 100 and 101, never the recipe's seeds): 20 random configurations
(learning rate log-uniform in [1e-4, 1e-2], latent size = field width in {16, 32, 64}), the
authors' search loop and successive halving, the lowest mean validation loss per model. Writes
``DIR/neural-de_stable_sde_search.json`` with every trial and the selection, which the recipe's
full mode reads from its table ``_SEARCHED`` (copy it there to use a new search).
``--quick``: 4 configurations, 2 epochs, the quick-mode data (a smoke test).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from torchloom.core.bench import bench_parser
from torchloom.core.recipes import RunContext
from torchloom.neural_de.recipes.irregular import _stable_setup, search_configs


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0] if __doc__ else "")
    parser.set_defaults(out="runs/stable-sde-search")
    args = parser.parse_args(argv)
    ctx = RunContext(quick=args.quick, show_progress=False, log=print)
    names = ["langevin", "linear_noise", "geometric", "naive", "ncde"]
    start = time.process_time()
    best, rows = search_configs(
        ctx,
        names,
        _stable_setup(ctx),
        samples=4 if args.quick else 20,
        max_epochs=2 if args.quick else 10,
    )
    report = {"selected": best, "trials": rows, "cpu_seconds": time.process_time() - start}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "neural-de_stable_sde_search.json"
    path.write_text(json.dumps(report, indent=2))
    print(json.dumps(best, indent=2))
    print(f"wrote {path} ({report['cpu_seconds']:.0f} CPU-s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
