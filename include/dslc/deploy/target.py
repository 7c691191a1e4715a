"""What every deploy target is (:class:`Target`) and the error a failed deploy raises."""

from __future__ import annotations

from typing import Any, Protocol

from dslc.errors import UserError


class DeployError(UserError):
    """A deploy failed (and was rolled back); the message says what failed and what to do.

    ``record``: the deployment record of a deploy that was rolled back (or whose rollback
    failed), so a caller can tell a rollback from a deploy refused before anything moved.
    """

    def __init__(self, message: str, record: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.record = record


class Target(Protocol):
    """Where a model version is served: the local process or a Kubernetes Deployment."""

    name: str

    @property
    def endpoint(self) -> str:
        """Base URL of the serving API (the smoke test posts to ``<endpoint>/predict``)."""

    def current_version(self, model_name: str) -> str | None:
        """The version the target serves now (None: nothing)."""

    def rollout(self, model_name: str, version: str) -> None:
        """Make the target serve ``version`` and wait until it does; DeployError if not."""

    def rollback(self, model_name: str, failed: str, previous: str | None) -> str:
        """Undo a rollout of ``failed``; return what was done, in words."""

    def settle(self) -> None:
        """Wait for a rollout in progress (one a killed deploy started) to end, whatever its
        outcome, so what :meth:`current_version` says next is final."""
