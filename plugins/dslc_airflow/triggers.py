"""Triggers (run in the triggerer's event loop) that wait on the lake without a worker slot.

The providers' ``FileTrigger`` only sees the local disk; the lake may be ``s3://``. This one
polls a partition's ``_SUCCESS`` manifest through :func:`dslc_airflow.lake.lake` (the same
connection handling as the tasks), in a thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from dslc.lake import Lake

# Consecutive failed polls (lake unreachable, bad credentials) before the trigger gives up
# rather than waiting out its whole timeout on an error that will not heal.
MAX_POLL_ERRORS = 3


class PartitionTrigger(BaseTrigger):
    """Fire once a lake partition is published (its ``_SUCCESS`` manifest exists).

    :param key: the partition key, e.g. ``features/flights/ds=2013-01-10``.
    :param deadline: epoch seconds after which the trigger fires a ``timeout`` event. A
        deadline (not a duration) survives the trigger moving to another triggerer.
    :param poke_interval: seconds between polls.

    Events: ``{"status": "found", "key", "uri", "rows", "content_hash"}``,
    ``{"status": "timeout", "key", "uri", "waited_s"}`` or ``{"status": "error", ...}``.
    """

    def __init__(
        self, *, key: str, deadline: float, poke_interval: float = 30.0, started: float = 0.0
    ) -> None:
        # Unannotated in Airflow; pyproject's untyped_calls_exclude does not cover super().
        super().__init__()  # type: ignore[no-untyped-call]
        self.key = key
        self.deadline = float(deadline)
        self.poke_interval = float(poke_interval)
        self.started = float(started) or time.time()
        self._lake: Lake | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "key": self.key,
                "deadline": self.deadline,
                "poke_interval": self.poke_interval,
                "started": self.started,
            },
        )

    def _poll(self) -> dict[str, Any] | None:
        """One look at the manifest (blocking; runs in a worker thread)."""
        if self._lake is None:
            from dslc_airflow.lake import lake

            self._lake = lake()
        manifest = self._lake.manifest(self.key)
        if manifest is None:
            return None
        return {"rows": manifest.rows, "content_hash": manifest.content_hash}

    def _uri(self) -> str:
        return self._lake.uri(self.key) if self._lake is not None else self.key

    async def run(self) -> AsyncIterator[TriggerEvent]:
        errors = 0
        while True:
            try:
                found = await asyncio.to_thread(self._poll)
                errors = 0
            except Exception as e:  # the lake may be briefly unreachable: retry, then give up
                errors += 1
                self.log.warning("polling %s failed (%d in a row): %s", self.key, errors, e)
                if errors >= MAX_POLL_ERRORS:
                    yield TriggerEvent(
                        {
                            "status": "error",
                            "key": self.key,
                            "uri": self._uri(),
                            "message": f"{type(e).__name__}: {e}",
                        }
                    )
                    return
                found = None
            if found is not None:
                self.log.info("partition %s is published (%s rows)", self.key, found["rows"])
                event = {"status": "found", "key": self.key, "uri": self._uri(), **found}
                yield TriggerEvent(event)
                return
            now = time.time()
            if now >= self.deadline:
                yield TriggerEvent(
                    {
                        "status": "timeout",
                        "key": self.key,
                        "uri": self._uri(),
                        "waited_s": round(now - self.started, 1),
                    }
                )
                return
            self.log.info("no published partition at %s yet", self._uri())
            await asyncio.sleep(min(self.poke_interval, max(self.deadline - now, 0.0)))
