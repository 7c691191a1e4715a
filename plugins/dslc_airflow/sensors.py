"""Sensors that wait on the lake without holding a worker slot.

``LandingSensor`` runs in reschedule mode; ``PartitionSensor`` defers to the triggerer
(:class:`dslc_airflow.triggers.PartitionTrigger`).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowSensorTimeout

if TYPE_CHECKING:
    from airflow.sdk import Context


class LandingSensor(BaseSensorOperator):
    """Wait until the upstream system has landed the day's file for ``dataset``.

    Runs in reschedule mode: between pokes the slot is free. On timeout the error names the
    day, the dataset and the location that stayed empty. A scheduled run for a day after the
    use case's source skips at once (:func:`dslc_airflow.runs.skip_past_source`).
    """

    template_fields = ("ds",)

    def __init__(self, *, dataset: str, ds: str = "{{ ds }}", **kwargs: Any) -> None:
        kwargs.setdefault("mode", "reschedule")
        # Without explicit poke_interval/timeout, DSLC_LANDING_POKE_SECONDS and
        # DSLC_LANDING_TIMEOUT_SECONDS apply, read when the task runs.
        self.use_settings = "timeout" not in kwargs and "poke_interval" not in kwargs
        super().__init__(**kwargs)
        self.dataset = dataset
        self.ds = ds

    def _where(self) -> str:
        from dslc.lake import Lake
        from dslc_airflow.lake import lake

        return lake().uri(Lake.partition("landing", self.dataset, self.ds))

    def poke(self, context: Context) -> bool:
        from dslc.data.ingest import is_landed
        from dslc_airflow.lake import lake

        found = is_landed(lake(), self.ds, self.dataset)
        if not found:
            self.log.info("no %s file landed yet at %s", self.dataset, self._where())
        return found

    def execute(self, context: Context) -> Any:
        from dslc.settings import get_settings
        from dslc_airflow.runs import skip_past_source

        skip_past_source(context, self.ds)  # 'today' in a replayed 2013 story: nothing lands
        # Runtime knobs come from settings when the task runs, not when the DAG is parsed.
        settings = get_settings()
        if self.use_settings:
            self.poke_interval = float(settings.landing_poke_seconds)
            self.timeout = float(settings.landing_timeout_seconds)
        try:
            return super().execute(context)
        except AirflowSensorTimeout as e:
            raise AirflowSensorTimeout(
                f"No {self.dataset} file landed for {self.ds} at {self._where()} within "
                f"{int(self.timeout)} s. Check the upstream export (or run "
                f"`dslc replay --start {self.ds} --end {self.ds}`), then clear this task."
            ) from e


class PartitionSensor(BaseSensorOperator):
    """Wait until the lake partition ``<zone>/<dataset>/ds=<ds>`` is published (deferrable).

    Looks once in the worker; if the partition is not there yet, defers to
    :class:`~dslc_airflow.triggers.PartitionTrigger`, so no worker slot is held while waiting.
    Returns (XCom) the partition's key, URI, row count and content hash. On timeout it fails
    naming the day, the location and what to run. A scheduled run for a day after the use
    case's source skips at once (:func:`dslc_airflow.runs.skip_past_source`).

    Without explicit ``poke_interval``/``timeout``, ``DSLC_LANDING_POKE_SECONDS`` and
    ``DSLC_LANDING_TIMEOUT_SECONDS`` + 1 h apply (the day's ingest may itself wait that long
    for its landing file), read when the task runs.
    """

    template_fields = ("ds",)

    def __init__(
        self, *, zone: str = "features", dataset: str, ds: str = "{{ ds }}", **kwargs: Any
    ) -> None:
        self.use_settings = "timeout" not in kwargs and "poke_interval" not in kwargs
        super().__init__(**kwargs)
        self.zone = zone
        self.dataset = dataset
        self.ds = ds

    def _key(self) -> str:
        from dslc.lake import Lake

        return Lake.partition(self.zone, self.dataset, self.ds)

    def _published(self) -> dict[str, Any] | None:
        """The partition as the trigger reports it, or None if it is not published."""
        from dslc_airflow.lake import lake

        lk = lake()
        manifest = lk.manifest(self._key())
        if manifest is None:
            return None
        return {
            "status": "found",
            "key": self._key(),
            "uri": lk.uri(self._key()),
            "rows": manifest.rows,
            "content_hash": manifest.content_hash,
        }

    def poke(self, context: Context) -> bool:
        return self._published() is not None

    def execute(self, context: Context) -> Any:
        from dslc.settings import get_settings
        from dslc_airflow.runs import skip_past_source
        from dslc_airflow.triggers import PartitionTrigger

        skip_past_source(context, self.ds)  # 'today' in a replayed 2013 story: nothing lands
        if self.use_settings:
            settings = get_settings()
            self.poke_interval = float(settings.landing_poke_seconds)
            self.timeout = float(settings.landing_timeout_seconds + 3600)
        found = self._published()
        if found is not None:
            return found
        now = time.time()
        self.log.info(
            "%s is not published yet: deferring (poke every %ss, timeout %ss)",
            self._key(),
            self.poke_interval,
            self.timeout,
        )
        self.defer(
            trigger=PartitionTrigger(
                key=self._key(),
                deadline=now + float(self.timeout),
                poke_interval=float(self.poke_interval),
                started=now,
            ),
            method_name="execute_complete",
            # A backstop for a trigger that never reports; it reports its own timeout first.
            timeout=dt.timedelta(seconds=float(self.timeout) + 300),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger fired: return the partition, or fail saying why."""
        event = event or {}
        status = event.get("status")
        if status == "found":
            return event
        where = event.get("uri", self._key())
        if status == "timeout":
            raise AirflowSensorTimeout(
                f"No published {self.zone} partition of {self.dataset} for {self.ds} at {where} "
                f"within {int(float(event.get('waited_s', self.timeout)))} s. Run (or clear) "
                f"the `ingest` DAG for {self.ds}, then clear this task."
            )
        raise AirflowSensorTimeout(
            f"Could not check {where} for {self.ds}: {event.get('message', event)}. Check the "
            "lake (DSLC_LAKE_URL, DSLC_LAKE_CONN_ID), then clear this task."
        )
