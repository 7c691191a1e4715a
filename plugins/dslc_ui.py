"""Airflow plugin: the ML lifecycle inside Airflow's UI.

* ``/dslc/reports/<key>``: the lake's drift reports and validation results, served by the
  api-server behind Airflow's login (``dslc_airflow.ui``);
* extra links on the tasks ("MLflow run", "Model version", "Drift report", "Validation
  result") are attached in the DAG files (``dslc_airflow.links``); Airflow 3 stores each link
  as an XCom when the task ends, so the api-server needs no link code.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from dslc_airflow.ui import LazyApp


class DslcUiPlugin(AirflowPlugin):
    name = "dslc_ui"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": "/dslc", "name": "dslc reports"}]
