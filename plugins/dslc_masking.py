"""Airflow plugin: the stack's secrets never show in a task log.

Airflow masks connection passwords and Variables with sensitive names on its own, but not the
values of environment variables a task process inherits (the MLflow password, the serving
admin token, the API keys: ``dslc.settings.SECRET_ENV_NAMES``). This listener hands them to
Airflow's secrets masker as each task starts, in the task process and its supervisor, so a
value printed by mistake is written as ``***``.
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


@hookimpl
def on_task_instance_running(previous_state: Any, task_instance: Any) -> None:
    mask_secret_env()


class DslcMaskingPlugin(AirflowPlugin):
    name = "dslc_masking"
    listeners = [sys.modules[__name__]]
