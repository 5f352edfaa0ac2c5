"""Errors of the robustness tools (part of kerasguard's one hierarchy: all are KerasGuardErrors)."""

from __future__ import annotations

from kerasguard.errors import KerasGuardError


class RobustnessError(KerasGuardError):
    """Bad data, an out-of-range parameter, or a model the chosen tool cannot work with."""


class NoGradientError(RobustnessError):
    """The model gives no usable gradients on this backend: only the gradient-free attack applies."""


class DetectorFileError(RobustnessError):
    """A saved detector is missing, malformed, or was edited after it was written (digest mismatch)."""
