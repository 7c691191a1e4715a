"""
### deploy: serve a chosen model version (a redeploy or a rollback), with a smoke test

Manual only: pick a registered version of the model in the form below. The task

| step | what it does |
|---|---|
| alias | moves `champion` to the chosen version (`previous_champion` <- the old champion); nothing moves if it already is the champion |
| rollout | the target (`local`: the running serving service loads the version through its admin API; `kubernetes`: a Deployment pinned to the version rolls out behind its Service) serves it; `/ready` must report it within `DSLC_DEPLOY_TIMEOUT_SECONDS` |
| smoke test | holdout rows of the version's own training split go through `/predict`; every probability must equal the registered model's offline prediction within 1e-9, answered by the chosen version |
| on failure | the service goes back to what it served before, `champion` and `previous_champion` go back to where they were, and the task fails (no retries) saying what failed and what was restored |

Every attempt leaves a record in the lake (`deployments/<model>/<UTC time>-v<version>.json`:
who, when, which version, the smoke test) and in the version's `dslc.deployment` tag in MLflow.
To roll back, deploy the version that served before (MLflow: the `previous_champion` alias).
A failed, rolled-back deploy is e-mailed to `DSLC_NOTIFY_EMAILS` (when set).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Param, dag, task

from dslc.model.registry import PROMOTE_POOL
from dslc.settings import get_settings
from dslc_airflow.notify import FailureNotifier
from dslc_airflow.runs import check_conf

_settings = get_settings()


@dag(
    dag_id="deploy",
    schedule=None,
    start_date=dt.datetime(2013, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["dslc", "ml", "deploy"],
    default_args={
        "owner": "dslc",
        "retries": 1,
        "retry_delay": dt.timedelta(seconds=30),
        # A conf key that is not a param fails the first task, naming the nearest param.
        "pre_execute": check_conf,
        # A task failing for good e-mails DSLC_NOTIFY_EMAILS (a rolled-back deploy says so).
        "on_failure_callback": FailureNotifier(),
    },
    params={
        "version": Param(
            type="integer",
            minimum=1,
            title="Model version",
            description=f"The registered version of {_settings.model_name!r} to serve (see "
            "MLflow: Models). It becomes the champion.",
        ),
        "target": Param(
            _settings.deploy_target,
            type="string",
            enum=["local", "kubernetes"],
            title="Target",
            description="local: the serving process at DSLC_SERVING_URL; kubernetes: the "
            "Deployment in DSLC_K8S_NAMESPACE through connection DSLC_K8S_CONN_ID.",
        ),
        "reason": Param(
            "",
            type="string",
            maxLength=500,
            title="Reason",
            description="Why (kept in the deployment record), e.g. 'roll back: v7 mislabels JFK'.",
        ),
    },
)
def deploy() -> None:
    @task(task_id="deploy", pool=PROMOTE_POOL)
    def deploy_version(params: dict[str, Any] | None = None, dag_run: Any = None) -> dict[str, Any]:
        """Make the chosen version the champion and serve it; restore everything on failure."""
        from dslc.settings import get_settings
        from dslc_airflow.deploy import run_deploy

        p = dict(params or {})
        return run_deploy(
            get_settings().model_name,
            str(p["version"]),
            dag_run=dag_run,
            target=p.get("target"),
            reason=p.get("reason") or "manual deploy",
            move_alias=True,
        )

    deploy_version()


deploy()
