"""One error hierarchy, caught once at the CLI boundary.

Every error carries a short message and ``diagnostics()`` with the detail a user needs to act on it.
Verification functions raise these; they never return a boolean.
"""

from __future__ import annotations


class KerasGuardError(Exception):
    """Base error of kerasguard."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """A human-readable explanation, with the hint when there is one."""
        if self.hint:
            return f"{self.message}\nhint: {self.hint}"
        return self.message


class PolicyError(KerasGuardError):
    """A policy file or value is invalid."""


class FormatError(KerasGuardError):
    """Bytes could not be parsed as the format they claim to be."""


class IntegrityError(KerasGuardError):
    """A digest, manifest or signature did not verify."""


class UnsafeModelError(KerasGuardError):
    """A model was refused because a scan found problems at or above the policy threshold."""

    def __init__(self, message: str, *, report: object | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.report = report


class UntrustedSourceError(KerasGuardError):
    """A model source is not allowed by the policy's trusted sources."""


class SandboxError(KerasGuardError):
    """The sandboxed child broke a limit, died, or could not be started."""

    def __init__(self, message: str, *, limit: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.limit = limit


class AdvisoryError(KerasGuardError):
    """An advisory record or database is invalid."""


class StoreError(KerasGuardError):
    """The model store refused or failed an operation."""


class AuditError(KerasGuardError):
    """An environment, interpreter or requirements file could not be audited."""


class UnsafeStackError(AdvisoryError):
    """The running keras / h5py / tensorflow is affected by a model-loading advisory."""

    def __init__(self, message: str, *, report: object | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.report = report


class GoldenError(KerasGuardError):
    """A golden record is missing, malformed, or cannot be produced."""


class ModelError(KerasGuardError):
    """Keras itself raised an error while loading or running a model (in the sandbox or in process)."""

    def __init__(self, message: str, *, error_type: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.error_type = error_type


class DataError(KerasGuardError):
    """A dataset could not be read, or is unusable for the check asked for (``kerasguard data``)."""


class ProbeError(KerasGuardError):
    """A behavioural probe (backdoor search, STRIP, membership inference) cannot run on this model or data."""


# The trust pipeline or the policy refused the model (a verdict, not a failure): commands that load a
# model for analysis exit 1 on these, like `kerasguard load`, and 2 on every other error.
MODEL_REFUSALS: tuple[type[KerasGuardError], ...] = (
    IntegrityError,
    PolicyError,
    UnsafeModelError,
    UntrustedSourceError,
)
