"""Deploy a registered model version to a serving target, smoke-test it, roll back on failure.

:func:`deploy` is the whole procedure, the same for every target:

1. check the ``champion`` alias: it must point at the version being deployed (``train``'s
   ``promote`` moved it), or, with ``move_alias`` (the manual ``deploy`` DAG), it is moved
   there first (``previous_champion`` <- old champion);
2. the target rolls the version out (:class:`~dslc.deploy.local.LocalTarget`: the running
   service loads it; :class:`~dslc.deploy.kubernetes.KubernetesTarget`: a Deployment pinned to
   it rolls out) and waits until it serves it;
3. the smoke test (:mod:`dslc.deploy.smoke`) sends holdout rows through ``/predict`` and
   compares the answers with the registered model's offline predictions (within 1e-9);
4. on any failure the target goes back to what it served before, ``champion`` goes back to the
   previous version (only if it still points at the failed one), and :class:`DeployError` says
   what failed and what was restored.

Every attempt leaves a record (:mod:`dslc.deploy.records`): JSON in the lake under
``deployments/<model>/`` and a short ``dslc.deployment`` tag on the model version.
Nothing here imports Airflow; ``dslc_airflow.deploy`` builds the targets inside tasks.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Any

from dslc.deploy.target import DeployError, Target

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from dslc.lake import Lake

log = logging.getLogger(__name__)

__all__ = ["DeployError", "Target", "deploy"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _prepare_aliases(
    c: MlflowClient, name: str, version: str, *, move_alias: bool, previous: str | None
) -> tuple[str | None, dict[str, str | None]]:
    """Check (or move) ``champion``; returns the previous version and the aliases to restore."""
    from dslc.model import registry

    champion, prev_alias = registry.champion_state(c, name)
    if champion != version and not move_alias:
        raise DeployError(
            f"the {registry.CHAMPION} alias of {name!r} points at version {champion}, not "
            f"{version}: only the champion is deployed from `train` (another run or a "
            f"rollback moved it meanwhile). Nothing was changed. To serve version "
            f"{version} anyway, trigger the `deploy` DAG with version={version}"
        )
    restore = registry.move_champion(c, name, version) if champion != version else {}
    if restore:
        return (previous if previous is not None else restore[registry.CHAMPION]), restore
    # What champion was before promote moved it: promote's answer, else previous_champion.
    return (previous if previous is not None else prev_alias), {}


def _rollback(
    target: Target,
    c: MlflowClient,
    name: str,
    version: str,
    *,
    service_previous: str | None,
    alias_previous: str | None,
    restore: dict[str, str | None],
) -> dict[str, Any]:
    """Roll the target and the alias back; each half is attempted even if the other fails."""
    from dslc.model import registry

    out: dict[str, Any] = {"ok": True}
    try:
        out["service"] = target.rollback(name, version, service_previous)
    except Exception as e:  # reported in the record and the error message
        out["ok"] = False
        out["service"] = f"ROLLBACK FAILED: {type(e).__name__}: {e}"
    try:
        out["alias"] = registry.restore_champion(c, name, version, alias_previous, restore)
    except Exception as e:  # reported too
        out["ok"] = False
        out["alias"] = f"ALIAS RESTORE FAILED: {type(e).__name__}: {e}"
    return out


def deploy(
    model_name: str,
    version: str | int,
    *,
    target: Target,
    lake: Lake,
    actor: str,
    reason: str = "",
    previous: str | None = None,
    move_alias: bool = False,
    smoke_rows: int | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Deploy ``model_name`` version ``version`` to ``target``; returns the deployment record.

    previous: the version to go back to on failure (default: ``previous_champion``, or the
        old champion when ``move_alias`` moves it).
    move_alias: move ``champion`` to ``version`` first (manual deploy / rollback); without it
        ``champion`` must already point at ``version``.
    Raises :class:`DeployError` (after rolling back) when the deploy fails.
    """
    from dslc.deploy import records, smoke
    from dslc.model import registry
    from dslc.settings import get_settings

    settings = get_settings()
    version = str(version)
    started, t0 = _now(), time.monotonic()
    c = registry.client(tracking_uri)
    registry.get_version(c, model_name, version)  # RegistryError naming a missing version
    alias_previous, restore = _prepare_aliases(
        c, model_name, version, move_alias=move_alias, previous=previous
    )
    record: dict[str, Any] = {
        "model": model_name,
        "version": version,
        "previous": alias_previous,
        "target": target.name,
        "endpoint": target.endpoint,
        "actor": actor,
        "reason": reason,
        "started_at": started.isoformat(),
        "status": None,
        "stage": None,
        "error": None,
        "serving_before": None,
        "smoke": None,
        "rollback": None,
    }
    stage, before = "target check", None
    try:
        record["serving_before"] = before = target.current_version(model_name)
        stage = "rollout"
        log.info("deploying %s v%s to %s (serving: %s)", model_name, version, target.name, before)
        target.rollout(model_name, version)
        stage = "smoke test"
        record["smoke"] = smoke.smoke_test(
            model_name,
            version,
            lake=lake,
            endpoint=target.endpoint,
            rows=smoke_rows or settings.deploy_smoke_rows,
            tracking_uri=tracking_uri,
        )
    except Exception as e:  # any failure rolls back, then is re-raised below
        if isinstance(e, smoke.SmokeTestError):
            record["smoke"] = e.result
        # Back to what the target served before, unless that was nothing or this very version.
        service_previous = before if before not in (None, version) else alias_previous
        log.warning(
            "deploy of %s v%s failed at the %s: %s; rolling back", model_name, version, stage, e
        )
        record["rollback"] = rb = _rollback(
            target,
            c,
            model_name,
            version,
            service_previous=service_previous,
            alias_previous=alias_previous,
            restore=restore,
        )
        record.update(
            status="rolled_back" if rb["ok"] else "rollback_failed",
            stage=stage,
            error=f"{type(e).__name__}: {e}" if not isinstance(e, DeployError) else str(e),
        )
        uri = records.save(lake, c, record, started_at=started, seconds=time.monotonic() - t0)
        raise DeployError(records.failure_message(record, uri)) from e
    record["status"] = "deployed"
    records.save(lake, c, record, started_at=started, seconds=time.monotonic() - t0, strict=True)
    log.info("deployed %s version %s to %s: %s", model_name, version, target.name, record["smoke"])
    return record
