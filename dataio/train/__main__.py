"""``python -m dataio.train`` / ``torchrun --nproc-per-node N -m dataio.train DATASET [options]``."""

from __future__ import annotations

from dataio.train.args import main

if __name__ == "__main__":
    raise SystemExit(main())
