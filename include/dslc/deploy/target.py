"""What every deploy target is (:class:`Target`) and the error a failed deploy raises."""

from __future__ import annotations

from typing import Protocol

from dslc.errors import UserError


class DeployError(UserError):
    """A deploy failed (and was rolled back); the message says what failed and what to do."""


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
