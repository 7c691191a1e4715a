"""Airflow plugin: the stack's secrets never show in a task log.

Airflow masks connection passwords and Variables with sensitive names on its own, but not the
values of environment variables a task process inherits (the MLflow password, the serving
admin token, the API keys: ``dslc.settings.SECRET_ENV_NAMES``). This listener hands them to
Airflow's secrets masker as each task starts, in the task process and its supervisor, so a
value printed by mistake is written as ``***``.

It does the same for the password of the notifications' SMTP connection (``DSLC_SMTP_CONN_ID``)
when the environment holds that connection (``AIRFLOW_CONN_SMTP_DEFAULT``): Airflow masks a
connection's password only once something looks the connection up, and this needs no lookup.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin


def mask_secret_env() -> list[str]:
    """Register the value of each secret variable set here with the masker; their names."""
    from airflow.sdk.log import mask_secret

    from dslc.settings import SECRET_ENV_NAMES

    masked = []
    for name in SECRET_ENV_NAMES:
        value = os.environ.get(name)
        if value:
            mask_secret(value, name)
            masked.append(name)
    return masked


def mask_smtp_password() -> str | None:
    """Register the password of the SMTP connection set in the environment; its variable name."""
    from airflow.sdk import Connection
    from airflow.sdk.log import mask_secret

    from dslc.settings import get_settings

    conn_id = get_settings().smtp_conn_id
    name = f"AIRFLOW_CONN_{conn_id.upper()}"
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    conn = (
        Connection.from_json(value, conn_id=conn_id)
        if value.startswith("{")
        else Connection.from_uri(value, conn_id=conn_id)
    )
    if not conn.password:
        return None
    mask_secret(conn.password)  # no name: one given must look secret itself, this one does not
    return name


@hookimpl
def on_task_instance_running(previous_state: Any, task_instance: Any) -> None:
    mask_secret_env()
    try:
        mask_smtp_password()
    except Exception as e:  # a malformed connection fails where it is used, not every task
        import logging

        # The type only: the error's text may quote the connection, password included.
        logging.getLogger(__name__).warning(
            "could not parse the SMTP connection to mask its password (%s)", type(e).__name__
        )


class DslcMaskingPlugin(AirflowPlugin):
    name = "dslc_masking"
    listeners = [sys.modules[__name__]]
