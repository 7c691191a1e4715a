"""The deploy tasks' Airflow side: build the target (a Kubernetes one through the cncf-kubernetes
provider's hook), name who deployed, and turn a failed deploy into a no-retry task failure.

Everything is imported inside the functions: DAG files import this module at parse time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dslc.deploy import Target


def build_target(kind: str | None = None) -> Target:
    """The deploy target ``kind`` (default ``DSLC_DEPLOY_TARGET``): ``local`` or ``kubernetes``."""
    from dslc.errors import ConfigError
    from dslc.settings import get_settings

    settings = get_settings()
    kind = kind or settings.deploy_target
    if kind == "local":
        from dslc.deploy.local import LocalTarget

        # The embedded stack hands its generated token to tasks as DSLC_SERVING_ADMIN_TOKEN.
        token = settings.serving_admin_token
        return LocalTarget(
            settings.serving_base_url,
            token.get_secret_value() if token is not None else None,
            timeout=settings.deploy_timeout_seconds,
        )
    if kind == "kubernetes":
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        from dslc.deploy.kubernetes import KubernetesTarget, ManifestConfig

        hook = KubernetesHook(conn_id=settings.k8s_conn_id)
        cfg = ManifestConfig(
            namespace=settings.k8s_namespace,
            image=settings.k8s_image,
            mlflow_uri=settings.mlflow_url,
            lake_url=settings.lake,
            progress_deadline=max(60, int(settings.deploy_timeout_seconds)),
        )
        return KubernetesTarget(
            hook.api_client,
            cfg,
            timeout=settings.deploy_timeout_seconds,
            service_url=settings.k8s_service_url,
        )
    raise ConfigError(f"deploy target {kind!r} is not one of: local, kubernetes")


def actor(dag_run: Any) -> str:
    """Who deployed: the user who triggered the run (or its run type) and the run."""
    who = getattr(dag_run, "triggering_user_name", None) or str(
        getattr(dag_run, "run_type", "unknown")
    )
    return f"{who} via {getattr(dag_run, 'dag_id', '?')}/{getattr(dag_run, 'run_id', '?')}"


def run_deploy(
    model_name: str,
    version: str,
    *,
    dag_run: Any,
    target: str | None = None,
    reason: str = "",
    previous: str | None = None,
    move_alias: bool = False,
) -> dict[str, Any]:
    """Deploy inside a task: a failed (rolled back) deploy fails the task without retries."""
    from dslc import deploy
    from dslc_airflow.errors import no_retry_on
    from dslc_airflow.lake import lake

    # A rolled-back deploy (a DeployError) would fail the same way again; MLflow down before
    # anything moved keeps Airflow's retries.
    with no_retry_on():
        record = deploy.deploy(
            model_name,
            version,
            target=build_target(target),
            lake=lake(),
            actor=actor(dag_run),
            reason=reason,
            previous=previous,
            move_alias=move_alias,
        )
    return {
        k: record[k]
        for k in ("model", "version", "previous", "target", "status", "smoke", "record_uri")
    }


def run_reconcile(ti: Any) -> dict[str, Any]:
    """Reconcile inside a task: repair a deploy killed half-way, then fail (no retries) when the
    service does not serve the champion. Not while a ``train`` or ``deploy`` run is in flight:
    between promote and deploy they differ by design, and a killed deploy may be that run's,
    about to be retried; the run settles both, and this only reports."""
    import logging

    from dslc import deploy
    from dslc.settings import get_settings
    from dslc_airflow.errors import no_retry_on
    from dslc_airflow.lake import lake

    in_flight = [
        dag_id
        for dag_id in ("train", "deploy")
        if ti.get_dr_count(dag_id=dag_id, states=["queued", "running"])
    ]
    with no_retry_on():
        found = deploy.reconcile(
            get_settings().model_name,
            target=build_target(),
            lake=lake(),
            actor=f"reconcile via {ti.dag_id}/{ti.run_id}",
            strict=not in_flight,
            # An interrupted deploy may be that run's, about to be retried: it resumes it.
            repair=not in_flight,
        )
    log = logging.getLogger("airflow.task")
    if found["interrupted"]:
        log.warning("repaired an interrupted deploy: %s", found["interrupted"])
    if found["status"] in ("mismatch", "pending"):
        log.warning("%s run in flight; not failing: %s", " and ".join(in_flight), found["message"])
    else:
        log.info("%s", found["message"] or found["status"])
    interrupted = found["interrupted"] or {}
    out = {
        "status": found["status"],
        "champion": found.get("champion"),
        "serving": found.get("serving"),
        "interrupted": interrupted.get("action"),
    }
    if interrupted.get("action") == "rolled_back":
        # The rolled-back deploy's record, for the notification (dslc_airflow.notify).
        out["rolled_back"] = interrupted.get("record")
    return out
