"""Sub-commands of the ``dataio`` CLI, one module each (see :mod:`dataio.cli`)."""
