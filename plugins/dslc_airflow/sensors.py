"""Sensors that wait on the lake without holding a worker slot (reschedule mode)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowSensorTimeout

if TYPE_CHECKING:
    from airflow.sdk import Context


class LandingSensor(BaseSensorOperator):
    """Wait until the upstream system has landed the day's file for ``dataset``.

    Runs in reschedule mode: between pokes the slot is free. On timeout the error names the
    day, the dataset and the location that stayed empty.
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
        from dslc.ingest import is_landed
        from dslc_airflow.lake import lake

        found = is_landed(lake(), self.ds, self.dataset)
        if not found:
            self.log.info("no %s file landed yet at %s", self.dataset, self._where())
        return found

    def execute(self, context: Context) -> Any:
        from dslc.settings import get_settings

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
