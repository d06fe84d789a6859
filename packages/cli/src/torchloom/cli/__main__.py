"""``python -m torchloom.cli`` (also what ``torchrun -m torchloom.cli`` runs)."""

from torchloom.cli.main import main

raise SystemExit(main())
