"""Extra links on the lifecycle's tasks: MLflow's run and model version, the lake's reports.

Airflow 3 computes a task's links on the worker when the task ends and stores each as an XCom
(``_link_<class>``); the UI reads them back, so the api-server never imports this module. The
links are attached to TaskFlow tasks with :func:`attach` (``@task`` takes no
``operator_extra_links``). Each link reads what its task returned (the MLflow run id, the
model version) or the run's day (the report's key), and builds the URL in :mod:`dslc.reports`.
A task that returned nothing to link to gets no link: the button is greyed out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


def _xcom(ti_key: TaskInstanceKey, task_id: str | None = None) -> Any:
    """The return value of this task (or of ``task_id`` in the same run)."""
    from airflow.sdk.execution_time.xcom import XCom

    return XCom.get_one(
        key="return_value",
        task_id=task_id or ti_key.task_id,
        dag_id=ti_key.dag_id,
        run_id=ti_key.run_id,
        map_index=ti_key.map_index,
    )


def _ds(ti_key: TaskInstanceKey) -> str | None:
    """The run's day: on the worker the key is the running task instance, with its context."""
    context = getattr(ti_key, "get_template_context", None)
    return context().get("ds") if context else None


def mlflow_run_link(value: Any) -> str:
    """MLflow's page of the run in a task's return value (``run_id``), or ""."""
    from dslc import reports
    from dslc.settings import get_settings

    if not isinstance(value, dict) or not value.get("run_id"):
        return ""
    return reports.mlflow_run_url(get_settings().mlflow_url, str(value["run_id"]))


def model_version_link(value: Any) -> str:
    """MLflow's page of the model version in a task's return value (``version``), or ""."""
    from dslc import reports
    from dslc.settings import get_settings

    if not isinstance(value, dict) or not value.get("version"):
        return ""
    settings = get_settings()
    return reports.model_version_url(settings.mlflow_url, settings.model_name, value["version"])


def report_link(key: str | None) -> str:
    """The report's page inside Airflow, or ""."""
    from dslc import reports
    from dslc_airflow.notify import base_url

    return reports.url(base_url(), key) if key else ""


class MlflowRunLink(BaseOperatorLink):
    """The MLflow run of this DAG run (``train`` returns it; later tasks read it there)."""

    name = "MLflow run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        value = _xcom(ti_key)
        if not (isinstance(value, dict) and value.get("run_id")):
            value = _xcom(ti_key, "train")
        return mlflow_run_link(value)


class ModelVersionLink(BaseOperatorLink):
    """The model version ``register`` created or ``promote`` judged."""

    name = "Model version"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return model_version_link(_xcom(ti_key))


class DriftReportLink(BaseOperatorLink):
    """The day's drift report (``monitoring/drift/ds=.../report.html``)."""

    name = "Drift report"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from dslc import reports

        ds = _ds(ti_key)
        return report_link(reports.drift_report_key(ds) if ds else None)


class ValidationResultLink(BaseOperatorLink):
    """The day's validation result of the use case's primary dataset (Data Docs); written
    whether validation passed or failed, so a failed ``validate`` links to why."""

    name = "Validation result"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from dslc import reports
        from dslc.settings import get_usecase

        ds = _ds(ti_key)
        return report_link(reports.validation_key(get_usecase().primary.name, ds) if ds else None)


def attach(task: Any, *links: BaseOperatorLink) -> Any:
    """Give a TaskFlow task (its XComArg) ``links``; returns it for chaining."""
    operator = getattr(task, "operator", task)
    operator.operator_extra_links = (*operator.operator_extra_links, *links)
    return task
