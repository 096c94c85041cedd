"""The operator's errors, named by what happens next. Pure: no I/O, no kopf, no client.

* :class:`NotReady`: the object cannot be reconciled as it stands (an invalid spec, a Secret that is
  not ours, a projection over the size limit). It becomes ``Ready=False`` with its ``reason`` and a
  Warning Event; nothing that was already published is withdrawn, and the object is looked at again
  when it or something it depends on changes.
* :class:`Transient`: the world failed us (the API server refused or could not be reached, an external
  JWKS endpoint is down). Retried with the per-object backoff; a :class:`Conflict` (a conditional
  write lost a race) is retried at once, after reading again.
"""

from __future__ import annotations

from typing import Literal


class OperatorError(Exception):
    """Every error the operator raises on purpose."""


class NotReady(OperatorError):
    """The object cannot be reconciled as it is; ``reason`` becomes the Ready condition's reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class SpecError(NotReady):
    """A spec the CRD schema could not refuse."""


class Transient(OperatorError):
    """A failure outside the object: try again later."""


class APIError(Transient):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class Conflict(APIError):
    """409: a conditional write found the object changed since it was read."""


class TransportError(Transient):
    """The API server could not be reached or did not answer in time."""


class FetchError(Transient):
    """An external JWKS could not be fetched (network, TLS, status, size or time limit)."""


Retry = Literal["now", "backoff"]


def api_error(status: int, reason: str, message: str) -> APIError:
    """The typed error for an error status of the API server."""
    return (Conflict if status == 409 else APIError)(status, reason, message)


def retry_after(error: Transient) -> Retry:
    """When a reconciliation that failed with ``error`` runs again: a lost race at once (read again and
    decide again), anything else after the backoff."""
    return "now" if isinstance(error, Conflict) else "backoff"
