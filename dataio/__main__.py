"""``python -m dataio`` runs the command-line interface."""

from dataio.cli import main

raise SystemExit(main())
