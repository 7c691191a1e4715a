"""The embedded stack: Airflow 3 (api-server, scheduler, dag-processor, triggerer), MLflow and
the model-serving service, each a background process on loopback, all state under ``<state>``.

One module per concern; the names callers use are re-exported here (``stack.up()``):

* :mod:`~dslc.dev.stack.lifecycle`: ``up``, ``down``, ``status``;
* :mod:`~dslc.dev.stack.distributed`: the distributed profile (PostgreSQL, Celery on Redis, S3);
* :mod:`~dslc.dev.stack.environment`: each service's command line, environment and address;
* :mod:`~dslc.dev.stack.secrets`: generated secrets, the admin password, the serving token,
  MLflow's credentials and basic-auth config;
* :mod:`~dslc.dev.stack.processes`: pid records, process groups, log tails;
* :mod:`~dslc.dev.stack.health`: health probes, the wait until healthy, port checks;
* :mod:`~dslc.dev.stack.migrations`: ``airflow db migrate`` when needed;
* :mod:`~dslc.dev.stack.paths` and :mod:`~dslc.dev.stack.errors`: the state layout, StackError.
"""

from __future__ import annotations

from dslc.dev.console import CliError, reported
from dslc.dev.stack.distributed import load_profile
from dslc.dev.stack.environment import (
    SERVICES,
    SIMPLE_AUTH_MANAGER,
    airflow_env,
    mlflow_env,
    services,
    serving_env,
    stack_env,
    use_mlflow_credentials,
    use_stack_env,
)
from dslc.dev.stack.errors import StackError
from dslc.dev.stack.health import probe, wait_until
from dslc.dev.stack.lifecycle import STOP_GRACE_SECONDS, STOP_ORDER, down, status, up
from dslc.dev.stack.paths import SIMPLE_AUTH_FILE_NAME, airflow_home, log_path, password_file
from dslc.dev.stack.processes import LOG_TAIL_LINES, ProcessRecord, is_alive, running, tail
from dslc.dev.stack.secrets import admin_password, mlflow_credentials, serving_token

__all__ = [
    "LOG_TAIL_LINES",
    "SERVICES",
    "SIMPLE_AUTH_FILE_NAME",
    "SIMPLE_AUTH_MANAGER",
    "STOP_GRACE_SECONDS",
    "STOP_ORDER",
    "CliError",
    "ProcessRecord",
    "StackError",
    "admin_password",
    "airflow_env",
    "airflow_home",
    "down",
    "is_alive",
    "load_profile",
    "log_path",
    "mlflow_credentials",
    "mlflow_env",
    "password_file",
    "probe",
    "reported",
    "running",
    "services",
    "serving_env",
    "serving_token",
    "stack_env",
    "status",
    "tail",
    "up",
    "use_mlflow_credentials",
    "use_stack_env",
    "wait_until",
]
