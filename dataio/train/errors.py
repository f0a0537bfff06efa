"""Errors of the training harness; each names the rank (and node) and the stage that failed."""

from __future__ import annotations

from dataio.errors import DataioError

__all__ = ["CommError", "TrainError"]


class TrainError(DataioError, RuntimeError):
    """A training run that cannot go on (bad setup, a failed stage); the message names the rank and stage."""


class CommError(TrainError):
    """A gradient exchange that failed; the message names the strategy, the stage and the rank / node."""
